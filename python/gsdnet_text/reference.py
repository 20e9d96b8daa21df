"""The Python reference of the runtime's text frontend: tokenizer.json tokenisation (the
`tokenizers` package; truncation to max_tokens including [CLS] / [SEP], a batch padded to its
longest row), encoder.onnx on onnxruntime, mean of last_hidden_state under the attention mask,
L2 normalisation. This is what sentence-transformers computes for all-MiniLM-L6-v2.

`python -m gsdnet_text.reference --frontend DIR --text "..."` prints one embedding;
`--check-iemocap ROOT` compares every transcript of ROOT/{6way,4way}/{train,val} with the
split's text_minilm.f32 and prints the worst cosine and the max abs difference.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from .pins import Pins, check_sha256, sha256_file

PAD_TOKEN = "[PAD]"


@dataclass
class Tokens:
    """A tokenised batch: int64 [batch, seq] ids and attention mask (1 token, 0 padding)."""

    ids: np.ndarray
    mask: np.ndarray


def load_tokenizer(folder: Path, pins: Pins) -> Tokenizer:
    tok = Tokenizer.from_file(str(folder / pins.tokenizer))
    pad_id = tok.token_to_id(PAD_TOKEN)
    if pad_id is None:
        raise ValueError(f"{folder / pins.tokenizer}: no {PAD_TOKEN} token")
    tok.enable_truncation(max_length=pins.max_tokens)
    tok.enable_padding(pad_id=pad_id, pad_token=PAD_TOKEN)  # to the batch's longest row
    return tok


def mean_pool(hidden: np.ndarray, mask: np.ndarray, normalize: bool = True) -> np.ndarray:
    """[batch, seq, hidden] x [batch, seq] -> [batch, hidden]: the mean over masked-in
    positions, then (if asked) divided by max(L2 norm, 1e-12), as torch's F.normalize."""
    m = mask.astype(np.float32)[:, :, None]
    summed = (hidden.astype(np.float32) * m).sum(axis=1)
    pooled = summed / np.maximum(m.sum(axis=1), 1e-9)
    if normalize:
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled.astype(np.float32)


class TextFrontend:
    """The frontend of one folder (frontend.toml + the set-up's encoder.onnx, tokenizer.json)."""

    def __init__(self, folder: str | Path, threads: int = 1, verify: bool = True):
        self.folder = Path(folder)
        self.pins = Pins.load(self.folder)
        if verify:
            for name, pinned in ((self.pins.encoder, self.pins.encoder_sha256),
                                 (self.pins.tokenizer, self.pins.tokenizer_sha256)):
                check_sha256(name, sha256_file(self.folder / name), pinned)
        self.tokenizer = load_tokenizer(self.folder, self.pins)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.folder / self.pins.encoder), opts, providers=["CPUExecutionProvider"]
        )

    def tokenize(self, texts: list[str]) -> Tokens:
        enc = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return Tokens(ids.reshape(len(texts), -1), mask.reshape(len(texts), -1))

    def hidden(self, tokens: Tokens) -> np.ndarray:
        feeds = dict(zip(self.pins.inputs, (tokens.ids, tokens.mask, np.zeros_like(tokens.ids))))
        return self.session.run([self.pins.output], feeds)[0]

    def encode(self, texts: list[str], batch: int = 32) -> np.ndarray:
        """[len(texts), hidden] float32 sentence embeddings, `batch` texts per encoder call."""
        out = np.zeros((len(texts), self.pins.hidden), dtype=np.float32)
        for start in range(0, len(texts), batch):
            chunk = list(texts[start : start + batch])
            tokens = self.tokenize(chunk)
            out[start : start + len(chunk)] = mean_pool(
                self.hidden(tokens), tokens.mask, self.pins.normalize
            )
        return out


def read_transcripts(split: Path) -> list[str]:
    """The `text` column of split/transcripts.csv, in row order."""
    with open(split / "transcripts.csv", newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


def compare_split(front: TextFrontend, split: Path, batch: int = 32) -> dict:
    """Cosine and abs difference of the frontend against split/text_minilm.f32."""
    texts = read_transcripts(split)
    want = np.fromfile(split / "text_minilm.f32", dtype="<f4").reshape(-1, front.pins.hidden)
    if len(want) != len(texts):
        raise ValueError(f"{split}: {len(texts)} transcripts but {len(want)} vectors")
    got = front.encode(texts, batch)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    worst = int(np.argmin(cos))
    return {
        "split": str(split),
        "count": len(texts),
        "worst_cosine": float(cos[worst]),
        "worst_row": worst,
        "max_abs_diff": float(np.abs(got - want).max()),
        "max_tokens_seen": int(max(len(front.tokenizer.encode(t).ids) for t in texts)),
    }


def check_iemocap(front: TextFrontend, root: Path, batch: int = 32) -> dict:
    rows = [compare_split(front, root / task / part, batch)
            for task in ("6way", "4way") for part in ("train", "val")
            if (root / task / part / "transcripts.csv").is_file()]
    if not rows:
        raise ValueError(f"{root}: no split with transcripts.csv")
    return {
        "splits": rows,
        "count": sum(r["count"] for r in rows),
        "worst_cosine": min(r["worst_cosine"] for r in rows),
        "max_abs_diff": max(r["max_abs_diff"] for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gsdnet_text.reference",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--frontend", type=Path, default=Path("models/frontends/all-minilm-l6-v2"))
    ap.add_argument("--text", action="append", default=[], help="a text to embed (repeatable)")
    ap.add_argument("--check-iemocap", type=Path, metavar="ROOT",
                    help="e.g. ../shared/data/iemocap")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    front = TextFrontend(args.frontend, threads=args.threads)
    if args.text:
        emb = front.encode(args.text, args.batch)
        print(json.dumps({"texts": args.text, "similarity": (emb @ emb.T).round(4).tolist(),
                          "embeddings": emb.tolist()}))
    if args.check_iemocap:
        print(json.dumps(check_iemocap(front, args.check_iemocap, args.batch), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
