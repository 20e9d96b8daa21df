"""Where a model loses at the higher missing rates (issue 20, the 4-way target at rates 0.4-0.5).

For every protocol rate and mask seed, the utterances of a split are grouped by what the mask
left them (both modalities, one only); per group: how many, the accuracy, and the accuracy the
same utterances have with every modality (rate 0.0, the full view), so the loss of each group is
its own. Also the weighted F1 of each mask seed, which shows how far the mask alone moves a
rate's score. Same masks, completion and windows as `gsdnet_ref.evaluate` (the manifest's
default completion unless --completion).
    python3 research/rate_split.py models/gsdnet-iemocap4 ../shared/data/iemocap/4way/val \
        --json research/results/rate_split_iemocap4.json
The JSON holds metrics only (no utterance id, label or prediction).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gsdnet_ref import data as gdata
from gsdnet_ref import masks as gmasks
from gsdnet_ref import metrics as gmetrics
from gsdnet_ref.evaluate import DEFAULT, scenario_outputs
from gsdnet_ref.pipeline import OnnxModel


def group_name(avail_row, letters) -> str:
    """'TA', 'T only', 'A only' (the available modalities' letters) of one utterance."""
    have = "".join(ch for ch, a in zip(letters, avail_row) if a)
    return have if len(have) == len(letters) else f"{have} only"


def split_rows(pred, full_pred, label, avail, letters) -> list:
    """Per availability group (sorted by name): n, accuracy, and the full view's accuracy on
    the same utterances."""
    names = np.array([group_name(a, letters) for a in np.asarray(avail, bool)])
    rows = []
    for g in sorted(set(names)):
        sel = names == g
        rows.append(dict(group=g, n=int(sel.sum()),
                         accuracy=float(np.mean(pred[sel] == label[sel])),
                         accuracy_full_view=float(np.mean(full_pred[sel] == label[sel]))))
    return rows


def run(model_dir, split_dir, seeds=(0, 1, 2), completion=DEFAULT) -> dict:
    model = OnnxModel(model_dir)
    man = model.man
    convs = gdata.load_split(split_dir, man.dims, man.files)
    k = len(man.classes)
    outs = {(rate, s): scenario_outputs(model, convs, completion, s, rate=rate)
            for rate in gmasks.protocol_rates(man.m) for s in seeds}
    # the protocol's first rate is 0.0: every modality, whatever the mask seed
    full_pred = outs[(0.0, seeds[0])]["probs"].argmax(-1)
    out = []
    for (rate, s), o in outs.items():
        pred = o["probs"].argmax(-1)
        wf1 = gmetrics.classification(pred, o["label"], k)["f1_weighted"]
        out.append(dict(rate=rate, mask_seed=s, f1_weighted=float(wf1),
                        groups=split_rows(pred, full_pred, o["label"], o["avail"], man.letters)))
    return dict(model=man.raw["model"]["name"], split=Path(split_dir).name,
                completion=completion, seeds=list(seeds), rows=out)


def print_table(res: dict) -> None:
    print(f"{res['model']} on {res['split']}, completion {res['completion']}")
    for r in res["rows"]:
        groups = "  ".join(f"{g['group']} n {g['n']} acc {g['accuracy']:.3f} "
                           f"(full view {g['accuracy_full_view']:.3f})" for g in r["groups"])
        print(f"rate {r['rate']:.1f} seed {r['mask_seed']}: wF1 {r['f1_weighted']:.4f}  {groups}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("split")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--completion", default=DEFAULT)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    res = run(a.model, a.split, tuple(a.seeds), a.completion)
    print_table(res)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
