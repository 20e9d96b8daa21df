"""The standardisation rule of docs/DESIGN.md "Conventions" (tests/integration/standardise.rs checks the
same on the Rust side): z = 0 in a column constant in training, every other z clipped to
+-Z_CLIP, the inverse gives the training mean in a constant column; on the shipped model one
utterance with absurd finite values gives finite inputs and probabilities in every window."""
import numpy as np
import pytest
from conftest import ROOT

from gsdnet_ref import data as gdata
from gsdnet_ref.pipeline import OnnxModel, run_window

MODEL = ROOT / "models" / "gsdnet-mosi"
F32_MAX = np.finfo(np.float32).max
N, BAD, NO_VISUAL = 6, 2, 4


def synthetic():
    """Column 0 constant (mean 3), column 1 std 2 mean -1, column 2 std below the threshold."""
    mean = np.array([3.0, -1.0, 5.0], np.float32)
    std = np.array([0.0, 2.0, gdata.STD_CONSTANT / 2], np.float32)
    return mean, std


def test_constant_columns_standardise_to_zero_whatever_the_input():
    mean, std = synthetic()
    for x in (3.0, 3.000001, -1e-30, 1e30, F32_MAX, -F32_MAX, 0.0):
        z = gdata.standardise_values(np.full((1, 3), x, np.float32), mean, std)[0]
        assert z[0] == 0.0 and z[2] == 0.0, x
        assert np.isfinite(z[1]) and abs(z[1]) <= gdata.Z_CLIP


def test_other_columns_are_clipped_to_the_bound():
    mean, std = synthetic()
    raw = np.array([[0, 2, 0], [0, 1e30, 0], [0, -F32_MAX, 0], [0, -1 + 2 * gdata.Z_CLIP, 0]],
                   np.float32)
    z = gdata.standardise_values(raw, mean, std)[:, 1]
    assert z.tolist() == [1.5, gdata.Z_CLIP, -gdata.Z_CLIP, gdata.Z_CLIP]
    zero = gdata.zero_fill(raw, mean, std, np.zeros(4, bool), 8)
    assert zero[:4].tolist() == [[0.0, 0.5, 0.0]] * 4 and not zero[4:].any()


def test_a_constant_column_destandardises_to_the_mean():
    mean, std = synthetic()
    z = np.array([[0.0, 1.5, -7.0], [gdata.Z_CLIP, -7.0, 1.5]], np.float32)
    x = gdata.destandardise(z, mean, std)
    assert x[:, 0].tolist() == [3.0, 3.0] and x[:, 2].tolist() == [5.0, 5.0]
    assert x[:, 1].tolist() == [2.0, -15.0]


def test_no_training_or_validation_value_is_clipped():
    """The bound holds the real data: max |z| over train/ and val/ is below Z_CLIP, and the
    shipped model's constant columns are constant (at their mean) in both."""
    model = OnnxModel(MODEL)
    for split in ("train", "val"):
        folder = ROOT.parent / "shared" / "data" / "cmu-mosi" / split
        if not folder.is_dir():
            pytest.skip("shared CMU-MOSI data not present")
        convs = gdata.load_split(folder)
        for m in gdata.MODALITIES:
            mean, std = model.man.stats[m]
            x = np.concatenate([c.feats[m] for c in convs])
            const = std < gdata.STD_CONSTANT
            z = (x[:, ~const] - mean[~const]) / std[~const]
            assert np.abs(z).max() < gdata.Z_CLIP, (split, m)
            assert np.array_equal(x[:, const], np.broadcast_to(mean[const], x[:, const].shape))


def bad_conversation(man):
    rng = np.random.default_rng(0)
    feats = {m: (man.stats[m][0] + 0.5 * man.stats[m][1] * rng.uniform(-1, 1, (N, man.dims[m])))
             .astype(np.float32) for m in gdata.MODALITIES}
    const = np.flatnonzero(man.stats["visual"][1] < gdata.STD_CONSTANT)
    assert len(const) == 32
    feats["text"][BAD, 0], feats["audio"][BAD, 0] = 1e30, F32_MAX
    feats["visual"][BAD, const[0]] = 1e-3
    avail = np.ones((N, 3), bool)
    avail[NO_VISUAL, 2] = False
    return feats, avail, const


@pytest.mark.parametrize("completion", ["gsdnet", "meanfill", "zero"])
def test_one_bad_utterance_never_fails_a_window(completion):
    model = OnnxModel(MODEL)
    feats, avail, const = bad_conversation(model.man)
    for lo, hi in [(0, e) for e in range(BAD + 1, N + 1)] + [(s, N) for s in range(1, BAD + 1)]:
        rec = {}
        out = run_window(model, {m: f[lo:hi] for m, f in feats.items()}, avail[lo:hi],
                         np.zeros(hi - lo, np.int64), completion, noise_key=lo * 10 + hi, rec=rec)
        assert np.all(np.isfinite(out["probs"])) and np.all(np.isfinite(out["reg"]))
        for m in gdata.MODALITIES:
            assert np.all(np.isfinite(rec["std"][m])) and np.abs(rec["std"][m]).max() <= gdata.Z_CLIP
        assert not rec["std"]["visual"][:, const].any()
        assert rec["std"]["text"][BAD - lo, 0] == rec["std"]["audio"][BAD - lo, 0] == gdata.Z_CLIP
        if lo <= NO_VISUAL < hi:
            raw = rec["recon_raw"]["visual"][NO_VISUAL - lo]
            assert np.array_equal(raw[const], model.man.stats["visual"][0][const])
