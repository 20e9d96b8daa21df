//! Conversation graph and its spectrum (DESIGN.md "Graph and spectrum"), in f64 where it
//! matters: structural adjacency from turn order and speakers, symmetric normalisation,
//! bounded-iteration eigendecomposition with sorted eigenpairs and canonical signs, per-modality
//! spectra of latents and the low-rank reconstructions `U diag(lam) U^T`.
//!
//! Layouts (row-major f32): adjacency `[W, W]`, `u [W, k]`, `eig [k]`, latents `[M, W, d]`,
//! spectra `[M, k]` (M modality slots). Rows and columns at or beyond the node count N are always 0, and so are the
//! columns of `u` beyond `min(k, N)`. `Spectral::rebuild` allocates (once per window); the
//! per-step functions (`spectrum`, `low_rank`) do not.

use nalgebra::{DMatrix, SymmetricEigen};
use thiserror::Error;

use serde::Deserialize;

mod cache;

pub use cache::GraphCache;

/// The manifest's `[graph]`: neighbourhood sizes of the structural adjacency (turns within
/// `window_same` of the same speaker and `window_other` of another are linked).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct GraphSettings {
    pub window_same: usize,
    pub window_other: usize,
}

/// Entries at or below this magnitude never decide an eigenvector's sign.
pub const SIGN_THRESHOLD: f64 = 1e-4;
/// Row norm floor of the cosine normalisation.
pub const NORM_FLOOR: f32 = 1e-6;
/// Consecutive sorted eigenvalues this close form one degenerate group.
pub const DEGENERACY_TOL: f64 = 1e-8;
/// Gaps above `DEGENERACY_TOL` but below this make `u` ill-conditioned (DESIGN: warn).
pub const NEAR_REPEAT_TOL: f64 = 1e-6;
/// Gram-Schmidt keeps a projected basis vector whose residual norm exceeds this.
pub const GS_TOL: f64 = 1e-3;

#[derive(Debug, Error, PartialEq)]
pub enum SpectralError {
    #[error("window holds {n} nodes, the model's window is {w}")]
    TooManyNodes { n: usize, w: usize },
    #[error("matrix is not square: {rows}x{cols}")]
    NotSquare { rows: usize, cols: usize },
    #[error("matrix has a non-finite entry at ({row}, {col})")]
    NonFinite { row: usize, col: usize },
    #[error("eigendecomposition of a {n}x{n} matrix did not converge in {iterations} iterations")]
    NoConvergence { n: usize, iterations: usize },
}

/// Eigenpairs of a symmetric matrix: values descending, vectors as columns with the sign rule.
pub fn sym_eigen(m: &DMatrix<f64>) -> Result<(Vec<f64>, DMatrix<f64>), SpectralError> {
    let (rows, cols) = m.shape();
    if rows != cols {
        return Err(SpectralError::NotSquare { rows, cols });
    }
    if let Some(idx) = m.iter().position(|v| !v.is_finite()) {
        return Err(SpectralError::NonFinite {
            row: idx % rows,
            col: idx / rows,
        });
    }
    let n = rows;
    if n == 0 {
        return Ok((Vec::new(), DMatrix::zeros(0, 0)));
    }
    let iterations = 1000 * n.max(10);
    let eig = SymmetricEigen::try_new(m.clone(), f64::EPSILON, iterations)
        .ok_or(SpectralError::NoConvergence { n, iterations })?;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let values: Vec<f64> = order.iter().map(|&i| eig.eigenvalues[i]).collect();
    let mut vectors = DMatrix::<f64>::zeros(n, n);
    for (c, &i) in order.iter().enumerate() {
        vectors.column_mut(c).copy_from(&eig.eigenvectors.column(i));
    }
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && values[end - 1] - values[end] <= DEGENERACY_TOL {
            end += 1;
        }
        if end - start > 1 {
            canonical_basis(&mut vectors, start, end);
        }
        start = end;
    }
    for mut col in vectors.column_iter_mut() {
        if col.iter().find(|v| v.abs() > SIGN_THRESHOLD).is_some_and(|v| *v < 0.0) {
            col.neg_mut();
        }
    }
    Ok((values, vectors))
}

