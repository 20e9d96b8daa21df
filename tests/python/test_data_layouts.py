"""Split loading for both layouts of the contract (gsdnet_ref.data): layout detection from the
header, modalities from the files present, speakers by first appearance, class names, windows
of W, and the shared IEMOCAP splits when ../shared/data/iemocap is present (skipped otherwise;
no IEMOCAP value is stored in the repository)."""
import csv

import numpy as np
import pytest
from conftest import ROOT

from gsdnet_ref import data as gdata

IEMOCAP = ROOT.parent / "shared" / "data" / "iemocap"
MOSI_VAL = ROOT.parent / "shared" / "data" / "cmu-mosi" / "val"


def write_split(folder, header, rows, dims):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "utterances.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    rs = np.random.default_rng(0)
    for m, d in dims.items():
        rs.normal(size=(len(rows), d)).astype("<f4").tofile(folder / f"{m}.f32")


def iemocap_like(tmp_path):
    header = ["utt_id", "conversation_id", "position", "speaker", "speaker_id", "label",
              "label_name"]
    rows = [["a_M0", "a", 0, "M", "S_M", 2, "neu"], ["a_F0", "a", 1, "F", "S_F", 0, "hap"],
            ["a_M1", "a", 2, "M", "S_M", 1, "sad"], ["b_F0", "b", 0, "F", "S_F", 1, "sad"],
            ["b_M0", "b", 1, "M", "S_M", 2, "neu"]]
    write_split(tmp_path / "iem", header, rows, {"text": 6, "audio": 4})
    return tmp_path / "iem"


def test_iemocap_layout(tmp_path):
    folder = iemocap_like(tmp_path)
    info = gdata.split_info(folder)
    assert info.layout == gdata.IEMOCAP and not info.has_regression
    assert info.dims == {"text": 6, "audio": 4} and info.classes == ("hap", "sad", "neu")
    convs = gdata.load_split(folder)
    assert [c.conv_id for c in convs] == ["a", "b"] and [c.n for c in convs] == [3, 2]
    assert convs[0].speaker.tolist() == [0, 1, 0]          # M first in "a": M -> 0
    assert convs[1].speaker.tolist() == [0, 1]             # F first in "b": F -> 0
    assert convs[0].label.tolist() == [2, 0, 1] and convs[0].label_cont is None
    assert set(convs[0].feats) == {"text", "audio"} and convs[0].feats["audio"].shape == (3, 4)
    only = gdata.load_split(folder, {"audio": 4, "text": 6})
    np.testing.assert_array_equal(only[1].feats["text"], convs[1].feats["text"])
    with pytest.raises(ValueError):
        gdata.load_split(folder, {"text": 5, "audio": 4})    # the model's size must fit


def test_mosi_layout_and_sha(tmp_path):
    header = ["utt_id", "video_id", "position", "label_cont", "label_bin", "transcript"]
    rows = [["v_1", "v", 0, "-1.5", 0, "x"], ["v_2", "v", 1, "2.0", 1, "y"]]
    folder = tmp_path / "mosi"
    write_split(folder, header, rows, {"text": 5, "audio": 3, "visual": 4})
    info = gdata.split_info(folder)
    assert info.layout == gdata.MOSI and info.has_regression
    assert info.classes == ("negative", "positive")
    assert list(info.dims) == ["text", "audio", "visual"]
    (c,) = gdata.load_split(folder)
    assert c.label.tolist() == [0, 1] and c.label_cont.tolist() == [-1.5, 2.0]
    assert c.speaker.tolist() == [0, 0]
    import hashlib
    h = hashlib.sha256()
    for name in ("utterances.csv", "text.f32", "audio.f32", "visual.f32"):
        h.update((folder / name).read_bytes())
    assert gdata.split_sha256(folder) == h.hexdigest()     # unchanged for CMU-MOSI


def test_unknown_layout_and_too_few_modalities(tmp_path):
    write_split(tmp_path / "x", ["utt_id", "foo"], [["a", 1]], {"text": 2, "audio": 2})
    with pytest.raises(ValueError, match="layout"):
        gdata.split_info(tmp_path / "x")
    folder = iemocap_like(tmp_path)
    (folder / "audio.f32").unlink()
    with pytest.raises(ValueError, match="at least two"):
        gdata.split_info(folder)


def test_windows_are_consecutive_chunks():
    assert gdata.window_slices(5, 64) == [slice(0, 5)]
    assert gdata.window_slices(130, 64) == [slice(0, 64), slice(64, 128), slice(128, 130)]
    assert gdata.window_slices(128, 64) == [slice(0, 64), slice(64, 128)]


@pytest.mark.skipif(not (IEMOCAP / "6way" / "val" / "utterances.csv").exists(),
                    reason="shared IEMOCAP data absent")
@pytest.mark.parametrize("way,split,convs,utts,k", [("6way", "train", 90, 4298, 6),
                                                     ("6way", "val", 30, 1512, 6),
                                                     ("4way", "train", 90, 3259, 4),
                                                     ("4way", "val", 30, 1031, 4)])
def test_shared_iemocap_splits(way, split, convs, utts, k):
    folder = IEMOCAP / way / split
    info = gdata.split_info(folder)
    assert info.layout == gdata.IEMOCAP and info.dims == {"text": 300, "audio": 47}
    assert len(info.classes) == k and info.classes[1:4] == ("sad", "neu", "ang")
    assert info.classes[0] == ("hap" if k == 6 else "hap+exc")
    cs = gdata.load_split(folder)
    assert len(cs) == convs and sum(c.n for c in cs) == utts
    with open(folder / "utterances.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    i = 0
    for c in cs:
        names = [r["speaker"] for r in rows[i:i + c.n]]
        assert c.speaker[0] == 0 and set(c.speaker.tolist()) <= {0, 1}
        assert all((s == names[0]) == (j == 0) for s, j in zip(names, c.speaker))
        assert c.label.tolist() == [int(r["label"]) for r in rows[i:i + c.n]]
        i += c.n
    if way == "6way":                     # long conversations exist: they run as windows
        assert max(c.n for c in cs) > 64


@pytest.mark.skipif(not (MOSI_VAL / "utterances.csv").exists(), reason="shared CMU-MOSI absent")
def test_shared_mosi_val_unchanged():
    cs = gdata.load_split(MOSI_VAL)
    assert len(cs) == 10 and sum(c.n for c in cs) == 191
    assert all(c.speaker.max() == 0 and c.label_cont is not None for c in cs)
