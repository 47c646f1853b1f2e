#!/usr/bin/env bash
# Packs what a GPU host needs to check vector-svc's GPU path: `codeintel` and vector-svc's test
# binary built here with `--features gpu`, libduckdb and the BLAS libraries FAISS links, into
# .gpu/bundle.tar.xz (ignored by git). A GPU host needs no Rust toolchain: run
# scripts/gpu-check.sh there with .gpu carried beside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=/var/cache/codeintel/target}"
export CARGO_TARGET_DIR
cargo build --release -p codeintel --features gpu
test_bin=$(cargo test --release -p vector-svc --features gpu --lib --no-run --message-format=json 2>/dev/null |
  python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])')
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/b" .gpu
cp "$CARGO_TARGET_DIR/release/codeintel" "$stage/b/codeintel"
cp "$test_bin" "$stage/b/vector-tests"
strip "$stage/b/codeintel" "$stage/b/vector-tests"
cp "${CODEINTEL_CACHE:-/var/cache/codeintel}/lib/libduckdb.so" "$stage/b/"
for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 libgomp.so.1; do
  cp -L "$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')" "$stage/b/$lib"
done
tar -C "$stage" -cf - b | xz -6 -T2 > .gpu/bundle.tar.xz
cp scripts/gpu-check.sh .gpu/run.sh
ls -la .gpu
