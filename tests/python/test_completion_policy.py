"""The manifest's default completion (`[completion]`, docs/DESIGN.md "Default completion"):
parsing and per-window resolution (gsdnet_ref.completion), the choice rule of
gsdnet_torch.choose_completion (never below mean fill), `gsdnet_ref.evaluate`'s `default`
mode, the session folds of gsdnet_torch.folds and the mixture temperature fit of
gsdnet_torch.crossfit."""
import shutil

import numpy as np
import pytest
from conftest import ROOT

from gsdnet_ref import data as gdata
from gsdnet_ref.completion import Policy, load_policy
from gsdnet_ref.evaluate import scenario_outputs
from gsdnet_ref.pipeline import OnnxModel
from gsdnet_torch import calibrate, choose_completion, crossfit, folds

MOSI = ROOT / "models" / "gsdnet-mosi"
TA = np.array([1, 2], np.int64)      # slot bits of a text + audio model


def test_absent_table_is_gsdnet_everywhere():
    p = load_policy({})
    assert p.default == "gsdnet" and p.patterns == {}
    assert p.resolve(np.array([[1, 0], [0, 1]]), TA) == "gsdnet"


def test_policy_is_parsed_and_validated():
    p = load_policy({"completion": {"default": "meanfill", "patterns": {"A": "gsdnet"},
                                    "chosen_on": "val", "val_f1_policy": [0.5]}})
    assert p.default == "meanfill" and p.patterns == {"A": "gsdnet"}
    for bad in ({"patterns": {}}, {"default": "tweedie"}, {"default": 1},
                {"default": "zero", "patterns": {"X": "zero"}},
                {"default": "zero", "patterns": {"TT": "zero"}},
                {"default": "zero", "patterns": {"A": "mean"}},
                {"default": "zero", "patterns": 3}):
        with pytest.raises(ValueError):
            load_policy({"completion": bad})


def test_window_pattern_resolution():
    p = Policy("meanfill", tuple("gsdnet" if b == 2 else None for b in range(8)))
    assert p.resolve(np.array([[0, 1], [0, 1]]), TA) == "gsdnet"      # A on every utterance
    assert p.resolve(np.array([[0, 1], [1, 1]]), TA) == "meanfill"    # mixed window
    assert p.resolve(np.array([[1, 0], [1, 0]]), TA) == "meanfill"    # T: not listed


def test_choice_never_loses_to_meanfill():
    scores = {"0.1": {"gsdnet": 0.70, "meanfill": 0.69, "zero": 0.71},
              "0.5": {"gsdnet": 0.60, "meanfill": 0.61, "zero": 0.50},
              "T": {"gsdnet": 0.50, "meanfill": 0.52, "zero": 0.40},
              "A": {"gsdnet": 0.45, "meanfill": 0.40, "zero": 0.45}}
    yes = lambda *a: True  # noqa: E731
    p = choose_completion.choose(scores, ["0.1", "0.5"], ["T", "A"], yes)
    # gsdnet and zero lose at 0.5, so meanfill is the default; at A gsdnet and zero tie above
    # it (the first in MODES order wins), T stays on the default
    assert p.default == "meanfill"
    assert p.patterns == {"A": "gsdnet"}
    # a gain the bootstrap does not support keeps mean fill
    assert choose_completion.choose(scores, ["0.1", "0.5"], ["T", "A"], lambda *a: False) \
        == Policy("meanfill")
    scores["0.5"]["gsdnet"] = 0.615
    p = choose_completion.choose(scores, ["0.1", "0.5"], ["T", "A"], yes)
    # gsdnet now >= meanfill at every rate; at T it is below mean fill, so T gets meanfill
    assert p.default == "gsdnet" and p.patterns == {"T": "meanfill"}