/// Replaces columns `start..end` (one degenerate eigenspace, in which any orthonormal basis is
/// an equally valid answer of the eigensolver) by the canonical basis of their span: modified
/// Gram-Schmidt over `P e_0, P e_1, ...` with `P` the span's projector, keeping a vector when
/// its residual norm exceeds `GS_TOL`. The span and hence the result do not depend on the
/// solver. Invariant: at most `n * GS_TOL^2 < 1` of the span's mass is skipped, so the loop
/// always finds `end - start` vectors for `n < 10^6`.
fn canonical_basis(vectors: &mut DMatrix<f64>, start: usize, end: usize) {
    let n = vectors.nrows();
    let v = vectors.columns(start, end - start).into_owned();
    let p = &v * v.transpose();
    let mut chosen: Vec<nalgebra::DVector<f64>> = Vec::with_capacity(end - start);
    for i in 0..n {
        let mut x = p.column(i).into_owned();
        for q in &chosen {
            let d = q.dot(&x);
            x.axpy(-d, q, 1.0);
        }
        let norm = x.norm();
        if norm > GS_TOL {
            chosen.push(x / norm);
            if chosen.len() == end - start {
                break;
            }
        }
    }
    if chosen.len() == end - start {
        for (c, q) in chosen.iter().enumerate() {
            vectors.column_mut(start + c).copy_from(q);
        }
    } else {
        log::warn!(
            "degenerate eigenspace of size {}: canonical basis not found, solver basis kept",
            end - start
        );
    }
}

/// Structural adjacency (0/1, no self loops) of `n = speakers.len()` nodes.
pub fn structural(speakers: &[u32], g: &GraphSettings) -> DMatrix<f64> {
    let n = speakers.len();
    DMatrix::from_fn(n, n, |i, j| {
        let reach = if speakers[i] == speakers[j] {
            g.window_same
        } else {
            g.window_other
        };
        if i != j && i.abs_diff(j) <= reach {
            1.0
        } else {
            0.0
        }
    })
}

/// `D^-1/2 (a + I) D^-1/2`, D the row sums of `a + I`.
pub fn normalise(a: &DMatrix<f64>) -> DMatrix<f64> {
    let n = a.nrows();
    let with_loops = a + DMatrix::<f64>::identity(n, n);
    let inv_sqrt: Vec<f64> = with_loops.row_iter().map(|r| 1.0 / r.sum().sqrt()).collect();
    DMatrix::from_fn(n, n, |i, j| with_loops[(i, j)] * inv_sqrt[i] * inv_sqrt[j])
}

/// The graph of one window: normalised adjacency and leading eigenpairs, padded to W and k.
#[derive(Debug, Clone)]
pub struct Spectral {
    pub w: usize,
    pub k: usize,
    /// Valid nodes N.
    pub n: usize,
    /// Normalised adjacency `[W, W]`.
    pub adj: Vec<f32>,
    /// Leading eigenvectors `[W, k]`.
    pub u: Vec<f32>,
    /// The same transposed, `[k, W]` (rows of `low_rank` vectorise over it).
    ut: Vec<f32>,
    /// The same in f64 (spectra and the recovered graph are computed in f64, as the reference).
    pub u64: Vec<f64>,
    /// Leading eigenvalues `[k]`, descending.
    pub eig: Vec<f32>,
}

impl Spectral {
    pub fn new(w: usize, k: usize) -> Self {
        Spectral {
            w,
            k,
            n: 0,
            adj: vec![0.0; w * w],
            u: vec![0.0; w * k],
            ut: vec![0.0; w * k],
            u64: vec![0.0; w * k],
            eig: vec![0.0; k],
        }
    }

