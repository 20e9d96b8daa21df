"""Segments files and the energy endpointer of the sensor program (no openSMILE needed)."""

import json

import numpy as np
import pytest

from gsdnet_sensor.endpoint import Endpointer
from gsdnet_sensor.segments import SegmentsError, load_segments, parse_rows, write_segments


def test_csv_and_json_round_trip(tmp_path):
    rows = [{"start_s": 2.0, "end_s": 3.5, "speaker": "B", "transcript": "fine, thanks"},
            {"start_s": 0.5, "end_s": 1.8, "speaker": "A", "transcript": ""}]
    segs = parse_rows(rows)
    assert [s.start_s for s in segs] == [0.5, 2.0]  # sorted by start
    assert [(s.speaker_name, s.speaker) for s in segs] == [("A", 1), ("B", 0)]  # index by first appearance
    assert segs[0].transcript is None and segs[1].transcript == "fine, thanks"
    for name in ("s.csv", "s.json"):
        write_segments(tmp_path / name, segs)
        back = load_segments(tmp_path / name)
        assert [(s.start_s, s.end_s, s.speaker_name, s.transcript) for s in back] == \
               [(s.start_s, s.end_s, s.speaker_name, s.transcript) for s in segs]


@pytest.mark.parametrize("text,match", [
    ("start_s,end_s\n0,1\n", "header lacks"),
    ("start_s,end_s,speaker\n1,0.5,A\n", "row 1"),
    ("start_s,end_s,speaker\n0,x,A\n", "row 1"),
    ("start_s,end_s,speaker\n0,1,A\n0,nan,B\n", "row 2"),
    ("start_s,end_s,speaker\n0,1,\n", "empty speaker"),
    ("start_s,end_s,speaker\n", "no segments"),
])
def test_bad_csv_names_the_row(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(SegmentsError, match=match):
        load_segments(p)


def test_bad_json(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"segments": "nope"}))
    with pytest.raises(SegmentsError):
        load_segments(p)
    p.write_text("{")
    with pytest.raises(SegmentsError):
        load_segments(p)


def bursts(spans, rate=16000, total_s=6.0, seed=0):
    rng = np.random.default_rng(seed)
    x = 10 ** (-65 / 20) * rng.standard_normal(int(total_s * rate))
    for a, b in spans:
        n = int((b - a) * rate)
        x[int(a * rate):int(a * rate) + n] += 0.2 * np.sin(2 * np.pi * 180 * np.arange(n) / rate)
    return x.astype(np.float32)


def run_endpointer(x, block=1600):
    ep, out = Endpointer(), []
    for i in range(0, x.size, block):
        out += ep.feed(x[i:i + block])
    return [(a / 16000, b / 16000) for a, b in out + ep.flush()]


def test_endpointer_finds_bursts_over_a_noise_floor():
    spans = [(0.5, 1.7), (2.5, 3.2), (4.0, 5.9)]
    got = run_endpointer(bursts(spans))
    assert len(got) == 3
    for (a, b), (ga, gb) in zip(spans, got):
        assert abs(ga - a) <= 0.15 and abs(gb - b) <= 0.15


def test_endpointer_ignores_clicks_and_is_block_size_independent():
    x = bursts([(1.0, 1.06), (2.0, 3.0)])  # a 60 ms click, then speech
    assert len(run_endpointer(x, 1600)) == 1
    assert run_endpointer(x, 1600) == run_endpointer(x, 333)


def test_endpointer_cuts_long_speech():
    # 35 s of syllables (300 ms voiced, 100 ms pause: within the hangover) is cut at 15 s
    syllables = [(0.2 + 0.4 * k, 0.5 + 0.4 * k) for k in range(87)]
    got = run_endpointer(bursts(syllables, total_s=36.0))
    assert len(got) == 3 and all(b - a <= 15.0 + 1e-9 for a, b in got)
