"""gsdnet_bench.report renders the result dict that gsdnet_bench.reference measures into
docs/results/bench-report.md. The fixture is the dict of one real `--quick` run
(tests/python/data/bench_reference_quick.json: timings of the CMU-MOSI model, no data); the
tests change its numbers and check that the report follows them."""
import copy
import json

from conftest import ROOT
from gsdnet_bench.report import fmt_ratio, load_note, report

RES = json.loads((ROOT / "tests/python/data/bench_reference_quick.json").read_text())
SECTIONS = [
    "# Benchmarks: Rust pipeline vs the Python references",
    "## Whole window, p50 / p99 in ms",
    "## FLOPs and achieved GFLOP/s (p50)",
    "## PyTorch eager reference: padded to W vs at the bucket",
    "## Buckets vs padding to W (Rust, same process, same inputs)",
    "## Batching windows of different conversations (Rust `--batch`)",
    "## Rust per stage, p50 / p99 in ms; allocations; memory",
    "## Issue 13 targets (single core)",
    "### Where the allocations come from",
]


def test_every_section_is_rendered_in_order():
    text = report(RES)
    heads = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert heads == SECTIONS


def _bucket_speedup_line(res: dict, backend: str) -> str:
    return next(ln for ln in report(res).splitlines()
                if ln.startswith(f"- {backend}, window 32 (bucket 32) vs padded to W"))


def test_the_bucket_target_follows_the_measured_speedup():
    res = copy.deepcopy(RES)
    x = next(s for s in res["rust"]["speedups"] if s["backend"] == "tract")
    x["speedup"] = 2.0
    assert _bucket_speedup_line(res, "tract").endswith("2.00x faster (target 1.6x): met.")
    x["speedup"] = 1.2
    line = _bucket_speedup_line(res, "tract")
    assert "1.20x faster (target 1.6x): **missed**." in line
    assert "Where the time goes, bucketed:" in line   # a miss says where the time went


def test_the_load_note_says_whether_the_machine_was_idle():
    res = dict(RES, load_before="0.10, 0.20, 0.30", load_after="0.40, 0.20, 0.30")
    assert load_note(res).startswith("The machine was otherwise idle")
    res["load_before"] = "1.50, 1.00, 0.80"
    assert "**These numbers came from a loaded, shared machine**" in load_note(res)
    assert "loaded, shared machine" in report(res)


def test_ratios_read_as_faster_or_slower():
    assert fmt_ratio(0.5) == "0.50 (2.0x faster)"
    assert fmt_ratio(2.0) == "2.00 (2.0x slower)"
