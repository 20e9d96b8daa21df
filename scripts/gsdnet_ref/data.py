"""Loading of the shared CMU-MOSI split layout and feature standardisation.

Owns: reading `utterances.csv` + `{text,audio,visual}.f32` of a split folder into per-video
conversations (rows in spoken order), the sha256 of a split, and the standardisation rule of
docs/DESIGN.md "Conventions": z = 0 in a column constant in training (std < STD_CONSTANT), else
`(x - mean) / std` clipped to [-Z_CLIP, Z_CLIP], then multiplied by the availability; the
inverse gives the training mean in a constant column. src/manifest.rs implements the same rule.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MODALITIES = ("text", "audio", "visual")
DIMS = {"text": 100, "audio": 73, "visual": 100}
STD_CONSTANT = 1e-6   # training std below this: the column was constant in training
Z_CLIP = 40.0         # > sqrt(1447 - 1) = 38.03, the largest |z| a 1447-row training set allows


@dataclass
class Conversation:
    """One video: N utterances in spoken order; feats[m] is [N, dim_m] raw float32."""

    conv_id: str
    utt_ids: list
    feats: dict
    label_cont: np.ndarray
    label_bin: np.ndarray
    speaker: np.ndarray = field(default=None)

    @property
    def n(self) -> int:
        return len(self.utt_ids)

    def __post_init__(self):
        if self.speaker is None:
            self.speaker = np.zeros(self.n, dtype=np.int64)


def _read_matrix(path: Path, rows: int, dim: int) -> np.ndarray:
    arr = np.fromfile(path, dtype="<f4")
    if arr.size != rows * dim:
        raise ValueError(f"{path}: {arr.size} values, expected {rows} x {dim}")
    arr = arr.reshape(rows, dim)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: non-finite values")
    return arr


def load_split(folder) -> list:
    """All conversations of a split folder, in file order."""
    folder = Path(folder)
    with open(folder / "utterances.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    mats = {m: _read_matrix(folder / f"{m}.f32", len(rows), DIMS[m]) for m in MODALITIES}
    convs, start = [], 0
    while start < len(rows):
        vid = rows[start]["video_id"]
        end = start
        while end < len(rows) and rows[end]["video_id"] == vid:
            end += 1
        sl = slice(start, end)
        convs.append(Conversation(
            conv_id=vid,
            utt_ids=[r["utt_id"] for r in rows[sl]],
            feats={m: mats[m][sl] for m in MODALITIES},
            label_cont=np.array([float(r["label_cont"]) for r in rows[sl]], dtype=np.float32),
            label_bin=np.array([int(r["label_bin"]) for r in rows[sl]], dtype=np.int64),
        ))
        start = end
    return convs


def split_sha256(folder) -> str:
    """sha256 over the split's files (utterances.csv, text, audio, visual in that order)."""
    h = hashlib.sha256()
    for name in ("utterances.csv", "text.f32", "audio.f32", "visual.f32"):
        h.update((Path(folder) / name).read_bytes())
    return h.hexdigest()


def feature_stats(convs) -> dict:
    """Per-feature training mean and std (population) for each modality, float32."""
    out = {}
    for m in MODALITIES:
        x = np.concatenate([c.feats[m] for c in convs]).astype(np.float64)
        out[m] = (x.mean(0).astype(np.float32), x.std(0).astype(np.float32))
    return out


def standardise_values(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """z of finite raw values [..., dim] (float32): 0 in constant columns, else clipped; always
    finite (an overflow to +-inf clips to the bound)."""
    const = std < STD_CONSTANT
    with np.errstate(over="ignore"):
        z = (raw.astype(np.float32) - mean) / np.where(const, np.float32(1), std)
    return np.where(const, np.float32(0), np.clip(z, -Z_CLIP, Z_CLIP)).astype(np.float32)


def destandardise(z: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Raw values of z [..., dim] (float32): the training mean in constant columns."""
    x = z.astype(np.float32) * std + mean
    return np.where(std < STD_CONSTANT, mean, x).astype(np.float32)


def standardise(raw: np.ndarray, mean: np.ndarray, std: np.ndarray, avail_m: np.ndarray,
                width: int) -> np.ndarray:
    """[N, dim] raw -> [W, dim] standardised, missing rows 0, padded rows 0 (float32)."""
    n, dim = raw.shape
    if n > width:
        raise ValueError(f"{n} utterances exceed the window {width}")
    out = np.zeros((width, dim), dtype=np.float32)
    out[:n] = standardise_values(raw, mean, std) * avail_m[:n, None].astype(np.float32)
    return out


def zero_fill(raw: np.ndarray, mean: np.ndarray, std: np.ndarray, avail_m: np.ndarray,
              width: int) -> np.ndarray:
    """Like `standardise` but missing rows hold the encoding of raw zeros."""
    n, _ = raw.shape
    out = standardise(raw, mean, std, avail_m, width)
    miss = ~avail_m[:n].astype(bool)
    out[:n][miss] = standardise_values(np.zeros_like(mean), mean, std)
    return out
