"""Leave-one-session-out folds of IEMOCAP's training + val sessions, and their fold models.

Owns: building fold split folders outside the repository (IEMOCAP data may never enter it):
fold s has `train/` = every utterance of `train/` and `val/` whose session (`Ses0N` prefix of
the utterance id) is not s, and `val/` = the utterances of session s, with every per-utterance
file sliced by rows (`*.f32` matrices, `utterances.csv`, `transcripts.csv`) so whatever view a
model's training reads is there; and training one model per fold with the shipped model's own
`[training] command`, `--data` / `--export` pointed at the fold and one torch thread. The fold
whose held-out session is the shipped model's val session is the shipped model itself (trained
on the other sessions), so it is never retrained. Session 5 (test) is never read: only the
`train/` and `val/` folders of the data directory are.
"""
from __future__ import annotations

import csv
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

SESSION = re.compile(r"^Ses0(\d)")
ROW_FILES = ("utterances.csv", "transcripts.csv")


def session_of(utt_id: str) -> int:
    m = SESSION.match(utt_id)
    if not m:
        raise ValueError(f"utterance id {utt_id!r} names no IEMOCAP session")
    return int(m.group(1))


def _csv_rows(path: Path) -> tuple:
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, list(reader)


def split_sessions(folder: Path) -> np.ndarray:
    """Session of every utterance of a split folder, in file order."""
    _, rows = _csv_rows(folder / "utterances.csv")
    return np.array([session_of(r[0]) for r in rows], np.int64)


def build_fold(data: Path, held_out: int, out: Path) -> Path:
    """Writes `out/train` (sessions other than `held_out`) and `out/val` (`held_out`) from
    `data/train` and `data/val`; returns `out`. Idempotent: an existing complete fold is kept."""
    if (out / "val" / "utterances.csv").exists() and (out / "train" / "utterances.csv").exists():
        return out
    srcs = [data / "train", data / "val"]
    sessions = [split_sessions(s) for s in srcs]
    for name, keep in (("train", lambda s: s != held_out), ("val", lambda s: s == held_out)):
        dst = out / name
        dst.mkdir(parents=True, exist_ok=True)
        sel = [keep(s) for s in sessions]
        for fname in ROW_FILES:
            if not all((s / fname).exists() for s in srcs):
                continue
            header, rows = None, []
            for s, mask in zip(srcs, sel):
                header, r = _csv_rows(s / fname)
                if len(r) != len(mask):
                    raise ValueError(f"{s / fname}: {len(r)} rows, utterances.csv {len(mask)}")
                rows += [row for row, k in zip(r, mask) if k]
            with open(dst / fname, "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(header)
                w.writerows(rows)
        for f32 in sorted(p.name for p in srcs[0].glob("*.f32")):
            parts = []
            for s, mask in zip(srcs, sel):
                arr = np.fromfile(s / f32, dtype="<f4")
                arr = arr.reshape(len(mask), -1)
                parts.append(arr[mask])
            np.concatenate(parts).astype("<f4").tofile(dst / f32)
    return out


def training_command(manifest: Path) -> list:
    """The `[training] command` of a model's manifest as an argument list (after the module)."""
    raw = tomllib.loads(manifest.read_text())
    cmd = shlex.split(raw.get("training", {}).get("command", ""))
    if "-m" not in cmd or "gsdnet_torch.train" not in cmd:
        raise ValueError(f"{manifest}: [training] command is not a gsdnet_torch.train command")
    return cmd[cmd.index("gsdnet_torch.train") + 1:]


def _set_option(args: list, name: str, value: str) -> list:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == name:
            skip = True
            continue
        if a.startswith(name + "="):
            continue
        out.append(a)
    return out + [name, value]


def fold_args(model: Path, fold_data: Path, export: Path, threads: int = 1) -> list:
    args = training_command(model / "manifest.toml")
    args = _set_option(args, "--data", str(fold_data))
    args = _set_option(args, "--export", str(export))
    return _set_option(args, "--threads", str(threads))


def train_fold(model: Path, fold_data: Path, export: Path, log: Path, threads: int = 1) -> Path:
    """Trains the fold model; skipped when `export` already holds one trained by this very
    command (a fold model of an earlier shipped recipe is retrained, not reused)."""
    args = fold_args(model, fold_data, export, threads)
    if (export / "manifest.toml").exists() and training_command(export / "manifest.toml") == args:
        return export
    cmd = [sys.executable, "-m", "gsdnet_torch.train"] + args
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True)
    return export


def val_session(data: Path) -> int:
    s = np.unique(split_sessions(data / "val"))
    if len(s) != 1:
        raise ValueError(f"{data / 'val'}: sessions {s.tolist()}, expected one")
    return int(s[0])


def fold_models(model: Path, data: Path, work: Path, threads: int = 1) -> dict:
    """held-out session -> (model folder, split folder of that session) for every session of
    `data/train` and `data/val`; the shipped model for its own val session."""
    sessions = sorted(set(split_sessions(data / "train")) | set(split_sessions(data / "val")))
    shipped = val_session(data)
    out = {}
    for s in sessions:
        if s == shipped:
            out[s] = (model, data / "val")
            continue
        fold = build_fold(data, s, work / f"fold{s}" / "data")
        mdir = train_fold(model, fold, work / f"fold{s}" / "model", work / f"fold{s}" / "train.log",
                          threads)
        out[s] = (mdir, fold / "val")
    return out


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description="Build and train the leave-one-session-out folds")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--work", required=True, help="folder outside the repository")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    for s, (m, v) in fold_models(Path(a.model), Path(a.data), Path(a.work), a.threads).items():
        print(f"session {s}: model {m}, split {v}")


if __name__ == "__main__":
    main()