def test_bootstrap_f1_is_the_weighted_f1():
    rng = np.random.default_rng(1)
    y, pred = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    conf = np.zeros((4, 4), np.int64)
    np.add.at(conf, (y, pred), 1)
    want = choose_completion.gmetrics.classification(pred, y, 4)["f1_weighted"]
    assert choose_completion.f1_from_confusion(conf) == pytest.approx(want, abs=1e-12)


def test_window_bits_marks_uniform_windows():
    class Man:
        width = 2
        bits = TA
    convs = [gdata.Conversation("c", ["a", "b", "c"], {}, None, np.zeros(3, np.int64))]
    avail = np.array([[0, 1], [0, 1], [1, 1]], bool)
    np.testing.assert_array_equal(choose_completion.window_bits(Man, convs, avail), [2, 2, 3])
    avail[1] = [1, 0]
    np.testing.assert_array_equal(choose_completion.window_bits(Man, convs, avail), [-1, -1, 3])


def test_evaluate_default_follows_the_policy(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(MOSI, folder)
    calibrate.write_table(folder / "manifest.toml", "completion",
                          {"default": "meanfill", "patterns": {"TA": "zero"}})
    model = OnnxModel(folder)
    convs = gdata.load_split(ROOT.parent / "shared" / "data" / "cmu-mosi" / "val", model.man.dims) \
        if (ROOT.parent / "shared" / "data" / "cmu-mosi" / "val").exists() else None
    if convs is None:
        pytest.skip("CMU-MOSI val not available")
    convs = convs[:3]
    got = scenario_outputs(model, convs, "default", 0, pattern="TA")["probs"]
    want = scenario_outputs(model, convs, "zero", 0, pattern="TA")["probs"]
    np.testing.assert_array_equal(got, want)
    got = scenario_outputs(model, convs, "default", 0, rate=0.5)["probs"]
    want = scenario_outputs(model, convs, "meanfill", 0, rate=0.5)["probs"]
    np.testing.assert_array_equal(got, want)


def test_mixture_fit_matches_the_single_sample_fit():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 3)).astype(np.float32) * 3
    y = np.array([rng.choice(3, p=np.exp(r / 2) / np.exp(r / 2).sum()) for r in logits])
    t1 = crossfit.fit_t(logits[:, None], y)
    assert t1 == pytest.approx(calibrate.fit_temperature(logits, y), abs=2e-3)
    assert t1 == pytest.approx(2.0, rel=0.25)
    # two identical samples are one sample
    assert crossfit.fit_t(np.repeat(logits[:, None], 2, 1), y) == t1


def _session_pool(temps: dict, n: int = 600) -> dict:
    """Logits whose labels are drawn at temperature temps[session] (one pattern, bits 3)."""
    rng = np.random.default_rng(1)
    cols = {k: [] for k in ("logits", "y", "session")}
    for s, t in temps.items():
        logits = rng.normal(size=(n, 4)) * 3
        p = np.exp(logits / t) / np.exp(logits / t).sum(-1, keepdims=True)
        cols["logits"].append(logits[:, None].astype(np.float32))
        cols["y"].append((p.cumsum(-1) > rng.random((n, 1))).argmax(-1))
        cols["session"].append(np.full(n, s))
    pool = {k: np.concatenate(v) for k, v in cols.items()}
    pool["bits"] = np.full(len(pool["y"]), 3)
    return pool


def test_median_rule_is_not_pulled_by_one_unusual_session():
    pool = _session_pool({1: 3.0, 2: 0.9, 3: 1.0, 4: 1.1})
    rows = pool["session"] != 4
    med = crossfit.fit_median(pool, rows)
    per = [crossfit.fit_patterns(pool, pool["session"] == s)[3] for s in (1, 2, 3)]
    assert med[3] == pytest.approx(sorted(per)[1], abs=1e-3)     # the middle session's fit
    assert med[3] == pytest.approx(1.0, rel=0.2)
    # the pooled NLL fit is pulled towards the unusual session's 3.0
    assert crossfit.fit_patterns(pool, rows)[3] > med[3] + 0.1
    assert set(med) == {-1, 3}