    /// Becomes a copy of `other` (same W and k) without reallocating.
    pub fn copy_from(&mut self, other: &Spectral) {
        debug_assert_eq!((self.w, self.k), (other.w, other.k));
        self.n = other.n;
        self.adj.copy_from_slice(&other.adj);
        self.u.copy_from_slice(&other.u);
        self.ut.copy_from_slice(&other.ut);
        self.u64.copy_from_slice(&other.u64);
        self.eig.copy_from_slice(&other.eig);
    }

    /// Rebuilds for a window whose node i has speaker `speakers[i]`.
    pub fn rebuild(&mut self, speakers: &[u32], g: &GraphSettings) -> Result<(), SpectralError> {
        let (w, k, n) = (self.w, self.k, speakers.len());
        if n > w {
            return Err(SpectralError::TooManyNodes { n, w });
        }
        let a = normalise(&structural(speakers, g));
        let (values, vectors) = sym_eigen(&a)?;
        let kept = &values[..(k + 1).min(n)];
        if let Some(gap) = kept
            .windows(2)
            .map(|p| p[0] - p[1])
            .filter(|g| *g > DEGENERACY_TOL)
            .reduce(f64::min)
        {
            if gap < NEAR_REPEAT_TOL {
                log::warn!("eigenvalue gap {gap:.2e} among the kept eigenpairs of {n} nodes: u is ill-conditioned");
            }
        }
        self.n = n;
        self.adj.fill(0.0);
        self.u.fill(0.0);
        self.u64.fill(0.0);
        self.eig.fill(0.0);
        for i in 0..n {
            for j in 0..n {
                self.adj[i * w + j] = a[(i, j)] as f32;
            }
        }
        self.ut.fill(0.0);
        for j in 0..k.min(n) {
            self.eig[j] = values[j] as f32;
            for i in 0..n {
                self.u64[i * k + j] = vectors[(i, j)];
                self.u[i * k + j] = vectors[(i, j)] as f32;
                self.ut[j * w + i] = vectors[(i, j)] as f32;
            }
        }
        Ok(())
    }

    /// Spectra `out [M, k]` of latents `lat [M, rows, d]` (`rows` >= N, e.g. W or a window
    /// bucket): `|hn^T u_j|^2 / max(N, 1)` with rows cosine-normalised; rows >= N are ignored.
    /// `scratch` must hold `d` values.
    pub fn spectrum(&self, lat: &[f32], rows: usize, d: usize, scratch: &mut [f64], out: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        let denom = n.max(1) as f64;
        for m in 0..out.len() / k {
            let block = &lat[m * rows * d..(m + 1) * rows * d];
            for j in 0..k {
                scratch[..d].fill(0.0);
                for i in 0..n {
                    let row = &block[i * d..(i + 1) * d];
                    let norm = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
                    let c = self.u64[i * k + j] / norm.max(f64::from(NORM_FLOOR));
                    for (s, v) in scratch[..d].iter_mut().zip(row) {
                        *s += c * f64::from(*v);
                    }
                }
                out[m * k + j] = (scratch[..d].iter().map(|s| s * s).sum::<f64>() / denom) as f32;
            }
        }
    }

    /// `out [rows, rows] = u diag(lam) u^T` for one spectrum `lam [k]`, over the first `rows`
    /// nodes (N <= rows <= W). Rows and columns at or beyond N are exactly +0 (rows of `u`
    /// there are 0), so only the N x N block is computed; each entry sums
    /// `(u[a,j] * lam[j]) * u[b,j]` in j order.
    pub fn low_rank(&self, lam: &[f32], rows: usize, out: &mut [f32]) {
        let (k, w, n) = (self.k, self.w, self.n.min(rows));
        out[..rows * rows].fill(0.0);
        for a in 0..n {
            let ua = &self.u[a * k..(a + 1) * k];
            let row = &mut out[a * rows..a * rows + n];
            // Entry b accumulates in j order; the loop over b is independent lanes.
            for j in 0..k {
                let c = ua[j] * lam[j];
                for (o, &ub) in row.iter_mut().zip(&self.ut[j * w..j * w + n]) {
                    *o += c * ub;
                }
            }
        }
    }

