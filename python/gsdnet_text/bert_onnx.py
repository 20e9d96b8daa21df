"""The BERT encoder of all-MiniLM-L6-v2 written as an ONNX graph with onnx.helper, from the
safetensors weights (no torch, no transformers), so that any machine with numpy and onnx can
build `encoder.onnx` at set-up, and builds the same bytes every time.

Graph (the Hugging Face `BertModel` forward, eval mode): word + position + token-type
embeddings, LayerNorm; then per layer self-attention (heads of `hidden / heads` values, scores
/ sqrt(head size), padding keys masked by an additive bias), output dense + residual +
LayerNorm, feed-forward with the exact (erf) GELU, dense + residual + LayerNorm. I/O is the
text frontend contract (docs/DESIGN.md): `input_ids`, `attention_mask`, `token_type_ids` int64
[batch, seq] in, `last_hidden_state` float32 [batch, seq, hidden] out; pooling and
normalisation are the caller's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "last_hidden_state"
OPSET = 17
IR_VERSION = 8
# Additive bias of a padding key: exp() of it is exactly 0 in float32, and it stays finite in
# float16 (an accelerator may run the encoder in half precision).
MASK_BIAS = -10000.0


@dataclass(frozen=True)
class BertConfig:
    """The sizes of the encoder (config.json of the checkpoint)."""

    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    layer_norm_eps: float = 1e-12
    max_positions: int = 512
    vocab: int = 30522

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads

    @classmethod
    def from_json(cls, cfg: dict) -> "BertConfig":
        """From a Hugging Face config.json; raises ValueError for another architecture."""
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu":
            raise ValueError("config.json: not a BERT model with the erf GELU")
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("config.json: only absolute position embeddings are built")
        out = cls(
            hidden=int(cfg["hidden_size"]),
            layers=int(cfg["num_hidden_layers"]),
            heads=int(cfg["num_attention_heads"]),
            intermediate=int(cfg["intermediate_size"]),
            layer_norm_eps=float(cfg["layer_norm_eps"]),
            max_positions=int(cfg["max_position_embeddings"]),
            vocab=int(cfg["vocab_size"]),
        )
        if out.hidden % out.heads:
            raise ValueError("config.json: hidden_size is not a multiple of the head count")
        return out


class _Graph:
    """Nodes and initializers under construction, with unique names."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._consts: dict[str, str] = {}

    def weight(self, name: str, transpose: bool = False) -> str:
        """An initializer from the checkpoint (float32), transposed for x @ W^T if asked."""
        arr = np.asarray(self.weights[name], dtype=np.float32)
        if transpose:
            arr = np.ascontiguousarray(arr.T)
            name = name + ".T"
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def const(self, name: str, value) -> str:
        if name not in self._consts:
            self.inits.append(numpy_helper.from_array(np.asarray(value), name))
            self._consts[name] = name
        return name

    def op(self, op_type: str, inputs: list[str], out: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _linear(g: _Graph, x: str, prefix: str, out: str) -> str:
    y = g.op("MatMul", [x, g.weight(prefix + ".weight", transpose=True)], out + ".mm")
    return g.op("Add", [y, g.weight(prefix + ".bias")], out)


def _layer_norm(g: _Graph, x: str, prefix: str, eps: float, out: str) -> str:
    scale, bias = g.weight(prefix + ".weight"), g.weight(prefix + ".bias")
    return g.op("LayerNormalization", [x, scale, bias], out, axis=-1, epsilon=eps)


def _embeddings(g: _Graph, cfg: BertConfig) -> str:
    e = "embeddings"
    words = g.op("Gather", [g.weight(e + ".word_embeddings.weight"), "input_ids"], "emb.words")
    types = g.op(
        "Gather", [g.weight(e + ".token_type_embeddings.weight"), "token_type_ids"], "emb.types"
    )
    shape = g.op("Shape", ["input_ids"], "emb.shape")
    seq = g.op(
        "Slice",
        [shape, g.const("c.i1", np.array([1], np.int64)), g.const("c.i2", np.array([2], np.int64))],
        "emb.seq1",
    )
    seq = g.op("Squeeze", [seq, g.const("c.axes0", np.array([0], np.int64))], "emb.seq")
    zero, one = g.const("c.zero", np.array(0, np.int64)), g.const("c.one", np.array(1, np.int64))
    pos_ids = g.op("Range", [zero, seq, one], "emb.pos_ids")
    pos = g.op("Gather", [g.weight(e + ".position_embeddings.weight"), pos_ids], "emb.pos")
    x = g.op("Add", [words, pos], "emb.wp")
    x = g.op("Add", [x, types], "emb.sum")
    return _layer_norm(g, x, e + ".LayerNorm", cfg.layer_norm_eps, "emb.out")


def _mask_bias(g: _Graph) -> str:
    """[batch, 1, 1, seq]: 0 where the key is a token, MASK_BIAS where it is padding."""
    m = g.op("Cast", ["attention_mask"], "mask.f", to=TensorProto.FLOAT)
    m = g.op("Unsqueeze", [m, g.const("c.axes12", np.array([1, 2], np.int64))], "mask.4d")
    inv = g.op("Sub", [g.const("c.f1", np.array(1.0, np.float32)), m], "mask.inv")
    return g.op("Mul", [inv, g.const("c.bias", np.array(MASK_BIAS, np.float32))], "mask.bias")


def _heads(g: _Graph, x: str, cfg: BertConfig, perm: list[int], out: str) -> str:
    """[batch, seq, hidden] -> [batch, heads, seq, head] (or [.., head, seq] for keys)."""
    split = g.const("c.split", np.array([0, 0, cfg.heads, cfg.head_size], np.int64))
    y = g.op("Reshape", [x, split], out + ".split")
    return g.op("Transpose", [y], out, perm=perm)


def _attention(g: _Graph, x: str, mask: str, cfg: BertConfig, p: str, out: str) -> str:
    a = p + ".attention"
    q = _heads(g, _linear(g, x, a + ".self.query", out + ".q"), cfg, [0, 2, 1, 3], out + ".qh")
    k = _heads(g, _linear(g, x, a + ".self.key", out + ".k"), cfg, [0, 2, 3, 1], out + ".kh")
    v = _heads(g, _linear(g, x, a + ".self.value", out + ".v"), cfg, [0, 2, 1, 3], out + ".vh")
    s = g.op("MatMul", [q, k], out + ".scores")
    scale = g.const("c.sqrt_head", np.array(np.sqrt(cfg.head_size), np.float32))
    s = g.op("Div", [s, scale], out + ".scaled")
    s = g.op("Add", [s, mask], out + ".masked")
    prob = g.op("Softmax", [s], out + ".prob", axis=-1)
    ctx = g.op("MatMul", [prob, v], out + ".ctx")
    ctx = g.op("Transpose", [ctx], out + ".ctx_t", perm=[0, 2, 1, 3])
    merge = g.const("c.merge", np.array([0, 0, cfg.hidden], np.int64))
    ctx = g.op("Reshape", [ctx, merge], out + ".ctx_m")
    y = _linear(g, ctx, a + ".output.dense", out + ".proj")
    y = g.op("Add", [y, x], out + ".res")
    return _layer_norm(g, y, a + ".output.LayerNorm", cfg.layer_norm_eps, out)


def _gelu(g: _Graph, x: str, out: str) -> str:
    """0.5 x (1 + erf(x / sqrt 2)), the exact GELU of BERT's `gelu`."""
    sqrt2 = g.const("c.sqrt2", np.array(np.sqrt(2.0), np.float32))
    e = g.op("Erf", [g.op("Div", [x, sqrt2], out + ".div")], out + ".erf")
    e = g.op("Add", [e, g.const("c.f1", np.array(1.0, np.float32))], out + ".erf1")
    y = g.op("Mul", [x, e], out + ".xe")
    return g.op("Mul", [y, g.const("c.half", np.array(0.5, np.float32))], out)


def _layer(g: _Graph, x: str, mask: str, cfg: BertConfig, i: int) -> str:
    p = f"encoder.layer.{i}"
    h = _attention(g, x, mask, cfg, p, f"l{i}.attn")
    f = _gelu(g, _linear(g, h, p + ".intermediate.dense", f"l{i}.ffn1"), f"l{i}.gelu")
    y = _linear(g, f, p + ".output.dense", f"l{i}.ffn2")
    y = g.op("Add", [y, h], f"l{i}.res")
    return _layer_norm(g, y, p + ".output.LayerNorm", cfg.layer_norm_eps, f"l{i}.out")


def check_weights(weights: dict[str, np.ndarray], cfg: BertConfig) -> None:
    """Raise ValueError when a tensor the graph needs is absent or of another shape."""
    h, f = cfg.hidden, cfg.intermediate
    want = {
        "embeddings.word_embeddings.weight": (cfg.vocab, h),
        "embeddings.position_embeddings.weight": (cfg.max_positions, h),
        "embeddings.token_type_embeddings.weight": (2, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for i in range(cfg.layers):
        p = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            want[f"{p}.attention.self.{name}.weight"] = (h, h)
            want[f"{p}.attention.self.{name}.bias"] = (h,)
        want[f"{p}.attention.output.dense.weight"] = (h, h)
        want[f"{p}.intermediate.dense.weight"] = (f, h)
        want[f"{p}.intermediate.dense.bias"] = (f,)
        want[f"{p}.output.dense.weight"] = (h, f)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            want[f"{p}.{ln}.weight"] = (h,)
            want[f"{p}.{ln}.bias"] = (h,)
        want[f"{p}.attention.output.dense.bias"] = (h,)
        want[f"{p}.output.dense.bias"] = (h,)
    for name, shape in want.items():
        if name not in weights:
            raise ValueError(f"checkpoint lacks tensor {name}")
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"tensor {name}: shape {weights[name].shape}, expected {shape}")


def build_encoder(weights: dict[str, np.ndarray],
                  cfg: BertConfig = BertConfig()) -> onnx.ModelProto:
    """The encoder as an ONNX model (opset 17, symbolic axes "batch" and "seq"), checked."""
    check_weights(weights, cfg)
    g = _Graph(weights)
    x = _embeddings(g, cfg)
    mask = _mask_bias(g)
    for i in range(cfg.layers):
        x = _layer(g, x, mask, cfg, i)
    g.nodes.append(helper.make_node("Identity", [x], [OUTPUT], name=OUTPUT))
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in INPUTS]
    outs = [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", "seq", cfg.hidden])]
    graph = helper.make_graph(g.nodes, "all-minilm-l6-v2-encoder", ints, outs, g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="gsdnet_text.bert_onnx",
        producer_version="1",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model)
    return model
