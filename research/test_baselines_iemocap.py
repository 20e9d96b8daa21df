"""research/baselines_iemocap.py: the local IEMOCAP loader on val/ (shapes, labels, conversation
grouping), the support-weighted F1 against a hand-computed case, the protocol masks it draws,
and one BiLSTM-peer training step plus a logistic fit on a few conversations. Skipped where
../shared/data/iemocap is absent (the data is never in the repository), and without torch
(python/requirements-train.txt; the test command does not install it). scripts/test.sh runs
this file with the Python suite (`pytest tests/python research`)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import baselines_iemocap as bi  # noqa: E402

VAL = {"6way": (1512, 30, 6), "4way": (1031, 30, 4)}


def test_weighted_f1_matches_a_hand_computed_case():
    # truth 0 0 0 1 1 2, prediction 0 0 1 1 2 2:
    # class 0: tp 2, support 3, predicted 2 -> F1 = 4/5; class 1: tp 1, 2, 2 -> 1/2;
    # class 2: tp 1, 1, 2 -> 2/3; weighted = (3 * 0.8 + 2 * 0.5 + 1 * 2/3) / 6
    y, pred = np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2])
    assert bi.f1_weighted(y, pred, 3) == pytest.approx((2.4 + 1.0 + 2 / 3) / 6)
    # a class absent from the truth but predicted weighs nothing; class 0 then has F1 2/3
    assert bi.f1_weighted(np.array([0, 0]), np.array([0, 3]), 4) == pytest.approx(2 / 3)
    assert bi.f1_weighted(y, y, 3) == 1.0
    assert bi.scores(y, pred, 3)["accuracy"] == pytest.approx(4 / 6)


def _need_data():
    if not (bi.DATA / "6way" / "val" / "utterances.csv").exists():
        pytest.skip(f"{bi.DATA} absent")


@pytest.mark.parametrize("task", sorted(VAL))
def test_loader_on_val(task):
    _need_data()
    n, convs, k = VAL[task]
    val = bi.load_split(bi.DATA / task / "val")
    assert val["n"] == n and len(val["conv"]) == convs == len(val["bounds"])
    assert val["feats"]["text"].shape == (n, 300) and val["feats"]["audio"].shape == (n, 47)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in val["feats"].values())
    assert val["y"].min() == 0 and val["y"].max() == k - 1 and len(val["names"]) == k
    assert val["names"][0].startswith("hap") and val["names"][3] == "ang"  # 4-way: hap+exc
    assert all(c.startswith("Ses04") for c in val["conv"])
    assert val["bounds"][0][0] == 0 and val["bounds"][-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(val["bounds"], val["bounds"][1:]))
    z = bi.standardise(val, bi.train_stats(val))
    assert z.shape == (n, 347) and np.abs(z).max() <= bi.Z_CLIP
    assert np.allclose(z.mean(0), 0, atol=1e-3)


def test_protocol_masks_keep_one_modality():
    _need_data()
    val = bi.load_split(bi.DATA / "4way" / "val")
    full = bi.protocol_avail(val, 0, rate=0.0)
    assert full.all()
    half = bi.protocol_avail(val, 1, rate=0.5)
    assert half.shape == (val["n"], 2) and half.any(1).all() and not half.all(1).any()
    assert (bi.protocol_avail(val, pattern="A") == [False, True]).all()
    assert bi.expand(half).shape == (val["n"], 347)


def test_one_training_step_and_a_prediction():
    _need_data()
    torch.set_num_threads(1)
    train = bi.load_split(bi.DATA / "4way" / "train")
    few = dict(train, conv=train["conv"][:3], bounds=train["bounds"][:3])
    z = bi.standardise(train, bi.train_stats(train))
    tb = bi.pad_split(few, z)
    net = bi.Peer(4, hid=8)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss = bi.train_step(net, opt, tb, torch.arange(3), torch.Generator().manual_seed(0))
    assert np.isfinite(loss) and loss > 0
    n = few["bounds"][-1][1]
    pred = bi.peer_predict(net, tb, np.ones((n, 2), bool))
    assert pred.shape == (n,) and pred.min() >= 0 and pred.max() < 4
    lin = bi.train_logistic(z[:n], train["y"][:n], 4)
    assert bi.logistic_predict(lin, z[:n], np.ones((n, 2), bool)).shape == (n,)