    /// `out [rows, rows] = u diag(lam) u^T` accumulated in f64 (the recovered graph of fusion);
    /// the N x N block as `low_rank`, 0 elsewhere.
    pub fn low_rank_f64(&self, lam: &[f64], rows: usize, out: &mut [f32]) {
        let (k, n) = (self.k, self.n.min(rows));
        out[..rows * rows].fill(0.0);
        for a in 0..n {
            for b in 0..n {
                let acc: f64 = (0..k).map(|j| self.u64[a * k + j] * lam[j] * self.u64[b * k + j]).sum();
                out[a * rows + b] = acc as f32;
            }
        }
    }

    /// `out [M, rows, rows]`: `low_rank` of each modality's spectrum in `lam [M, k]`.
    pub fn low_rank_all(&self, lam: &[f32], rows: usize, out: &mut [f32]) {
        let k = self.k;
        for m in 0..lam.len() / k {
            self.low_rank(
                &lam[m * k..(m + 1) * k],
                rows,
                &mut out[m * rows * rows..(m + 1) * rows * rows],
            );
        }
    }

    /// The normalised adjacency's first `rows` x `rows` block into `out`.
    pub fn adj_block(&self, rows: usize, out: &mut [f32]) {
        for (i, o) in out.chunks_exact_mut(rows).take(rows).enumerate() {
            o.copy_from_slice(&self.adj[i * self.w..i * self.w + rows]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The graph settings of the spectral unit tests (also `cache`'s).
    pub(super) const G: GraphSettings = GraphSettings {
        window_same: 2,
        window_other: 1,
    };

    #[test]
    fn structural_uses_speaker_windows() {
        let a = structural(&[0, 1, 0, 0, 1], &G);
        assert_eq!(a[(0, 1)], 1.0); // other speaker, distance 1
        assert_eq!(a[(0, 2)], 1.0); // same speaker, distance 2
        assert_eq!(a[(1, 3)], 0.0); // other speaker, distance 2
        assert_eq!(a[(0, 3)], 0.0); // same speaker, distance 3
        assert_eq!(a[(2, 2)], 0.0);
        assert_eq!(a, a.transpose());
    }

    #[test]
    fn normalised_rows_match_formula() {
        let a = normalise(&structural(&[0, 0, 0], &G));
        // Complete graph of 3 with loops: every degree 3, every entry 1/3.
        assert!(a.iter().all(|v| (v - 1.0 / 3.0).abs() < 1e-12));
    }

    #[test]
    fn eigenpairs_reconstruct_sorted_and_signed() {
        let speakers: Vec<u32> = (0..12).map(|i| (i % 3 == 0) as u32).collect();
        let a = normalise(&structural(&speakers, &G));
        let (vals, vecs) = sym_eigen(&a).unwrap();
        assert!(vals.windows(2).all(|p| p[0] >= p[1]));
        let rec = &vecs * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vals.clone())) * vecs.transpose();
        assert!((rec - &a).abs().max() < 1e-10);
        for c in 0..vecs.ncols() {
            let first = vecs
                .column(c)
                .iter()
                .copied()
                .find(|v| v.abs() > SIGN_THRESHOLD)
                .unwrap();
            assert!(first > 0.0);
        }
        // Leading eigenvalue of a normalised adjacency with self loops is 1.
        assert!((vals[0] - 1.0).abs() < 1e-10);
    }

    #[test]
    fn degenerate_eigenspaces_get_a_solver_independent_basis() {
        // M = Q diag(3, 1, 1, 1, -2) Q^T for two orthogonal Q that differ only by a rotation
        // inside the eigenvalue-1 space: the eigensolver sees different matrices' roundoff but
        // the same eigenspaces, so the canonical result must agree.
        let q = sym_eigen(&normalise(&structural(&[0, 1, 0, 1, 1], &G))).unwrap().1;
        let (c, s) = (0.6f64, 0.8f64);
        let mut q2 = q.clone();
        for r in 0..5 {
            let (a, b) = (q[(r, 1)], q[(r, 2)]);
            q2[(r, 1)] = c * a - s * b;
            q2[(r, 2)] = s * a + c * b;
        }
        let d = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![3.0, 1.0, 1.0, 1.0, -2.0]));
        let (va, ua) = sym_eigen(&(&q * &d * q.transpose())).unwrap();
        let (vb, ub) = sym_eigen(&(&q2 * &d * q2.transpose())).unwrap();
        assert!(va.iter().zip(&vb).all(|(a, b)| (a - b).abs() < 1e-12));
        assert!((&ua - &ub).abs().max() < 1e-9, "{ua} vs {ub}");
        // Still an orthonormal eigenbasis.
        assert!((ua.transpose() * &ua - DMatrix::<f64>::identity(5, 5)).abs().max() < 1e-12);
        let m = &q * &d * q.transpose();
        for (j, &v) in va.iter().enumerate().take(5) {
            let col = ua.column(j);
            assert!((&m * col - col * v).norm() < 1e-12);
        }
    }

