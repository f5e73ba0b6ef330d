#!/usr/bin/env bash
# The FAISS GPU check on a lent GPU machine (dev-only; see bench/devgpu/README.md). bench/devgpu/build.sh copies
# this file to .devgpu/run.sh next to what it built; the device command, from the repository root, is
#
#   bash .devgpu/run.sh        with carry [".devgpu"]
#
# It installs the carried, slimmed faiss-gpu wheel offline into /tmp/site, points that wheel's CUDA 12 cuBLAS at
# the machine's CUDA 13 cuBLAS through the shims, then runs tests/bundle/test_gpu_index.py and bench/gpu_index.py.
# Results go flat into $OUT: gpu_preflight.log, gpu_tests.log, gpu_bench.log, gpu_index.json, gpu_index.md.
# Without a GPU (a local dry run) FAISS falls back to the CPU: the GPU tests skip and the bench measures the CPU.
# DEVGPU_BENCH_ARGS=--quick shortens the bench.
set -euo pipefail
OUT=${OUT:-/tmp/devgpu-out}
mkdir -p "$OUT"
DEV=$PWD/.devgpu
SITE=${DEVGPU_SITE:-/tmp/devgpu-site}  # deleted and refilled on every run
started=$(date +%s)
step() { echo "=== [$(($(date +%s) - started))s] $*"; }

step "machine"
cat "$DEV"/BUILD_INFO 2>/dev/null || echo "no $DEV/BUILD_INFO: build .devgpu with bench/devgpu/build.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader || echo "nvidia-smi failed"
python3 -c "import sys, numpy; print('python', sys.version.split()[0], sys.executable, 'numpy', numpy.__version__)"
nproc

step "find CUDA 13 cuBLAS"
CUBLAS13=""
for root in /opt/torch/.venv /usr/local /usr/lib /opt; do
    CUBLAS13=$(find "$root" -name 'libcublas.so.13*' -not -name '*.a' 2>/dev/null | sort | head -1 || true)
    [ -n "$CUBLAS13" ] && break
done
if [ -z "$CUBLAS13" ]; then
    CUBLAS13=$(find / -xdev -name 'libcublas.so.13*' -not -path '/proc/*' 2>/dev/null | sort | head -1 || true)
fi
echo "libcublas.so.13: ${CUBLAS13:-NOT FOUND}"
CUBLAS13_DIR=$(dirname "${CUBLAS13:-/nonexistent/x}")
ls "$CUBLAS13_DIR" 2>/dev/null | grep -E 'cublas|cudart|nvJitLink' | head -10 || true

step "install wheels into $SITE"
rm -rf "$SITE"
if ! python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$DEV"/whl/*.whl; then
    echo "pip failed; unzipping the wheels instead"
    python3 -c "import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]" "$SITE" "$DEV"/whl/*.whl
fi
# faiss-gpu preloads libcudart/libcublas/libcublasLt/libcurand from nvidia/<component>/lib: give it the shims.
mkdir -p "$SITE"/nvidia/cublas/lib "$SITE"/nvidia/curand/lib
cp "$DEV"/shim/lib/libcublas.so.12 "$DEV"/shim/lib/libcublasLt.so.12 "$SITE"/nvidia/cublas/lib/
cp "$DEV"/shim/lib/libcurand.so.10 "$SITE"/nvidia/curand/lib/
CUDART_DIR="$SITE/nvidia/cuda_runtime/lib"
export DEVGPU_CUBLAS13="$CUBLAS13"
export PYTHONPATH="$SITE:$PWD"
export LD_LIBRARY_PATH="$SITE/nvidia/cublas/lib:$CUDART_DIR:$CUBLAS13_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_WAIT_POLICY=PASSIVE

diagnose() {
    echo "--- ldd libfaiss.so"
    ldd "$SITE"/faiss/libfaiss.so 2>&1 | head -30 || true
    echo "--- LD_DEBUG=libs import faiss (filtered)"
    LD_DEBUG=libs python3 -c "import faiss" 2>&1 | grep -v 'trying file' \
        | grep -E -i 'find library=lib(cu|faiss|openblas|gomp)|init: .*(cu|faiss)|error|cannot|not found' \
        | head -60 || true
}

step "import faiss"
if ! python3 -c "import faiss; print('faiss', faiss.__version__, faiss.__file__, 'gpus', faiss.get_num_gpus())"; then
    diagnose
fi

step "preflight: one flat search on the GPU vs the CPU"
if ! python3 - <<'EOF' 2>&1 | tee "$OUT/gpu_preflight.log"; then
import time
import faiss
import numpy as np
rng = np.random.default_rng(0)
x = rng.standard_normal((10_000, 64), dtype=np.float32)
cpu = faiss.IndexFlatIP(64)
cpu.add(x)
res = faiss.StandardGpuResources()
began = time.perf_counter()
gpu = faiss.index_cpu_to_gpu(res, 0, cpu)
print("index_cpu_to_gpu", type(gpu).__name__, f"{time.perf_counter() - began:.2f}s", flush=True)
d_cpu, i_cpu = cpu.search(x[:64], 100)
d_gpu, i_gpu = gpu.search(x[:64], 100)
print("max |score diff|", float(np.abs(d_cpu - d_gpu).max()), "id agreement", float((i_cpu == i_gpu).mean()))
EOF
    echo "preflight failed"
    diagnose
fi

step "pytest tests/bundle/test_gpu_index.py"
set +e
python3 -m pytest -v -p no:cacheprovider tests/bundle/test_gpu_index.py 2>&1 | tee "$OUT/gpu_tests.log"
echo "pytest exit ${PIPESTATUS[0]}"

step "bench/gpu_index.py"
# shellcheck disable=SC2086  # DEVGPU_BENCH_ARGS (e.g. --quick for a dry run) is split on purpose
PYTHONUNBUFFERED=1 timeout 190 python3 bench/gpu_index.py --out "$OUT" ${DEVGPU_BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu_bench.log"
echo "bench exit ${PIPESTATUS[0]}"
set -e

step "done"
ls -la "$OUT"
