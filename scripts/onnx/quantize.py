#!/usr/bin/env python3
"""Writes an int8 variant of an ONNX export of scripts/onnx/export_bert.py: the weights of every
MatMul quantized to int8 per output channel (symmetric), activations quantized per call
(ONNX Runtime's dynamic quantization: DynamicQuantizeLinear + MatMulInteger). The embedding
tables, LayerNorms and the rest stay f32. Deterministic for a given input and onnxruntime.

With --f32-ffn-out (the `.mixed.onnx` graphs), each layer's feed-forward output projection
(`encoder.layer.N.output.dense`, a third of a BERT layer's multiply-adds) stays f32: its input
is the GELU of the 4x-wide intermediate, whose few large values are what a per-call int8 scale
of the activations loses most on (the outliers of Bondarenko et al., "Understanding and
Overcoming the Challenges of Efficient Transformer Quantization", 2021).

Whole-int8 makes a MiniLM query about 2x faster; for documents it lost 0.016 dev MRR@10, and
the mixed graph none (docs/benchmarks.md has the figures). Loaded by the `onnx-int8` and
`onnx-mixed` runtimes (`embed.runtime`, `sparse.runtime`, `*.query_runtime`).

Usage: quantize.py [--f32-ffn-out] IN.onnx OUT.onnx
"""

import logging
import sys

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic


def ffn_output_matmuls(path):
    """The MatMul nodes whose weight is a layer's feed-forward output projection."""
    graph = onnx.load(path, load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    found = [
        n.name
        for n in graph.node
        if n.op_type == "MatMul"
        and any(i in weights and ".output.dense." in i and ".attention." not in i for i in n.input)
    ]
    if not found:
        raise SystemExit(f"{path}: no feed-forward output projection found (was it exported by export_bert.py?)")
    return found


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process is for CNNs
    args = sys.argv[1:]
    mixed = "--f32-ffn-out" in args
    args = [a for a in args if a != "--f32-ffn-out"]
    if len(args) != 2:
        raise SystemExit(__doc__)
    quantize_dynamic(
        args[0],
        args[1],
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=ffn_output_matmuls(args[0]) if mixed else [],
    )
