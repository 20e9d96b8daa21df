"""The manifest's default completion (`[completion]`, docs/DESIGN.md "Default completion"), the
twin of src/completion.rs's `CompletionPolicy`.

Owns: reading `[completion] default` and `[completion.patterns]` (availability pattern ->
completion mode) into a policy, and resolving the completion of one window: the pattern entry
when every valid utterance of the window has that same availability pattern, else `default`.
A manifest without `[completion]` defaults to `gsdnet` everywhere (the behaviour before the
table existed). Other keys of `[completion]` are free-form provenance (written by
`gsdnet_torch.choose_completion`) and are not read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import masks as gmasks

MODES = ("gsdnet", "meanfill", "zero")
DEFAULT = "default"          # evaluation's name for "each window as the policy says"
LEGACY_DEFAULT = "gsdnet"


def pattern_bits(key: str, table: str = "[completion.patterns]") -> int:
    """Availability bits of a pattern key of a manifest table such as "TA" (letters T, A, V,
    each at most once, any order: `masks.pattern_bits`); the error names `table`."""
    if not key:
        raise ValueError(f"{table} empty pattern")
    try:
        return gmasks.pattern_bits(key)
    except ValueError:
        raise ValueError(f"{table} key {key!r} is not an availability pattern") from None


def _mode(value, where: str) -> str:
    if not isinstance(value, str) or value not in MODES:
        raise ValueError(f"{where} must be one of {MODES}, got {value!r}")
    return value


@dataclass(frozen=True)
class Policy:
    default: str = LEGACY_DEFAULT
    by_bits: tuple = (None,) * 8      # completion per availability bits, None = default

    def resolve(self, avail_n: np.ndarray, bits) -> str:
        """Completion of a window from its availability [N, M] (0/1) and the slots' bits."""
        b = (np.asarray(avail_n) > 0).astype(np.int64) @ np.asarray(bits, np.int64)
        if len(b) and np.all(b == b[0]) and self.by_bits[int(b[0])] is not None:
            return self.by_bits[int(b[0])]
        return self.default

    @property
    def patterns(self) -> dict:
        letters = "TAV"
        return {"".join(c for i, c in enumerate(letters) if bits >> i & 1): mode
                for bits, mode in enumerate(self.by_bits) if mode is not None}


def load_policy(raw: dict) -> Policy:
    """The policy of a parsed manifest (absent table: gsdnet everywhere)."""
    table = raw.get("completion")
    if table is None:
        return Policy()
    if not isinstance(table, dict) or "default" not in table:
        raise ValueError("[completion] needs `default = \"<mode>\"`")
    default = _mode(table["default"], "[completion] default")
    patterns = table.get("patterns", {})
    if not isinstance(patterns, dict):
        raise ValueError("[completion] patterns must be a table of pattern = mode")
    by_bits = [None] * 8
    for key, mode in patterns.items():
        by_bits[pattern_bits(key)] = _mode(mode, f"[completion.patterns] {key}")
    return Policy(default, tuple(by_bits))
