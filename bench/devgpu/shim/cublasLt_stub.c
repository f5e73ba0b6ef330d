/* libcublasLt.so.12 placeholder (dev-only, bench/devgpu): FAISS links it but imports no cublasLt symbol (build.sh
 * checks with objdump and stops if that changes). It exists only so that the loader finds the soname and the
 * version node `libcublasLt.so.12`. */
int devgpu_cublasLt12_stub(void) { return 0; }
