"""The random-weights fixtures' ONNX parts have exactly contract v2's I/O (names, order and
shapes) for the modalities, classes and regression head their manifests declare, and the
manifests declare the same I/O as the ONNX files. The expected I/O is written out here from the
contract, independently of tests/fixtures/make_tiny_model.py and of src/manifest.rs."""
import tomllib

import pytest
from conftest import ROOT

onnx = pytest.importorskip("onnx")

FIXTURES = ROOT / "tests" / "fixtures"
CANONICAL = ("text", "audio", "visual")


def contract_io(man):
    """Contract v2 "ONNX parts": M slots in canonical order, K classes, reg only with a head."""
    mods = [m for m in CANONICAL if m in man["modalities"]]
    m, dims = len(mods), man["dims"]
    w, d, k = dims["window"], dims["latent"], dims["k"]
    n_classes = len(man["model"]["classes"])
    lat = [1, m, w, d]
    feats = [(x, [1, w, man["modalities"][x]]) for x in mods]
    avail, mask = ("avail", [1, w, m]), ("node_mask", [1, w])
    heads = [("logits", [1, w, n_classes])]
    if man["model"]["has_regression"]:
        heads.append(("reg", [1, w, 1]))
    return {
        "encoders": (feats, [("h", lat)]),
        "s_theta": ([("x_t", lat), ("t", [1]), ("cond", lat), avail, ("adj_t", [1, m, w, w]), mask],
                    [("score", lat)]),
        "s_phi": ([("lam_t", [1, m, k]), ("t", [1]), ("lam_obs", [1, m, k]), ("u", [1, w, k]),
                   ("cond", lat), avail, mask], [("score", [1, m, k])]),
        "recon": ([("x", lat)], feats),
        "fusion": ([("x", lat), avail, ("adj", [1, 2, w, w]), mask], heads),
    }


def onnx_io(values):
    return [(v.name, [dim.dim_value for dim in v.type.tensor_type.shape.dim]) for v in values]


def load_manifest(name):
    return tomllib.loads((FIXTURES / name / "manifest.toml").read_text())


@pytest.mark.parametrize("name", ["tiny-model", "tiny-ta3"])
def test_parts_have_the_contract_io(name):
    man = load_manifest(name)
    for part, (ins, outs) in contract_io(man).items():
        model = onnx.load(str(FIXTURES / name / man["parts"][part]["file"]))
        onnx.checker.check_model(model)
        assert onnx_io(model.graph.input) == ins, f"{name} {part} inputs"
        assert onnx_io(model.graph.output) == outs, f"{name} {part} outputs"
        declared = man["parts"][part]
        assert [(x["name"], x["shape"]) for x in declared["inputs"]] == ins, f"{name} {part}"
        assert [(x["name"], x["shape"]) for x in declared["outputs"]] == outs, f"{name} {part}"


def test_tiny_ta3_is_two_modalities_three_classes_no_regression():
    man = load_manifest("tiny-ta3")
    assert man["modalities"] == {"text": 12, "audio": 1024}
    assert man["model"]["classes"] == ["calm", "happy", "angry"]
    assert man["model"]["has_regression"] is False
    fusion = onnx.load(str(FIXTURES / "tiny-ta3" / "fusion.onnx"))
    assert [o.name for o in fusion.graph.output] == ["logits"]
    assert set(man["normalisation"]) == {"text_mean", "text_std", "audio_mean", "audio_std"}
    assert len(man["normalisation"]["audio_std"]) == 1024
