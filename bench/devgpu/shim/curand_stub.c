/* libcurand.so.10 placeholder (dev-only, bench/devgpu): faiss-gpu's __init__ preloads it from nvidia/curand/lib,
 * but libfaiss imports no curand symbol (build.sh checks). */
int devgpu_curand10_stub(void) { return 0; }
