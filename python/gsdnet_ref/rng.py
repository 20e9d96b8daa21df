"""Counter-based random numbers shared bit-for-bit with the Rust runtime (`src/rng.rs`).

Every random draw of evaluation (missing masks, sampler noise) goes through this module so that
Python and Rust see the same masks and the same noise for the same seed. The generator is
SplitMix64's output function applied to a counter: value j of stream `key` is
mix64(key + (j + 1) * GAMMA) (wrapping u64 arithmetic). See docs/DESIGN.md, "Random numbers".
"""
from __future__ import annotations

import numpy as np

GAMMA = 0x9E3779B97F4A7C15
SEED_SALT = 0x6A09E667F3BCC909
_M64 = (1 << 64) - 1


def mix64(z: int) -> int:
    """SplitMix64 finaliser on a Python int (wrapping u64)."""
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _mix64_np(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def derive(seed: int, *labels: int) -> int:
    """Stream key for `seed` and a path of integer labels.

    k = mix64(seed ^ SEED_SALT); for each label l: k = mix64((k + GAMMA) ^ l).
    """
    k = mix64((seed & _M64) ^ SEED_SALT)
    for lab in labels:
        k = mix64(((k + GAMMA) & _M64) ^ (lab & _M64))
    return k


def fnv1a64(text: str) -> int:
    """FNV-1a 64-bit hash of the UTF-8 bytes of `text` (conversation ids in stream keys)."""
    h = 0xCBF29CE484222325
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & _M64
    return h


def raw_u64(key: int, n: int) -> np.ndarray:
    """Values 0..n of stream `key`: mix64(key + (j + 1) * GAMMA)."""
    j = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(key & _M64) + j * np.uint64(GAMMA)
    return _mix64_np(z)


def uniforms(key: int, n: int) -> np.ndarray:
    """n uniforms in the open interval (0, 1), float64: ((x >> 11) + 0.5) * 2^-53."""
    x = raw_u64(key, n)
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def normals(key: int, n: int) -> np.ndarray:
    """n standard normals (float64) by Box-Muller on consecutive uniform pairs.

    Pair p uses u1 = U[2p], u2 = U[2p+1]: z[2p] = r cos(2 pi u2), z[2p+1] = r sin(2 pi u2),
    r = sqrt(-2 ln u1). An odd n drops the last sine.
    """
    m = (n + 1) // 2
    u = uniforms(key, 2 * m)
    u1, u2 = u[0::2], u[1::2]
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.empty(2 * m, dtype=np.float64)
    z[0::2] = r * np.cos(2.0 * np.pi * u2)
    z[1::2] = r * np.sin(2.0 * np.pi * u2)
    return z[:n]


def normals_f32(key: int, shape) -> np.ndarray:
    """Normals cast to float32 in row-major order of `shape`."""
    n = int(np.prod(shape))
    return normals(key, n).astype(np.float32).reshape(shape)
