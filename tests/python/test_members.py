"""A model of K members (gsdnet_torch.members, `train --members K`): the merged model computes
exactly what its members compute (encoder latents side by side, the mean of the members'
fusion logits and reconstructions), exports with the single model's part I/O, and `train
--members K` trains member j exactly as a single model of seed + j. Synthetic data only. Needs
torch and onnx (python/requirements-train.txt): skipped without them."""
import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
from gsdnet_torch import export, members, train  # noqa: E402
from gsdnet_torch.model import GSDNet  # noqa: E402

from gsdnet_ref.pipeline import OnnxModel, run_window  # noqa: E402

W, D, K_EIG, H = 8, 4, 4, 6
DIMS = {"text": 12, "audio": 5}


def model(members_=1, seed=0, nb_means=False):
    torch.manual_seed(seed)
    m = GSDNet(d=D * members_, k=K_EIG, width=W, hid=8, enc_hidden=H * members_,
               dims=tuple(DIMS.values()), modalities=tuple(DIMS), n_classes=6,
               regression=False, members=members_, nb_means=nb_means)
    with torch.no_grad():   # a trained model's positional rows are not zero
        m.encoders.pos.normal_()
    return m.eval()


def inputs(seed=1, b=2):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(b, W, d, generator=g) for d in DIMS.values()]
    avail = (torch.rand(b, W, 2, generator=g) > 0.3).float()
    adj = torch.rand(b, 2, W, W, generator=g)
    nm = torch.ones(b, W)
    nm[1, 5:] = 0
    return xs, avail, adj, nm


@pytest.mark.parametrize("nb_means", [False, True])
def test_merge_is_exact_for_encoders_recon_and_fusion(nb_means):
    parts = [model(seed=s, nb_means=nb_means) for s in (3, 4, 5)]
    merged = members.merge(parts, model(3, nb_means=nb_means))
    xs, avail, adj, nm = inputs()
    with torch.no_grad():
        h = merged.encoders(*xs)
        hs = [p.encoders(*xs) for p in parts]
        torch.testing.assert_close(h, torch.cat(hs, dim=-1), atol=1e-6, rtol=0)
        for r, rs in zip(merged.recon(h), zip(*[p.recon(hp) for p, hp in zip(parts, hs)])):
            torch.testing.assert_close(r, sum(rs) / 3, atol=1e-6, rtol=0)
        lg, _ = merged.fusion(h, avail, adj, nm)
        want = sum(p.fusion(hp, avail, adj, nm)[0] for p, hp in zip(parts, hs)) / 3
        torch.testing.assert_close(lg, want, atol=1e-6, rtol=0)


def test_merge_and_model_refuse_what_does_not_fit():
    with pytest.raises(ValueError, match="2 models into a model of 3"):
        members.merge([model(), model()], model(3))
    with pytest.raises(ValueError, match="members 2"):
        GSDNet(d=5, enc_hidden=6, members=2)
    with pytest.raises(ValueError, match="members 2"):
        GSDNet(d=4, enc_hidden=6, members=2, fusion_members=2)


@pytest.mark.parametrize("nb_means", [False, True])
def test_merged_model_exports_with_the_single_model_io(tmp_path, nb_means):
    """With the neighbour means too (`--nb-means`): the ONNX fusion computes what torch does."""
    merged = members.merge([model(seed=s, nb_means=nb_means) for s in (3, 4)],
                           model(2, nb_means=nb_means))
    assert merged.cfg.get("nb_means", False) is nb_means
    stats = {m: [np.zeros(d).tolist(), np.ones(d).tolist()] for m, d in DIMS.items()}
    args = dict(window_same=2, window_other=1, eps=1e-3, seed=0, epochs=1, ft_epochs=0, steps=2,
                sel_metric="f1_weighted", sel_rates=8, n_modalities=2, data="unused")
    info = dict(args=args, stats=stats, best_epoch=[0, 0], ft_best_epoch=None,
                data_sha256="0" * 64, layout="iemocap",
                classes=["hap", "sad", "neu", "ang", "exc", "fru"])
    orig, export.onnx_val_metrics = export.onnx_val_metrics, lambda f, v: {"protocol": "none"}
    try:
        export.export_model(merged, info, tmp_path / "m", ["--members", "2"])
    finally:
        export.onnx_val_metrics = orig
    onnx_model = OnnxModel(tmp_path / "m")
    assert onnx_model.man.raw["dims"]["latent"] == 2 * D
    rs = np.random.default_rng(1)
    feats = {m: rs.normal(size=(6, d)).astype(np.float32) for m, d in DIMS.items()}
    avail = np.array([[1, 1], [1, 0], [0, 1], [1, 1], [0, 1], [1, 0]], bool)
    rec = {}
    run_window(onnx_model, feats, avail, np.array([0, 1, 0, 1, 1, 0]), "meanfill", noise_key=7,
               rec=rec)
    t = lambda x: torch.from_numpy(np.asarray(x, np.float32))[None]  # noqa: E731
    with torch.no_grad():
        lg, _ = merged.fuse(t(rec["x0"]), t(rec["avail"]), t(rec["adj_fusion"]),
                            t(rec["node_mask"]))
    np.testing.assert_allclose(lg[0].numpy(), rec["logits"], atol=1e-4)


