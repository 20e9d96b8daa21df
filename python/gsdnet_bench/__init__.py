"""Benchmarks of the runtime against the Python references: `python -m gsdnet_bench.reference`
(docs/results/bench-report.md: Rust vs the onnxruntime and PyTorch pipelines, plus the daemon's memory and
throughput; `report` renders it) and `python -m gsdnet_bench.daemon` (the daemon alone)."""
