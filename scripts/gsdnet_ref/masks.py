"""Missing-modality masks of the evaluation protocol (docs/DESIGN.md, "Missing masks").

Owns: the per-(utterance, modality) availability drawn from rng.py keys with GCNet's keep-one
rule, and the fixed patterns. Invariant: every utterance keeps at least one modality.
"""
from __future__ import annotations

import numpy as np

from . import rng

PATTERNS = ("T", "A", "V", "TA", "TV", "AV", "TAV")
_BITS = {"T": 1, "A": 2, "V": 4}


def rate_millis(rate: float) -> int:
    return int(round(1000.0 * rate))


def pattern_bits(pattern: str) -> int:
    if not pattern or any(ch not in _BITS for ch in pattern) or len(set(pattern)) != len(pattern):
        raise ValueError(f"bad pattern {pattern!r}: use letters T, A, V")
    return sum(_BITS[ch] for ch in pattern)


def mask_for_rate(seed: int, rate: float, conv_id: str, n: int) -> np.ndarray:
    """Availability [n, 3] (bool) of conversation `conv_id` at missing rate `rate`."""
    if not 0.0 <= rate <= 0.7 + 1e-9:
        raise ValueError(f"missing rate {rate} outside [0, 0.7]")
    key = rng.derive(seed, 1, rate_millis(rate), rng.fnv1a64(conv_id))
    u = rng.uniforms(key, 4 * n).reshape(n, 4)
    keep = np.minimum(np.floor(3.0 * u[:, 0]), 2).astype(np.int64)
    q = min(max(1.0 - 1.5 * rate, 0.0), 1.0)
    avail = u[:, 1:] < q
    avail[np.arange(n), keep] = True
    return avail


def mask_for_pattern(pattern: str, n: int) -> np.ndarray:
    """Availability [n, 3] with the same observed modalities on every utterance."""
    bits = pattern_bits(pattern)
    row = np.array([(bits >> m) & 1 for m in range(3)], dtype=bool)
    return np.tile(row, (n, 1))


def scenario_id(rate=None, pattern=None) -> int:
    """`scenario` label of the sampler stream key: rate_millis or 1000 + pattern_bits."""
    if pattern is not None:
        return 1000 + pattern_bits(pattern)
    return rate_millis(rate)
