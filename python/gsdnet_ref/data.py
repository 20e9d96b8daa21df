"""Loading of the shared split layouts and feature standardisation.

Owns: reading a split folder into conversations (rows in spoken order) for both layouts of
the contract (docs/DESIGN.md "Data layouts"), detected from `utterances.csv`'s header:
- CMU-MOSI: `utt_id,video_id,...,label_cont,label_bin`; conversation = video_id, speaker 0 for
  all, label = label_bin (classes negative / positive), continuous target = label_cont;
- IEMOCAP: `utt_id,conversation_id,position,speaker,speaker_id,label,label_name`; conversation
  = conversation_id, speaker = index of first appearance within the conversation, label = the
  int label (class names from label_name), no continuous target.
Modalities are the `{text,audio,visual}.f32` files present (size = file size / rows / 4), or
those of a model (names and sizes from its manifest); a view reads another file for a modality
(`files`, e.g. {"text": "text_minilm.f32"}: a model's `[training] feature_files`). Also the
sha256 of a split, the split of long conversations into consecutive windows of W, and the
standardisation rule of docs/DESIGN.md "Conventions": z = 0 in a column constant in training
(std < STD_CONSTANT), else `(x - mean) / std` clipped to [-Z_CLIP, Z_CLIP], then multiplied by
the availability; the inverse gives the training mean in a constant column. src/manifest.rs
implements the same rule.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MODALITIES = ("text", "audio", "visual")   # canonical order; slot order of every model
LETTERS = {"text": "T", "audio": "A", "visual": "V"}
MOSI, IEMOCAP = "cmu-mosi", "iemocap"
MOSI_CLASSES = ("negative", "positive")
STD_CONSTANT = 1e-6   # training std below this: the column was constant in training
Z_CLIP = 40.0         # > sqrt(1447 - 1) = 38.03, the largest |z| a 1447-row training set allows


@dataclass
class Conversation:
    """One conversation: N utterances in spoken order; feats[m] is [N, dim_m] raw float32 for
    the split's (or model's) modalities; label [N] class indices; label_cont [N] continuous
    targets or None; speaker [N] speaker indices (0 when the layout has none)."""

    conv_id: str
    utt_ids: list
    feats: dict
    label_cont: np.ndarray | None
    label: np.ndarray
    speaker: np.ndarray = field(default=None)

    @property
    def n(self) -> int:
        return len(self.utt_ids)

    def __post_init__(self):
        if self.speaker is None:
            self.speaker = np.zeros(self.n, dtype=np.int64)

    def part(self, sl: slice) -> "Conversation":
        """The utterances `sl` (same conv_id: a window of this conversation)."""
        return Conversation(self.conv_id, self.utt_ids[sl],
                            {m: v[sl] for m, v in self.feats.items()},
                            None if self.label_cont is None else self.label_cont[sl],
                            self.label[sl], self.speaker[sl])


@dataclass
class SplitInfo:
    """What a split folder holds: layout, modality sizes (canonical order), class names."""

    layout: str
    dims: dict
    classes: tuple
    rows: int

    @property
    def has_regression(self) -> bool:
        return self.layout == MOSI


def window_slices(n: int, width: int) -> list:
    """Consecutive windows of at most `width` utterances; window index = position in the list
    (src/eval.rs `utts.chunks(W)`)."""
    return [slice(s, min(s + width, n)) for s in range(0, n, width)]


def _read_rows(folder: Path) -> tuple:
    with open(folder / "utterances.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames or []
    return detect_layout(header), rows


def detect_layout(header) -> str:
    h = set(header)
    if {"utt_id", "video_id", "label_cont", "label_bin"} <= h:
        return MOSI
    if {"utt_id", "conversation_id", "speaker", "label", "label_name"} <= h:
        return IEMOCAP
    raise ValueError(f"utterances.csv: unknown layout (columns {list(header)})")


def feature_file(m: str, files: dict | None = None) -> str:
    """The file holding modality `m` in a split folder: `files[m]` when given, else `m.f32`."""
    return (files or {}).get(m, f"{m}.f32")


def view_files(text_view: str | None) -> dict:
    """The files of a text view: None = `text.f32`; NAME = `text_NAME.f32` (minilm, spacy)."""
    return {"text": f"text_{text_view}.f32"} if text_view else {}


def present_dims(folder, rows: int, files: dict | None = None) -> dict:
    """Sizes of the modality files present, canonical order: file size / rows / 4."""
    out = {}
    for m in MODALITIES:
        p = Path(folder) / feature_file(m, files)
        if p.exists():
            size = p.stat().st_size
            if rows == 0 or size % (4 * rows):
                raise ValueError(f"{p}: {size} bytes is not {rows} rows of float32")
            out[m] = size // (4 * rows)
    if len(out) < 2:
        raise ValueError(f"{folder}: {len(out)} modality files, a model needs at least two")
    return out


def _classes(layout: str, rows: list) -> tuple:
    if layout == MOSI:
        return MOSI_CLASSES
    names = {}
    for r in rows:
        lab, name = int(r["label"]), r["label_name"]
        if names.setdefault(lab, name) != name:
            raise ValueError(f"label {lab} named both {names[lab]!r} and {name!r}")
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"labels {sorted(names)} are not 0..K-1")
    return tuple(names[i] for i in range(len(names)))


def split_info(folder, files: dict | None = None) -> SplitInfo:
    layout, rows = _read_rows(Path(folder))
    return SplitInfo(layout, present_dims(folder, len(rows), files), _classes(layout, rows),
                     len(rows))


def _read_matrix(path: Path, rows: int, dim: int) -> np.ndarray:
    arr = np.fromfile(path, dtype="<f4")
    if arr.size != rows * dim:
        raise ValueError(f"{path}: {arr.size} values, expected {rows} x {dim}")
    arr = arr.reshape(rows, dim)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: non-finite values")
    return arr


def _speakers(names: list) -> np.ndarray:
    """Index of each speaker's first appearance in the conversation (F/M -> 0/1 in order)."""
    first = {}
    return np.array([first.setdefault(s, len(first)) for s in names], dtype=np.int64)


