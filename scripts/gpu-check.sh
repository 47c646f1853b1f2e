#!/usr/bin/env bash
# On a GPU host, from the repository root with .gpu/ (scripts/gpu-bundle.sh) beside it: vector-svc's
# tests including the GPU ones, then `codeintel bench gpu` (GPU exact search against FAISS Flat
# on the CPU, same vectors). Results go to $OUT (default ./gpu-out).
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
(cd .gpu && python3 -c "import tarfile; tarfile.open('bundle.tar.xz').extractall('.')") || exit 9
G=$PWD/.gpu/b
export LD_LIBRARY_PATH=$G:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
export RUST_BACKTRACE=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.txt"
echo "== vector-svc tests, GPU ones included"
timeout 300 "$G/vector-tests" --include-ignored --test-threads 2 > "$OUT/tests.log" 2>&1
echo "tests rc=$?"
grep -E "^test |test result" "$OUT/tests.log"
echo "== codeintel bench gpu"
timeout 400 "$G/codeintel" bench gpu --n "${N:-100000,1000000}" --queries "${QUERIES:-3000}" \
  --batches 1,16,128,1024 --k "${K:-10}" > "$OUT/bench.json" 2> "$OUT/bench.err"
echo "bench rc=$?"
cat "$OUT/bench.json"
