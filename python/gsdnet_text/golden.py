"""Golden cases of the text frontend for the Rust runtime's parity tests:
`python -m gsdnet_text.golden --frontend models/frontends/all-minilm-l6-v2 --out
tests/golden/text_frontend/cases.json`.

Each case is a crafted text (no IEMOCAP text: its licence keeps transcripts out of the
repository), its token ids and attention mask after tokenizer.json (truncated to max_tokens),
and its embedding from the reference, each text encoded alone (batch 1). The sentence-
transformers quickstart triple is included with its pairwise similarities.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .reference import TextFrontend

QUICKSTART = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]

# A made-up paragraph whose tokenisation is far longer than 128 tokens, so truncation cuts it.
_LONG = " ".join(
    f"Sentence number {i} says that the robot listened carefully, nodded, and answered "
    f"without hurry; unbelievably, everyone stayed calm."
    for i in range(1, 9)
)

CRAFTED: list[tuple[str, str]] = [
    ("empty", ""),
    ("whitespace_only", " \t\n  \r\n "),
    ("short", "Hi."),
    ("longer_than_128_tokens", _LONG),
    ("non_ascii_accents", "Café au lait, naïve Zoë — Grüße aus Köln! ¿Qué tal?"),
    ("non_ascii_cjk", "我今天很高兴 and 日本語 too"),
    ("non_ascii_other_scripts", "Привет, как дела? مرحبا שלום"),
    ("emoji", "I love it 😀🎉 so much 👍🏽!"),
    ("control_characters", "hello\x00world\tagain\x07 and\x1b[0m\r\nnext\u200bline\ufeff end"),
    ("combining_marks", "cafe\u0301 re\u0301sume\u0301"),
    ("punctuation_and_digits", "It's 3:45pm... wait--what?! $12.50 (approx.) #1"),
    ("upper_case", "I AM SO ANGRY RIGHT NOW"),
]


def case(front: TextFrontend, name: str, text: str) -> dict:
    tokens = front.tokenize([text])
    emb = front.encode([text], batch=1)[0]
    return {
        "name": name,
        "text": text,
        "ids": tokens.ids[0].tolist(),
        "attention_mask": tokens.mask[0].tolist(),
        # float32 values in their shortest decimal form (exact as float32)
        "embedding": [float(str(v)) for v in emb.astype(np.float32)],
    }


def build(front: TextFrontend) -> dict:
    cases = [case(front, n, t) for n, t in CRAFTED]
    cases += [case(front, f"quickstart_{i}", t) for i, t in enumerate(QUICKSTART)]
    q = np.array([c["embedding"] for c in cases[-len(QUICKSTART):]], dtype=np.float32)
    sim = q @ q.T
    p = front.pins
    return {
        "about": "Text frontend golden cases (gsdnet_text.golden): token ids after tokenizer.json "
        "and embeddings from the Python reference (onnxruntime, each text alone). Crafted "
        "texts only, no IEMOCAP data.",
        "frontend": {"encoder_sha256": p.encoder_sha256, "tokenizer_sha256": p.tokenizer_sha256,
                     "max_tokens": p.max_tokens, "hidden": p.hidden},
        "tolerance": {"min_cosine": 0.9999, "max_abs_diff": 1e-4},
        "quickstart_similarity": {"pairs": [[0, 1], [0, 2], [1, 2]],
                                  "values": [round(float(sim[0, 1]), 4), round(float(sim[0, 2]), 4),
                                             round(float(sim[1, 2]), 4)]},
        "cases": cases,
    }


def dumps(doc: dict) -> str:
    """JSON with one line per top-level key and per case (ASCII: escapes keep odd text visible)."""
    head = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items() if k != "cases"]
    cases = ",\n".join("  " + json.dumps(c) for c in doc["cases"])
    return "{\n" + ",\n".join(head) + ',\n "cases": [\n' + cases + "\n ]\n}\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gsdnet_text.golden",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--frontend", type=Path, default=Path("models/frontends/all-minilm-l6-v2"))
    ap.add_argument("--out", type=Path, default=Path("tests/golden/text_frontend/cases.json"))
    args = ap.parse_args(argv)
    doc = build(TextFrontend(args.frontend))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(doc), encoding="utf-8")
    sims = doc["quickstart_similarity"]["values"]
    print(f"{args.out}: {len(doc['cases'])} cases, quickstart similarities {sims}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