def _conversation(layout: str, rows: list, mats: dict, sl: slice) -> Conversation:
    part = rows[sl]
    feats = {m: a[sl] for m, a in mats.items()}
    ids = [r["utt_id"] for r in part]
    if layout == MOSI:
        return Conversation(
            part[0]["video_id"], ids, feats,
            np.array([float(r["label_cont"]) for r in part], dtype=np.float32),
            np.array([int(r["label_bin"]) for r in part], dtype=np.int64))
    return Conversation(part[0]["conversation_id"], ids, feats, None,
                        np.array([int(r["label"]) for r in part], dtype=np.int64),
                        _speakers([r["speaker"] for r in part]))


def load_split(folder, dims: dict | None = None, files: dict | None = None) -> list:
    """All conversations of a split folder, in file order. `dims`: the modalities to read and
    their sizes (a model's); None = every modality file present. `files`: see feature_file."""
    folder = Path(folder)
    layout, rows = _read_rows(folder)
    if dims is None:
        dims = present_dims(folder, len(rows), files)
    mats = {m: _read_matrix(folder / feature_file(m, files), len(rows), dims[m])
            for m in MODALITIES if m in dims}
    key = "video_id" if layout == MOSI else "conversation_id"
    convs, start = [], 0
    while start < len(rows):
        cid = rows[start][key]
        end = start
        while end < len(rows) and rows[end][key] == cid:
            end += 1
        convs.append(_conversation(layout, rows, mats, slice(start, end)))
        start = end
    return convs


def split_sha256(folder, modalities=None, files: dict | None = None) -> str:
    """sha256 over utterances.csv and the modality files (canonical order; default: every
    modality file present; CMU-MOSI: text, audio, visual)."""
    folder = Path(folder)
    if modalities is None:
        modalities = [m for m in MODALITIES if (folder / feature_file(m, files)).exists()]
    h = hashlib.sha256()
    for name in ["utterances.csv"] + [feature_file(m, files) for m in MODALITIES
                                      if m in modalities]:
        h.update((folder / name).read_bytes())
    return h.hexdigest()


def feature_stats(convs) -> dict:
    """Per-feature training mean and std (population) for each modality, float32."""
    out = {}
    for m in convs[0].feats:
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