def write_split(folder, n_conv, seed):
    """An IEMOCAP-layout split of n_conv two-speaker conversations of 10 utterances."""
    folder.mkdir(parents=True)
    rs = np.random.default_rng(seed)
    header = ["utt_id", "conversation_id", "position", "speaker", "speaker_id", "label",
              "label_name"]
    names = ["hap", "sad", "neu"]
    rows = []
    for c in range(n_conv):
        for i in range(10):
            spk, lab = "MF"[i % 2], int(rs.integers(3))
            rows.append([f"c{c}_{spk}{i}", f"c{c}", i, spk, f"S_{spk}", lab, names[lab]])
    with open(folder / "utterances.csv", "w", newline="") as f:
        csv.writer(f).writerows([header] + rows)
    for m, d in DIMS.items():
        rs.normal(size=(len(rows), d)).astype("<f4").tofile(folder / f"{m}.f32")


def test_train_members_trains_member_j_as_the_single_model_of_seed_plus_j(tmp_path):
    write_split(tmp_path / "d" / "train", 6, 0)
    write_split(tmp_path / "d" / "val", 3, 1)
    common = ["--data", str(tmp_path / "d"), "--epochs", "2", "--score-epochs", "1",
              "--ft-epochs", "0", "--no-prior", "--d", str(D), "--k", str(K_EIG),
              "--width", str(W), "--hid", "8", "--enc-hidden", str(H), "--threads", "1",
              "--window-same", "2", "--window-other", "1"]
    merged, info = train.main(common + ["--seed", "7", "--members", "2"])
    assert merged.cfg["members"] == 2 and merged.cfg["d"] == 2 * D
    assert isinstance(info["best_epoch"], list) and len(info["best_epoch"]) == 2
    for j in range(2):
        single, _ = train.main(common + ["--seed", str(7 + j)])
        lin, one = merged.encoders.lins[0], single.encoders.lins[0]
        torch.testing.assert_close(lin.a.weight[j * H:(j + 1) * H], one.a.weight)
        torch.testing.assert_close(lin.b.weight[j * D:(j + 1) * D, j * H:(j + 1) * H],
                                   one.b.weight)
        torch.testing.assert_close(merged.fusion.members[j].cls.weight, single.fusion.cls.weight)
    with pytest.raises(SystemExit, match="--members"):
        train.main(common + ["--members", "2", "--fusion-members", "2"])


def test_selection_set_adds_each_pattern_once_per_mask_seed(tmp_path):
    from gsdnet_ref import data as gdata
    from gsdnet_torch import common as tcommon
    write_split(tmp_path / "val", 3, 1)
    val = gdata.load_split(tmp_path / "val")
    stats = {m: (np.zeros(d, np.float32), np.ones(d, np.float32)) for m, d in DIMS.items()}
    vb = tcommon.make_batch(val, stats, W, K_EIG, 2, 1)
    args = train.parse_args(["--sel-patterns", "T", "A"])
    args.n_modalities, args.sel_metric = 2, "f1_weighted"
    m = model()
    score, accs = train.val_score(m, vb, args, "meanfill")
    assert len(accs) == 2 * (6 + 2)          # 2 mask seeds x (rates 0.0-0.5, then T and A)
    _, plain = train.val_score(m, vb, args, "meanfill", rates=(0.0, 0.5))
    assert len(plain) == 2 * 2               # explicit rates: the patterns are not added
    only_a = tcommon.protocol_avail(vb, 0, pattern="A")
    m.eval()                                 # val_score leaves the model in training mode
    with torch.no_grad():
        lg, _ = tcommon.predict(m, vb, only_a, "meanfill", 2, 1e-3, None)
    assert accs[7] == pytest.approx(tcommon.metrics(lg, None, vb)["f1_weighted"])
