"""Is there information about a missing modality's latent in the observed one? (issue 23 item 1)

A ridge regression from the observed modality's latent (own utterance, and the window mean of
that modality) to the other modality's latent, fitted on train/ latents (the model's encoders
on complete inputs) and scored on val/: mean ||x0 - h_true||^2 / d over val utterances, next to
mean fill (the encoding of the training mean) and the best constant (the train mean latent).
If the regression is not clearly below mean fill, no completion (sampled, averaged or
deterministic) can carry much about the missing modality, whatever the score networks learn.
    python3 research/completion_probe.py MODEL_DIR DATA_DIR --json OUT
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gsdnet_ref import data as gdata
from gsdnet_ref.pipeline import OnnxModel, prepare_inputs


def latents(model, convs):
    """Per utterance: true latents [n, M, d] and mean-fill latents [n, M, d]."""
    man = model.man
    true, fill = [], []
    for c in convs:
        for sl in gdata.window_slices(c.n, man.width):
            feats = {m: c.feats[m][sl] for m in man.modalities}
            n = sl.stop - sl.start
            for av, out in ((np.ones((n, man.m), bool), true), (np.zeros((n, man.m), bool), fill)):
                xs = prepare_inputs(man, feats, av, "meanfill")
                h = model.run("encoders", **{m: np.asarray(xs[m], np.float32)[None]
                                             for m in man.modalities})["h"][0]
                out.append(np.transpose(h[:, :n], (1, 0, 2)))
    return np.concatenate(true), np.concatenate(fill)


def windows_mean(model, convs, h):
    """Per utterance: the mean latent of its window (per modality)."""
    out, start = [], 0
    for c in convs:
        for sl in gdata.window_slices(c.n, model.man.width):
            n = sl.stop - sl.start
            out.append(np.repeat(h[start:start + n].mean(0, keepdims=True), n, 0))
            start += n
    return np.concatenate(out)


def ridge(x, y, lam=1.0):
    x1 = np.hstack([x, np.ones((len(x), 1))])
    return np.linalg.solve(x1.T @ x1 + lam * np.eye(x1.shape[1]), x1.T @ y)


def apply(w, x):
    return np.hstack([x, np.ones((len(x), 1))]) @ w


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir")
    p.add_argument("data_dir")
    p.add_argument("--json", required=True)
    a = p.parse_args(argv)
    model = OnnxModel(a.model_dir)
    man = model.man
    files = getattr(man, "files", None)
    tr = gdata.load_split(Path(a.data_dir) / "train", man.dims, files)
    va = gdata.load_split(Path(a.data_dir) / "val", man.dims, files)
    htr, _ = latents(model, tr)
    hva, fva = latents(model, va)
    mtr, mva = windows_mean(model, tr, htr), windows_mean(model, va, hva)
    d = man.d
    out = dict(model=man.raw["model"]["name"], rows=[])
    for miss in range(man.m):
        obs = [m for m in range(man.m) if m != miss]
        res = {"missing": man.modalities[miss]}
        res["meanfill"] = float(((fva[:, miss] - hva[:, miss]) ** 2).sum(-1).mean() / d)
        res["train_mean"] = float(((htr[:, miss].mean(0) - hva[:, miss]) ** 2).sum(-1).mean() / d)
        for name, feats in (("ridge_own", lambda h, mh: h[:, obs].reshape(len(h), -1)),
                            ("ridge_own_window", lambda h, mh: np.hstack(
                                [h[:, obs].reshape(len(h), -1), mh[:, obs].reshape(len(h), -1)]))):
            w = ridge(feats(htr, mtr), htr[:, miss])
            pred = apply(w, feats(hva, mva))
            res[name] = float(((pred - hva[:, miss]) ** 2).sum(-1).mean() / d)
        out["rows"].append(res)
        print(res)
    Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