    #[test]
    fn non_finite_and_non_square_are_rejected() {
        let mut m = DMatrix::<f64>::identity(3, 3);
        m[(1, 2)] = f64::NAN;
        assert_eq!(sym_eigen(&m).unwrap_err(), SpectralError::NonFinite { row: 1, col: 2 });
        assert!(matches!(
            sym_eigen(&DMatrix::zeros(2, 3)),
            Err(SpectralError::NotSquare { .. })
        ));
    }

    #[test]
    fn rebuild_pads_and_low_rank_of_eig_is_adjacency() {
        let (w, k) = (8, 8);
        let mut s = Spectral::new(w, k);
        s.rebuild(&[0, 0, 1, 0, 1], &G).unwrap();
        assert_eq!(s.n, 5);
        assert!(s.u.chunks(k).skip(5).all(|r| r.iter().all(|&v| v == 0.0)));
        assert!(s.eig[5..].iter().all(|&v| v == 0.0));
        let mut rec = vec![0.0; w * w];
        s.low_rank(&s.eig.clone(), w, &mut rec);
        let err = rec.iter().zip(&s.adj).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 1e-5, "{err}");
        // A block of 6 >= N rows is the full matrix's top-left block, bit for bit.
        let (mut block, mut adj) = (vec![0.0; 36], vec![0.0; 36]);
        s.low_rank(&s.eig.clone(), 6, &mut block);
        s.adj_block(6, &mut adj);
        for i in 0..6 {
            assert_eq!(&block[i * 6..i * 6 + 6], &rec[i * w..i * w + 6]);
            assert_eq!(&adj[i * 6..i * 6 + 6], &s.adj[i * w..i * w + 6]);
        }
        assert!(s.rebuild(&[0; 9], &G).is_err());
    }

    #[test]
    fn spectrum_of_constant_rows_is_projection_on_mean() {
        let (w, k, d) = (4, 4, 3);
        let mut s = Spectral::new(w, k);
        s.rebuild(&[0, 0, 0], &G).unwrap();
        // Every valid row the same unit vector: hn^T u_j = (sum_i u_ij) e, so lam_j = (sum_i u_ij)^2 / N.
        let mut lat = vec![0.0f32; 3 * w * d];
        for m in 0..3 {
            for i in 0..3 {
                lat[m * w * d + i * d] = 2.0;
            }
        }
        let mut out = vec![0.0; 3 * k];
        s.spectrum(&lat, w, d, &mut vec![0.0; d], &mut out);
        for (j, &lam) in out.iter().enumerate().take(k) {
            let sum: f32 = (0..3).map(|i| s.u[i * k + j]).sum();
            assert!((lam - sum * sum / 3.0).abs() < 1e-6);
        }
        // Complete graph: leading eigenvector is uniform, so lam_0 = (3/sqrt 3)^2 / 3 = 1.
        assert!((out[0] - 1.0).abs() < 1e-6);
    }
}
