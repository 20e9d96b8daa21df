"""Conversation graph and its spectrum (docs/DESIGN.md, "Graph and spectrum"), in float64.

Owns: the structural adjacency from turn order and speakers, its symmetric normalisation, the
sorted top-k eigendecomposition with the sign rule, the per-modality spectra of latents in that
frozen basis, and A = u diag(lam) u^T. Invariants: padded rows/columns are 0; eigenvalues are
descending; the first entry with |v| > 1e-4 of each eigenvector is positive.
"""
from __future__ import annotations

import warnings

import numpy as np

SIGN_EPS = 1e-4
GAP_EPS = 1e-6
DEGENERACY_TOL = 1e-8
GS_TOL = 1e-3
NORM_FLOOR = 1e-6


def structural_adjacency(speaker: np.ndarray, width: int, window_same: int,
                         window_other: int) -> np.ndarray:
    """0/1 adjacency [W, W] over the N = len(speaker) valid nodes, no self loops."""
    n = len(speaker)
    if n > width:
        raise ValueError(f"{n} nodes exceed the window {width}")
    idx = np.arange(n)
    dist = np.abs(idx[:, None] - idx[None, :])
    same = speaker[:, None] == speaker[None, :]
    lim = np.where(same, window_same, window_other)
    a = np.zeros((width, width), dtype=np.float64)
    a[:n, :n] = ((dist <= lim) & (dist > 0)).astype(np.float64)
    return a


def normalise(a: np.ndarray, n: int) -> np.ndarray:
    """D^-1/2 (a + I) D^-1/2 on the n valid nodes; padded part 0."""
    if not np.all(np.isfinite(a)):
        raise ValueError("adjacency has non-finite entries")
    out = np.zeros_like(a, dtype=np.float64)
    if n == 0:
        return out
    b = a[:n, :n] + np.eye(n)
    d = 1.0 / np.sqrt(b.sum(1))
    out[:n, :n] = b * d[:, None] * d[None, :]
    return out


def top_eigen(adj: np.ndarray, n: int, k: int):
    """(u [W, k], eig [k]): leading min(k, n) eigenpairs of the n x n block, sorted, signed."""
    if not np.all(np.isfinite(adj)):
        raise ValueError("matrix has non-finite entries")
    width = adj.shape[0]
    u = np.zeros((width, k), dtype=np.float64)
    eig = np.zeros(k, dtype=np.float64)
    if n == 0:
        return u, eig
    block = adj[:n, :n].astype(np.float64)
    if not np.allclose(block, block.T, atol=1e-9):
        raise ValueError("matrix is not symmetric")
    vals, vecs = np.linalg.eigh(block)
    order = np.argsort(-vals, kind="stable")
    vals, vecs = vals[order], vecs[:, order]
    start = 0
    while start < n:
        end = start + 1
        while end < n and vals[end - 1] - vals[end] <= DEGENERACY_TOL:
            end += 1
        if end - start > 1:
            vecs[:, start:end] = canonical_basis(vecs[:, start:end])
        start = end
    kk = min(k, n)
    gaps = np.abs(np.diff(vals[:kk + 1]))
    if np.any((gaps > DEGENERACY_TOL) & (gaps < GAP_EPS)):
        warnings.warn("nearly repeated eigenvalues among the kept eigenpairs: u is "
                      "ill-conditioned (docs/DESIGN.md, graph and spectrum)", RuntimeWarning,
                      stacklevel=2)
    vals, vecs = vals[:kk], vecs[:, :kk]
    for j in range(kk):
        big = np.nonzero(np.abs(vecs[:, j]) > SIGN_EPS)[0]
        if big.size and vecs[big[0], j] < 0:
            vecs[:, j] = -vecs[:, j]
    u[:n, :kk] = vecs
    eig[:kk] = vals
    return u, eig


def canonical_basis(v: np.ndarray) -> np.ndarray:
    """Canonical orthonormal basis of span(v) (one degenerate eigenspace, DESIGN.md): modified
    Gram-Schmidt over P e_0, P e_1, ... with P = v v^T, keeping a vector when its residual norm
    exceeds GS_TOL. Independent of which basis of the span the eigensolver returned."""
    p = v @ v.T
    chosen = []
    for i in range(v.shape[0]):
        x = p[:, i].copy()
        for q in chosen:
            x -= (q @ x) * q
        norm = np.linalg.norm(x)
        if norm > GS_TOL:
            chosen.append(x / norm)
            if len(chosen) == v.shape[1]:
                return np.stack(chosen, axis=1)
    warnings.warn("canonical basis not found, solver basis kept", RuntimeWarning, stacklevel=2)
    return v


def spectral_gap(sorted_vals: np.ndarray, kk: int) -> float:
    """Smallest gap among the kk kept eigenvalues and to the first dropped one (inf if none):
    u is defined up to the sign rule only when this is positive."""
    v = sorted_vals[:kk + 1]
    return float(np.min(np.abs(np.diff(v)))) if len(v) > 1 else float("inf")


def spectrum(h: np.ndarray, u: np.ndarray, node_mask: np.ndarray) -> np.ndarray:
    """lam [M, k] of latents h [M, W, d]: |hn^T u_j|^2 / max(N, 1), rows cosine-normalised."""
    n = int(node_mask.sum())
    h = h.astype(np.float64)
    norms = np.maximum(np.linalg.norm(h, axis=-1, keepdims=True), NORM_FLOOR)
    hn = h / norms * node_mask[None, :, None]
    proj = np.einsum("mwd,wk->mkd", hn, u.astype(np.float64))
    return (proj ** 2).sum(-1) / max(n, 1)


def adj_from_lam(u: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """u diag(lam) u^T: lam [..., k] -> [..., W, W]."""
    return np.einsum("wk,...k,vk->...wv", u, lam, u)


def build_graph(speaker: np.ndarray, width: int, k: int, window_same: int, window_other: int):
    """(a_norm [W, W], u [W, k], eig [k]) of a conversation of len(speaker) nodes."""
    n = len(speaker)
    a = normalise(structural_adjacency(speaker, width, window_same, window_other), n)
    u, eig = top_eigen(a, n, k)
    return a, u, eig
