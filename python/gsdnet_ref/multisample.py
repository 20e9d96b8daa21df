"""Multi-sample completion (docs/DESIGN.md "Multi-sample completion"), the twin of
src/multisample.rs and the sample selection of src/diffusion/noise.rs.

Owns: the stream key of completion sample s (`sample_key`), S from the manifest (`[sde]
samples`, absent = 1, valid 1..=64) and `run_window_samples`, which runs `pipeline.run_window`
once per sample and averages the published probabilities (after the calibration temperature)
and the regression: p = f32(sum_s f64(p_s) / S), summed in sample order 0..S-1; the label is the
first argmax of the mean. Only `gsdnet` on a window with something missing draws noise; every
other case is deterministic and is run once (S has no effect). The S samples run one after
another through the ONNX parts' batch-1 calls, like the runtime.
"""
from __future__ import annotations

import numpy as np

from . import rng
from .pipeline import run_window

MAX_SAMPLES = 64
SAMPLE_LABEL = 64   # K_s = derive(K, 64, s) for s > 0; distinct from the draw labels 1, 2, 16, 32


def sample_key(key: int, s: int) -> int:
    """Stream key of sample s under window key K: K itself for s = 0, derive(K, 64, s) else."""
    return key if s == 0 else rng.derive(key, SAMPLE_LABEL, s)


def check_samples(s) -> int:
    if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MAX_SAMPLES:
        raise ValueError(f"[sde] samples must be an integer in 1..={MAX_SAMPLES}, got {s!r}")
    return s


def manifest_samples(man) -> int:
    """`[sde] samples` of a loaded manifest (absent = 1)."""
    return check_samples(man.raw["sde"].get("samples", 1))


def mean_f64(values) -> np.ndarray:
    """f32(sum_s f64(v_s) / S), summed in list order."""
    acc = np.zeros(np.shape(values[0]), np.float64)
    for v in values:
        acc += np.asarray(v, np.float64)
    return (acc / len(values)).astype(np.float32)


def run_window_samples(model, feats: dict, avail_n: np.ndarray, speaker: np.ndarray,
                       completion: str, noise_key: int, samples: int = 1,
                       rec: dict | None = None) -> dict:
    """`run_window` with S completion samples: probs [N, K] and reg [N] the sample means,
    `logits_samples` [S, N, K] every sample's logits (`logits`: sample 0's); reg None without a
    regression head. `rec` records sample 0, which is exactly the single-sample run."""
    check_samples(samples)
    if completion != "gsdnet" or samples == 1 or np.all(avail_n):
        out = run_window(model, feats, avail_n, speaker, completion, noise_key=noise_key, rec=rec)
        return dict(out, logits_samples=np.repeat(out["logits"][None], samples, 0))
    outs = [run_window(model, feats, avail_n, speaker, completion,
                       noise_key=sample_key(noise_key, s), rec=rec if s == 0 else None)
            for s in range(samples)]
    return dict(logits=outs[0]["logits"], probs=mean_f64([o["probs"] for o in outs]),
                reg=None if outs[0]["reg"] is None else mean_f64([o["reg"] for o in outs]),
                logits_samples=np.stack([o["logits"] for o in outs]))
