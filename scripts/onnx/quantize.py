#!/usr/bin/env python3
"""Writes the int8 variant of an ONNX export of scripts/onnx/export_bert.py: the weights of every
MatMul quantized to int8 per output channel (symmetric), activations quantized per call
(ONNX Runtime's dynamic quantization: DynamicQuantizeLinear + MatMulInteger). The embedding
tables, LayerNorms and the rest stay f32. Deterministic for a given input and onnxruntime.

On this project's 2-core machine (AVX, no AVX2) it makes a MiniLM query about 2x faster, its
embeddings within cosine 0.95 of the f32 graph's (0.99 on average over the dev queries); docs/benchmarks.md has the figures and the
retrieval quality with it. Loaded by the `onnx-int8` runtime (`embed.runtime`, `sparse.runtime`).

Usage: quantize.py IN.onnx OUT.onnx
"""

import logging
import sys

from onnxruntime.quantization import QuantType, quantize_dynamic

if __name__ == "__main__":
    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process is for CNNs
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    quantize_dynamic(
        sys.argv[1],
        sys.argv[2],
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
    )
