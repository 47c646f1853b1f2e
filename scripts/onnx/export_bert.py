#!/usr/bin/env python3
"""Writes an ONNX graph of a BERT model folder (config.json + model.safetensors), the same
computation candle runs, so ONNX Runtime can serve it:

  embed   BertModel, mean pooling over the attention mask -> `pooled` (batch, hidden)
  splade  BertForMaskedLM (decoder tied to the word embeddings when the file has none),
          max over unmasked tokens of the logits, then log(1 + relu(.)) -> `weights` (batch, vocab)

Inputs of both: `input_ids`, `attention_mask` (batch, tokens) int64; token types are zero.
The graph is built op by op from the weights (no PyTorch needed) and is deterministic: the same
weights give the same bytes. Usage: export_bert.py {embed|splade} MODEL_DIR OUT.onnx
"""
import json
import math
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file


def canonical(weights):
    out = {}
    for k, v in weights.items():
        if k.endswith("LayerNorm.gamma"):
            k = k[: -len("gamma")] + "weight"
        elif k.endswith("LayerNorm.beta"):
            k = k[: -len("beta")] + "bias"
        out[k] = v
    return out


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, kind, inputs, domain=None, **attrs):
        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], name=out, domain=domain, **attrs))
        return out


def build(kind, model_dir):
    cfg = json.load(open(f"{model_dir}/config.json"))
    w = canonical(load_file(f"{model_dir}/model.safetensors"))
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise SystemExit(f"hidden_act {cfg.get('hidden_act')} is not supported (gelu only)")
    g = Graph()
    W = lambda k: w[prefix + k] if prefix + k in w else w[k]

    def linear(x, base):
        wt = g.const(base + ".weight.T", W(base + ".weight").T.astype(np.float32))
        b = g.const(base + ".bias", W(base + ".bias").astype(np.float32))
        return g.op("Add", [g.op("MatMul", [x, wt]), b])

    def layer_norm(x, base):
        s = g.const(base + ".weight", W(base + ".weight").astype(np.float32))
        b = g.const(base + ".bias", W(base + ".bias").astype(np.float32))
        return g.op("LayerNormalization", [x, s, b], axis=-1, epsilon=eps)

    def gelu(x):  # exact (erf) GELU, as HF "gelu" and candle's Gelu
        inner = g.op("Erf", [g.op("Div", [x, g.const(g.name("sqrt2"), np.array(math.sqrt(2.0), np.float32))])])
        one = g.const(g.name("one"), np.array(1.0, np.float32))
        half = g.const(g.name("half"), np.array(0.5, np.float32))
        return g.op("Mul", [g.op("Mul", [x, half]), g.op("Add", [inner, one])])

    # Embeddings: word + position + token type 0, then LayerNorm.
    ids = "input_ids"
    mask = "attention_mask"
    word = g.op("Gather", [g.const("word_embeddings", W("embeddings.word_embeddings.weight")), ids], axis=0)
    seq = g.op("Shape", [ids], start=1, end=2)  # (1,): the token count
    pos = g.op("Slice", [g.const("position_embeddings", W("embeddings.position_embeddings.weight")),
                         g.const("zero_i", np.array([0], np.int64)), seq, g.const("axis_0", np.array([0], np.int64))])
    typ = g.const("token_type_0", W("embeddings.token_type_embeddings.weight")[0])
    x = layer_norm(g.op("Add", [g.op("Add", [word, pos]), typ]), "embeddings.LayerNorm")

    # Additive attention mask (batch, 1, 1, tokens): 0 for tokens, a large negative for padding.
    maskf = g.op("Cast", [mask], to=TensorProto.FLOAT)
    neg = g.op("Mul", [g.op("Sub", [g.const("one_f", np.array(1.0, np.float32)), maskf]),
                       g.const("neg_f", np.array(np.finfo(np.float32).min, np.float32))])
    bias = g.op("Unsqueeze", [neg, g.const("axes_12", np.array([1, 2], np.int64))])

    split_shape = g.const("split_heads", np.array([0, 0, heads, head_dim], np.int64))
    merge_shape = g.const("merge_heads", np.array([0, 0, hidden], np.int64))
    scale = g.const("scale", np.array(1.0 / math.sqrt(head_dim), np.float32))

    def heads_of(t):
        return g.op("Transpose", [g.op("Reshape", [t, split_shape])], perm=[0, 2, 1, 3])

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q = heads_of(linear(x, p + "attention.self.query"))
        k = heads_of(linear(x, p + "attention.self.key"))
        v = heads_of(linear(x, p + "attention.self.value"))
        kt = g.op("Transpose", [k], perm=[0, 1, 3, 2])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, kt]), scale]), bias])
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
        x = layer_norm(g.op("Add", [linear(ctx, p + "attention.output.dense"), x]), p + "attention.output.LayerNorm")
        h = gelu(linear(x, p + "intermediate.dense"))
        x = layer_norm(g.op("Add", [linear(h, p + "output.dense"), x]), p + "output.LayerNorm")

    mask3 = g.op("Unsqueeze", [maskf, g.const("axis_2", np.array([2], np.int64))])
    if kind == "embed":
        summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), g.const("axis_1", np.array([1], np.int64))], keepdims=0)
        count = g.op("Max", [g.op("ReduceSum", [mask3, g.const("axis_1b", np.array([1], np.int64))], keepdims=0),
                             g.const("tiny", np.array(1e-9, np.float32))])
        out = g.op("Div", [summed, count])
        out_name, out_dim = "pooled", hidden
    elif kind == "splade":
        t = gelu(linear(x, "cls.predictions.transform.dense"))
        t = layer_norm(t, "cls.predictions.transform.LayerNorm")
        dec = w.get("cls.predictions.decoder.weight", W("embeddings.word_embeddings.weight"))
        dec_b = w.get("cls.predictions.decoder.bias", w["cls.predictions.bias"])
        logits = g.op("Add", [g.op("MatMul", [t, g.const("decoder.weight.T", dec.T.astype(np.float32))]),
                              g.const("decoder.bias", dec_b.astype(np.float32))])
        pad = g.op("Mul", [g.op("Sub", [mask3, g.const("one_f2", np.array(1.0, np.float32))]),
                           g.const("big", np.array(1e9, np.float32))])
        pooled = g.op("ReduceMax", [g.op("Add", [logits, pad]), g.const("axis_1c", np.array([1], np.int64))], keepdims=0)
        out = g.op("Log", [g.op("Add", [g.op("Relu", [pooled]), g.const("one_f3", np.array(1.0, np.float32))])])
        out_name, out_dim = "weights", cfg["vocab_size"]
    else:
        raise SystemExit(f"unknown kind {kind} (embed or splade)")
    g.nodes.append(helper.make_node("Identity", [out], [out_name], name=out_name))

    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in (ids, mask)]
    outputs = [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", out_dim])]
    graph = helper.make_graph(g.nodes, f"{kind}_{cfg.get('model_type', 'bert')}", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="codeintel")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    model = build(sys.argv[1], sys.argv[2])
    onnx.save_model(model, sys.argv[3])
