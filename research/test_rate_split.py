"""research/rate_split.py: the availability groups and their accuracies against a hand-made
case, and (where ../shared/data/iemocap is present) a rerun of the shipped 4-way model that
reproduces research/results/rate_split_iemocap4.json for mask seed 0."""
import json
from pathlib import Path

import numpy as np
import pytest

import rate_split as rs

ROOT = Path(__file__).resolve().parents[1]
VAL4 = ROOT.parent / "shared" / "data" / "iemocap" / "4way" / "val"
MODEL4 = ROOT / "models" / "gsdnet-iemocap4"
RESULT4 = ROOT / "research" / "results" / "rate_split_iemocap4.json"


def test_groups_and_accuracies_by_hand():
    # five utterances: both, T only, A only, T only, both
    avail = np.array([[1, 1], [1, 0], [0, 1], [1, 0], [1, 1]], bool)
    label = np.array([0, 1, 2, 1, 3])
    pred = np.array([0, 1, 0, 2, 1])       # right, right, wrong, wrong, wrong
    full = np.array([0, 1, 2, 1, 1])       # wrong only on the last
    rows = {r["group"]: r for r in rs.split_rows(pred, full, label, avail, "TA")}
    assert set(rows) == {"TA", "T only", "A only"}
    assert rows["TA"] == dict(group="TA", n=2, accuracy=0.5, accuracy_full_view=0.5)
    assert rows["T only"] == dict(group="T only", n=2, accuracy=0.5, accuracy_full_view=1.0)
    assert rows["A only"] == dict(group="A only", n=1, accuracy=0.0, accuracy_full_view=1.0)
    assert rs.group_name([True, False, True], "TAV") == "TV only"


@pytest.mark.skipif(not (VAL4 / "utterances.csv").exists(), reason="shared 4-way val absent")
def test_reproduces_the_committed_4way_split():
    got = rs.run(MODEL4, VAL4, seeds=(0,))
    want = json.loads(RESULT4.read_text())
    want_rows = [r for r in want["rows"] if r["mask_seed"] == 0]
    assert [r["rate"] for r in got["rows"]] == [r["rate"] for r in want_rows]
    for g, w in zip(got["rows"], want_rows):
        assert sum(x["n"] for x in g["groups"]) == 1031
        assert g["f1_weighted"] == pytest.approx(w["f1_weighted"], abs=1e-9)
        for x, y in zip(g["groups"], w["groups"], strict=True):
            assert x == pytest.approx(y)
    rate0 = got["rows"][0]["groups"]
    assert [x["group"] for x in rate0] == ["TA"]
    assert rate0[0]["accuracy"] == rate0[0]["accuracy_full_view"]
