//! The batched tensors of one `Pipeline` call and the row bookkeeping between them.
//!
//! A call runs B windows at one window size N (the smallest bucket holding the longest). Window
//! tensors have B rows (`inputs [B,N,dim]`, `avail [B,N,M]`, `node_mask [B,N]`, `h`, `cond`
//! `[B,M,N,d]`, `u [B,N,k]`, `lam_obs [B,M,k]`). Fusion runs on R rows, one per (window,
//! completion sample): rows 0..B are sample 0 of windows 0..B, then samples 1..S of each sampled
//! window in window order. The sampler runs on the rows of sampled windows only, with their
//! condition gathered into `s_*` tensors. Rows at or beyond a window's N valid utterances are 0
//! in every input a part reads (`node_mask` 0), so a row's results never depend on the padding
//! or on the other rows. Buffers keep their largest size (`Tensor::set_shape`).

use crate::tensor::Tensor;

pub(super) struct Batch {
    pub inputs: Vec<Tensor>,
    pub avail: Tensor,
    pub node_mask: Tensor,
    pub h: [Tensor; 1],
    pub cond: Tensor,
    pub u: Tensor,
    pub lam_obs: Tensor,
    /// Sampler rows: condition and result.
    pub s_h: Tensor,
    pub s_cond: Tensor,
    pub s_avail: Tensor,
    pub s_mask: Tensor,
    pub s_u: Tensor,
    pub s_lam_obs: Tensor,
    pub s_x0: Tensor,
    pub s_lam0: Tensor,
    /// Fusion rows.
    pub x0: Tensor,
    pub lam0: Tensor,
    pub f_avail: Tensor,
    pub f_mask: Tensor,
    pub adj_fusion: Tensor,
    /// Reconstruction of sample 0 of every window: `x0`'s first B rows.
    pub rec_in: Tensor,
    pub recon: Vec<Tensor>,
    /// Fusion outputs: logits `[R,N,K]`, then reg `[R,N,1]` when the model has one.
    pub head: Vec<Tensor>,
}

/// Sizes of the model: modality slots, each slot's feature size, latent d, eigenpairs k,
/// classes K, regression head.
#[derive(Clone, Copy)]
pub(super) struct Sizes<'a> {
    pub m: usize,
    pub dims: &'a [usize],
    pub d: usize,
    pub k: usize,
    pub classes: usize,
    pub reg: bool,
}

impl Batch {
    /// Buffers for one window of `w` utterances (they grow with the first larger call).
    pub fn new(z: Sizes, w: usize) -> Batch {
        let (m, d, k) = (z.m, z.d, z.k);
        let feats: Vec<Tensor> = z.dims.iter().map(|&dim| Tensor::zeros(&[1, w, dim])).collect();
        let lat = || Tensor::zeros(&[1, m, w, d]);
        let mut head = vec![Tensor::zeros(&[1, w, z.classes])];
        if z.reg {
            head.push(Tensor::zeros(&[1, w, 1]));
        }
        Batch {
            inputs: feats.clone(),
            avail: Tensor::zeros(&[1, w, m]),
            node_mask: Tensor::zeros(&[1, w]),
            h: [lat()],
            cond: lat(),
            u: Tensor::zeros(&[1, w, k]),
            lam_obs: Tensor::zeros(&[1, m, k]),
            s_h: lat(),
            s_cond: lat(),
            s_avail: Tensor::zeros(&[1, w, m]),
            s_mask: Tensor::zeros(&[1, w]),
            s_u: Tensor::zeros(&[1, w, k]),
            s_lam_obs: Tensor::zeros(&[1, m, k]),
            s_x0: lat(),
            s_lam0: Tensor::zeros(&[1, m, k]),
            x0: lat(),
            lam0: Tensor::zeros(&[1, m, k]),
            f_avail: Tensor::zeros(&[1, w, m]),
            f_mask: Tensor::zeros(&[1, w]),
            adj_fusion: Tensor::zeros(&[1, 2, w, w]),
            rec_in: lat(),
            recon: feats,
            head,
        }
    }

    /// Window tensors for `b` windows at window `n`, zeroed (inputs, masks) where prepare and
    /// conditioning only write valid rows.
    pub fn shape_windows(&mut self, z: Sizes, b: usize, n: usize) {
        let (m, d, k) = (z.m, z.d, z.k);
        for (t, &dim) in self.inputs.iter_mut().zip(z.dims) {
            t.set_shape(&[b, n, dim]);
            t.data_mut().fill(0.0);
        }
        for (t, &dim) in self.recon.iter_mut().zip(z.dims) {
            t.set_shape(&[b, n, dim]);
        }
        self.avail.set_shape(&[b, n, m]);
        self.avail.data_mut().fill(0.0);
        self.node_mask.set_shape(&[b, n]);
        self.node_mask.data_mut().fill(0.0);
        for t in [&mut self.h[0], &mut self.cond, &mut self.rec_in] {
            t.set_shape(&[b, m, n, d]);
        }
        self.u.set_shape(&[b, n, k]);
        self.lam_obs.set_shape(&[b, m, k]);
    }

