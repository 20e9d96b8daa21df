"""The fusion's neighbour means (`train --nb-means`, docs/MODEL.md "IEMOCAP" item 8): per
modality the mean of the structural neighbours' observed latents, missing neighbours left out,
and the observed share of the weight; a merged model with them stays exact and exports with
the single model's part I/O, and the ONNX fusion computes what torch does. Synthetic data only.
Needs torch and onnx (python/requirements-train.txt): skipped without them."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
from gsdnet_torch import export, members  # noqa: E402
from gsdnet_torch.model import NB_EPS, Fusion, GSDNet  # noqa: E402

from gsdnet_ref.pipeline import OnnxModel, run_window  # noqa: E402

W, D, K_EIG, H = 8, 4, 4, 6
DIMS = {"text": 12, "audio": 5}


def test_neighbour_means_leave_missing_neighbours_out():
    """Three nodes on a path with self loops (weights by hand); node 1 lacks text, node 2
    lacks audio. Node 0's text mean is its own text (its neighbour 1 has none), node 1's
    audio mean the weighted mean of nodes 0 and 1, and the shares are the observed weight."""
    f = Fusion(d=2, hid=4, m=2, n_classes=3, regression=False, nb_means=True).eval()
    x = torch.tensor([[[1.0, 2.0], [5.0, 6.0], [3.0, 4.0]],          # text of nodes 0, 1, 2
                      [[-1.0, 0.0], [0.0, -2.0], [9.0, 9.0]]])[None]  # audio
    avail = torch.tensor([[[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]])      # [B,W,M]
    x_obs = x * avail.permute(0, 2, 1)[..., None]
    a = torch.tensor([[[0.5, 0.5, 0.0], [0.25, 0.5, 0.25], [0.0, 0.5, 0.5]]])
    out = f._neighbour_means(x_obs, avail, a)[0]                      # [W, 2d + 2]
    text, audio, share = out[:, :2], out[:, 2:4], out[:, 4:]
    torch.testing.assert_close(text[0], torch.tensor([1.0, 2.0]) * 0.5 / (0.5 + NB_EPS))
    want1 = (0.25 * torch.tensor([1.0, 2.0]) + 0.25 * torch.tensor([3.0, 4.0])) / (0.5 + NB_EPS)
    torch.testing.assert_close(text[1], want1)
    want_a1 = (0.25 * torch.tensor([-1.0, 0.0]) + 0.5 * torch.tensor([0.0, -2.0])) / (0.75 + NB_EPS)
    torch.testing.assert_close(audio[1], want_a1)
    torch.testing.assert_close(audio[2], torch.tensor([0.0, -2.0]) * 0.5 / (0.5 + NB_EPS))
    torch.testing.assert_close(share, torch.tensor([[0.5, 1.0], [0.5, 0.75], [0.5, 0.5]])
                               / (1.0 + NB_EPS))
    # a node whose neighbours all lack a modality reads zeros for it, not a division by zero
    none = f._neighbour_means(x_obs * 0, avail * 0, a)
    assert torch.isfinite(none).all() and none.abs().max() == 0


def test_neighbour_means_change_the_logits_only_through_their_weights():
    torch.manual_seed(0)
    f = Fusion(d=D, hid=8, m=2, n_classes=4, regression=False, nb_means=True).eval()
    x = torch.randn(1, 2, W, D)
    avail = (torch.rand(1, W, 2) > 0.4).float()
    adj = torch.rand(1, 2, W, W)
    nm = torch.ones(1, W)
    with torch.no_grad():
        on = f(x, avail, adj, nm)[0]
        f.inp_nb.weight.zero_()
        off = f(x, avail, adj, nm)[0]
        plain = Fusion(d=D, hid=8, m=2, n_classes=4, regression=False)
        plain.load_state_dict({k: v for k, v in f.state_dict().items() if not k.startswith("inp_nb")})
        torch.testing.assert_close(off, plain.eval()(x, avail, adj, nm)[0])
    assert (on - off).abs().max() > 1e-3


def model(seed):
    torch.manual_seed(seed)
    m = GSDNet(d=D, k=K_EIG, width=W, hid=8, enc_hidden=H, dims=tuple(DIMS.values()),
               modalities=tuple(DIMS), n_classes=4, regression=False, nb_means=True)
    with torch.no_grad():
        m.encoders.pos.normal_()
    return m.eval()


def test_merged_model_with_neighbour_means_is_exact_and_exports(tmp_path):
    into = GSDNet(d=2 * D, k=K_EIG, width=W, hid=8, enc_hidden=2 * H, dims=tuple(DIMS.values()),
                  modalities=tuple(DIMS), n_classes=4, regression=False, members=2, nb_means=True)
    parts = [model(3), model(4)]
    merged = members.merge(parts, into.eval())
    assert merged.cfg["nb_means"] is True
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(1, W, d, generator=g) for d in DIMS.values()]
    avail = (torch.rand(1, W, 2, generator=g) > 0.3).float()
    adj = torch.rand(1, 2, W, W, generator=g)
    nm = torch.ones(1, W)
    with torch.no_grad():
        hs = [p.encoders(*xs) for p in parts]
        lg, _ = merged.fusion(merged.encoders(*xs), avail, adj, nm)
        want = sum(p.fusion(h, avail, adj, nm)[0] for p, h in zip(parts, hs)) / 2
    torch.testing.assert_close(lg, want, atol=1e-6, rtol=0)

    stats = {m: [np.zeros(d).tolist(), np.ones(d).tolist()] for m, d in DIMS.items()}
    args = dict(window_same=2, window_other=1, eps=1e-3, seed=0, epochs=1, ft_epochs=0, steps=2,
                sel_metric="f1_weighted", sel_rates=8, n_modalities=2, data="unused")
    info = dict(args=args, stats=stats, best_epoch=[0, 0], ft_best_epoch=None,
                data_sha256="0" * 64, layout="iemocap", classes=["hap", "sad", "neu", "ang"])
    orig, export.onnx_val_metrics = export.onnx_val_metrics, lambda f, v: {"protocol": "none"}
    try:
        export.export_model(merged, info, tmp_path / "m", ["--members", "2", "--nb-means"])
    finally:
        export.onnx_val_metrics = orig
    onnx_model = OnnxModel(tmp_path / "m")
    rs = np.random.default_rng(1)
    feats = {m: rs.normal(size=(6, d)).astype(np.float32) for m, d in DIMS.items()}
    mask = np.array([[1, 1], [1, 0], [0, 1], [1, 1], [0, 1], [1, 0]], bool)
    rec = {}
    run_window(onnx_model, feats, mask, np.array([0, 1, 0, 1, 1, 0]), "meanfill", noise_key=7,
               rec=rec)
    t = lambda v: torch.from_numpy(np.asarray(v, np.float32))[None]  # noqa: E731
    with torch.no_grad():
        lg, _ = merged.fuse(t(rec["x0"]), t(rec["avail"]), t(rec["adj_fusion"]),
                            t(rec["node_mask"]))
    np.testing.assert_allclose(lg[0].numpy(), rec["logits"], atol=1e-4)
