"""Random crops of training windows for stage 1 (`--crop-prob`, docs/MODEL.md IEMOCAP item 8).

Owns the crop pool: for every training window, `PER_WINDOW` random contiguous runs of its
utterances (length uniform in [min(MIN_LEN, n), n], start uniform), each a window of its own
with its graph and spectral basis rebuilt by `common.make_batch`, drawn once per member from a
numpy generator seeded by the member's seed; and the per-step draw that replaces each window of
a minibatch by one of its crops with probability `prob` (torch generator of the caller; nothing
is drawn when there is no pool, so the training stream without crops is unchanged). A crop
gives a node other neighbours, another conversation mean and other positions than the full
window, so members see more contexts of the same utterances; evaluation still runs on the full
consecutive windows.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from gsdnet_ref import data as gdata
from gsdnet_torch.common import Batch

PER_WINDOW = 8   # crops drawn per training window
MIN_LEN = 8      # shortest crop (a shorter window is kept whole)
SEED_OFFSET = 777  # the pool's numpy seed is the member's seed + this


def crop_convs(convs, width: int, seed: int) -> list:
    """PER_WINDOW crops of every window of `convs` (consecutive chunks of `width`), window-major,
    so crop j of window i is element i * PER_WINDOW + j."""
    rng = np.random.default_rng(seed + SEED_OFFSET)
    out = []
    for c in convs:
        for sl in gdata.window_slices(c.n, width):
            w = c.part(sl)
            for _ in range(PER_WINDOW):
                n = int(rng.integers(min(MIN_LEN, w.n), w.n + 1))
                start = int(rng.integers(0, w.n - n + 1))
                out.append(w.part(slice(start, start + n)))
    return out


def _join(x, y):
    """One Batch field of two batches: tensors and per-modality tensor lists concatenated along
    the window axis, per-window lists appended; shared values (modalities, regression) kept."""
    if isinstance(x, torch.Tensor):
        return torch.cat([x, y])
    if isinstance(x, list) and x and isinstance(x[0], torch.Tensor):
        return [torch.cat(p) for p in zip(x, y)]
    return x + y if isinstance(x, list) else x


def concat(a: Batch, b: Batch) -> Batch:
    """The windows of `a` then those of `b` (same modalities and width); `a`'s pools stay."""
    out = Batch(**{f.name: _join(getattr(a, f.name), getattr(b, f.name)) for f in fields(Batch)})
    if hasattr(a, "pools"):
        out.pools = a.pools
    return out


@dataclass
class CropPool:
    """`batch`: the training windows (indices 0 .. n_windows - 1) then their crops."""

    batch: Batch
    n_windows: int
    prob: float

    def draw(self, idx: torch.Tensor, gen) -> torch.Tensor:
        """`idx` (window indices) with each replaced by one of its crops with probability prob."""
        swap = torch.rand(len(idx), generator=gen) < self.prob
        j = torch.randint(0, PER_WINDOW, (len(idx),), generator=gen)
        return torch.where(swap, self.n_windows + idx * PER_WINDOW + j, idx)


def crop_pool(tb: Batch, convs, make_batch, width: int, seed: int, prob: float) -> CropPool:
    """The pool of member `seed` for training windows `tb` (made from `convs` by `make_batch`)."""
    cb = make_batch(crop_convs(convs, width, seed))
    if len(cb.n) != len(tb.n) * PER_WINDOW:
        raise ValueError(f"{len(cb.n)} crops for {len(tb.n)} windows: windows longer than {width}?")
    return CropPool(concat(tb, cb), len(tb.n), prob)