def test_calibration_rule_is_chosen_without_the_val_session():
    pool = _session_pool({1: 3.0, 2: 0.9, 3: 1.0, 4: 1.1})
    pool["rate"], pool["seed"] = np.zeros(len(pool["y"])), np.zeros(len(pool["y"]), np.int64)
    res = crossfit.report(pool, 4)
    assert res["rule"] == min(res["rule_scores"], key=res["rule_scores"].get)
    assert res["rule_scores"]["median"] != res["rule_scores"]["pooled"]
    # the val session's labels take no part in the choice
    scrambled = dict(pool, y=pool["y"].copy())
    v = scrambled["session"] == 4
    scrambled["y"][v] = np.random.default_rng(5).permutation(scrambled["y"][v])
    again = crossfit.report(scrambled, 4)
    assert again["rule"] == res["rule"] and again["rule_scores"] == res["rule_scores"]
    assert again["ece_val"]["cross-fitted"] != res["ece_val"]["cross-fitted"]


def test_folds_split_by_session(tmp_path):
    data = tmp_path / "data"
    for split, ids in (("train", ["Ses01F_a_F000", "Ses02F_b_F000", "Ses01F_a_M001"]),
                       ("val", ["Ses04F_c_F000"])):
        (data / split).mkdir(parents=True)
        rows = "\n".join(f"{u},{u[:-5]},{i},F,x,0,hap" for i, u in enumerate(ids))
        (data / split / "utterances.csv").write_text(
            "utt_id,conversation_id,position,speaker,speaker_id,label,label_name\n" + rows + "\n")
        np.arange(len(ids) * 2, dtype="<f4").tofile(data / split / "text.f32")
    assert folds.val_session(data) == 4
    out = folds.build_fold(data, 1, tmp_path / "fold1")
    assert folds.split_sessions(out / "train").tolist() == [2, 4]
    assert folds.split_sessions(out / "val").tolist() == [1, 1]
    np.testing.assert_array_equal(np.fromfile(out / "val" / "text.f32", "<f4"), [0, 1, 4, 5])
    np.testing.assert_array_equal(np.fromfile(out / "train" / "text.f32", "<f4"), [2, 3, 0, 1])
    with pytest.raises(ValueError):
        folds.session_of("Ses5")


def test_fold_training_command_is_the_manifests():
    args = folds.fold_args(ROOT / "models" / "gsdnet-iemocap6", ROOT / "x", ROOT / "y")
    assert args[-6:] == ["--data", str(ROOT / "x"), "--export", str(ROOT / "y"), "--threads", "1"]
    assert args.count("--data") == 1 and args.count("--export") == 1


def test_a_fold_model_of_another_recipe_is_retrained(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    cmd = "python3 -m gsdnet_torch.train --data D --seed 0 --members 5 --export E"
    (shipped / "manifest.toml").write_text(f'[training]\ncommand = "{cmd}"\n')
    export = tmp_path / "fold" / "model"
    export.mkdir(parents=True)
    runs = []
    monkeypatch.setattr(folds.subprocess, "run", lambda c, **kw: runs.append(c))
    args = folds.fold_args(shipped, tmp_path / "data", export)
    (export / "manifest.toml").write_text(
        '[training]\ncommand = "python3 -m gsdnet_torch.train ' + " ".join(args) + '"\n')
    folds.train_fold(shipped, tmp_path / "data", export, tmp_path / "log")
    assert runs == []                                   # trained by this very command: reused
    old = [a for a in args if a not in ("--members", "5")]
    (export / "manifest.toml").write_text(
        '[training]\ncommand = "python3 -m gsdnet_torch.train ' + " ".join(old) + '"\n')
    folds.train_fold(shipped, tmp_path / "data", export, tmp_path / "log")
    assert len(runs) == 1 and runs[0][-len(args):] == args    # an earlier recipe: retrained
