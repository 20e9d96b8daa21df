"""Missing-modality masks of the evaluation protocol (docs/DESIGN.md, "Missing masks").

Owns: the per-(utterance, modality) availability drawn from rng.py keys with GCNet's keep-one
rule generalised to M modalities, and the fixed patterns. Invariant: every utterance keeps at
least one modality. Columns are the model's modality slots (canonical T, A, V order restricted
to the modalities it has); M = 3 gives the original three-modality masks bit for bit.
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


def max_rate(m: int = 3) -> float:
    """Largest protocol missing rate with m modalities: 0.7 for three (GCNet), 0.5 for two."""
    if m < 2:
        raise ValueError(f"{m} modalities: masks need at least two")
    return 0.7 if m == 3 else round(np.ceil(10.0 * (m - 1) / m) / 10.0, 1)


def protocol_rates(m: int = 3) -> list:
    """0.0, 0.1, ... up to max_rate(m)."""
    return [round(0.1 * i, 1) for i in range(int(round(10 * max_rate(m))) + 1)]


def mask_for_rate(seed: int, rate: float, conv_id: str, n: int, m: int = 3) -> np.ndarray:
    """Availability [n, m] (bool) of conversation `conv_id` at missing rate `rate`: per
    utterance, uniforms at stride m + 1; keep = min(floor(m u0), m - 1) is always observed, each
    other modality with probability q = clamp(1 - m / (m - 1) * rate, 0, 1)."""
    if not 0.0 <= rate <= max_rate(m) + 1e-9:
        raise ValueError(f"missing rate {rate} outside [0, {max_rate(m)}]")
    key = rng.derive(seed, 1, rate_millis(rate), rng.fnv1a64(conv_id))
    u = rng.uniforms(key, (m + 1) * n).reshape(n, m + 1)
    keep = np.minimum(np.floor(m * u[:, 0]), m - 1).astype(np.int64)
    q = min(max(1.0 - m / (m - 1) * rate, 0.0), 1.0)
    avail = u[:, 1:] < q
    avail[np.arange(n), keep] = True
    return avail


def patterns_for(letters: str = "TAV") -> tuple:
    """Every pattern over a model's modality letters (canonical order), e.g. TA: T, A, TA."""
    return tuple(p for p in PATTERNS if set(p) <= set(letters))


def mask_for_pattern(pattern: str, n: int, letters: str = "TAV") -> np.ndarray:
    """Availability [n, len(letters)] with the same observed modalities on every utterance;
    columns follow `letters`, the model's modalities in canonical order."""
    bits = pattern_bits(pattern)
    if not set(pattern) <= set(letters):
        raise ValueError(f"pattern {pattern!r} uses a modality the model lacks ({letters})")
    row = np.array([(bits >> "TAV".index(ch)) & 1 for ch in letters], dtype=bool)
    return np.tile(row, (n, 1))


def scenario_id(rate=None, pattern=None) -> int:
    """`scenario` label of the sampler stream key: rate_millis or 1000 + pattern_bits."""
    if pattern is not None:
        return 1000 + pattern_bits(pattern)
    return rate_millis(rate)