    /// Fusion rows: `r` rows at window `n`.
    pub fn shape_rows(&mut self, z: Sizes, r: usize, n: usize) {
        let (m, d, k) = (z.m, z.d, z.k);
        self.x0.set_shape(&[r, m, n, d]);
        self.lam0.set_shape(&[r, m, k]);
        self.f_avail.set_shape(&[r, n, m]);
        self.f_mask.set_shape(&[r, n]);
        self.adj_fusion.set_shape(&[r, 2, n, n]);
        self.head[0].set_shape(&[r, n, z.classes]);
        if let Some(reg) = self.head.get_mut(1) {
            reg.set_shape(&[r, n, 1]);
        }
    }

    /// The sampler's condition: for sampler row j, window `windows[j]`'s rows of the window
    /// tensors.
    pub fn gather_sampler(&mut self, windows: impl Iterator<Item = usize> + Clone) {
        gather(&mut self.s_h, &self.h[0], windows.clone());
        gather(&mut self.s_cond, &self.cond, windows.clone());
        gather(&mut self.s_avail, &self.avail, windows.clone());
        gather(&mut self.s_mask, &self.node_mask, windows.clone());
        gather(&mut self.s_u, &self.u, windows.clone());
        gather(&mut self.s_lam_obs, &self.lam_obs, windows);
    }
}

/// Row `i` of `dst` = row `rows[i]` of `src` (rows along axis 0); `dst` takes the row count.
pub(super) fn gather(dst: &mut Tensor, src: &Tensor, rows: impl Iterator<Item = usize> + Clone) {
    let per = src.len() / src.shape()[0].max(1);
    let count = rows.clone().count();
    let mut shape = [0usize; 4];
    let rank = src.shape().len();
    shape[..rank].copy_from_slice(src.shape());
    shape[0] = count;
    dst.set_shape(&shape[..rank]);
    let out = dst.data_mut();
    for (i, r) in rows.enumerate() {
        out[i * per..(i + 1) * per].copy_from_slice(&src.data()[r * per..(r + 1) * per]);
    }
}

/// Row `at` of `dst` = row `from` of `src` (same per-row size).
pub(super) fn copy_row(dst: &mut Tensor, at: usize, src: &Tensor, from: usize) {
    let per = src.len() / src.shape()[0].max(1);
    dst.data_mut()[at * per..(at + 1) * per].copy_from_slice(&src.data()[from * per..(from + 1) * per]);
}

/// Row `b` of a `[B, ..., N, ...]` tensor whose window axes are `axes`, zero-padded to window
/// `w` along them and given batch 1 (how golden cases and the single-window API see it).
pub(super) fn window_of(t: &Tensor, b: usize, axes: &[usize], w: usize) -> Tensor {
    let shape = t.shape();
    let mut full: Vec<usize> = shape.to_vec();
    full[0] = 1;
    for &a in axes {
        full[a] = w;
    }
    let mut out = Tensor::zeros(&full);
    let per = t.len() / shape[0].max(1);
    let src = &t.data()[b * per..(b + 1) * per];
    // Walk every element of the row in row-major order of its own shape.
    let inner = &shape[1..];
    let mut idx = vec![0usize; inner.len()];
    for &v in src {
        let mut flat = 0;
        for (ax, &i) in idx.iter().enumerate() {
            flat = flat * full[ax + 1] + i;
        }
        out.data_mut()[flat] = v;
        for ax in (0..inner.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < inner[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_of_pads_window_axes() {
        // [2, 2, 3] with axis 1 the window: row 1 padded to window 4.
        let t = Tensor::from_vec(&[2, 2, 3], (0..12).map(|v| v as f32).collect()).unwrap();
        let w = window_of(&t, 1, &[1], 4);
        assert_eq!(w.shape(), &[1, 4, 3]);
        assert_eq!(&w.data()[..6], &[6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert!(w.data()[6..].iter().all(|&v| v == 0.0));
        let sq = Tensor::from_vec(&[1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(
            window_of(&sq, 0, &[1, 2], 3).data(),
            &[1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn gather_picks_rows() {
        let src = Tensor::from_vec(&[3, 2], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let mut dst = Tensor::zeros(&[1, 2]);
        gather(&mut dst, &src, [2, 0, 2].into_iter());
        assert_eq!(
            (dst.shape(), dst.data()),
            (&[3, 2][..], &[4.0, 5.0, 0.0, 1.0, 4.0, 5.0][..])
        );
    }
}
