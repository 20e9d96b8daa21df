//! The model-defined layout of a manifest: `[dims]`, `[modalities]`, `[model] classes`,
//! `[normalisation]` checked into settings, and DESIGN.md's part I/O for that layout.

use std::collections::BTreeMap;

use super::{Dims, Normalisation, RawClasses, RawDims, RawNorm};
use crate::backend::{Axis, TensorSpec};
use crate::capacity::{check_class_names, MAX_FEATURE_SIZE};
use crate::modality::{Modalities, Modality};

/// One axis of DESIGN.md's part I/O table: the batch, the window or a fixed size.
#[derive(Clone, Copy)]
enum D {
    B,
    W,
    F(usize),
}

/// DESIGN.md's inputs and outputs of `part` for a model with `mods`, `classes` classes, a
/// regression head or not, and `dims` (M = `mods.count()` slots in canonical order); with
/// `symbolic` the batch and window axes are `Axis::Batch` / `Axis::Window`, else fixed at 1 / W.
pub fn expected_io(
    part: &str,
    mods: &Modalities,
    classes: usize,
    has_regression: bool,
    d: &Dims,
    symbolic: bool,
) -> Option<(Vec<TensorSpec>, Vec<TensorSpec>)> {
    use D::{B, F, W};
    let (l, k, m) = (F(d.latent), F(d.k), F(mods.count()));
    let io = |name: &str, dims: &[D]| spec(name, dims, d.window, symbolic);
    let lat = [B, m, W, l];
    let feats: Vec<TensorSpec> = mods
        .iter()
        .map(|x| io(x.name(), &[B, W, F(mods.sizes()[x.index()])]))
        .collect();
    let (avail, mask) = (io("avail", &[B, W, m]), io("node_mask", &[B, W]));
    Some(match part {
        "encoders" => (feats, vec![io("h", &lat)]),
        "s_theta" => (
            vec![
                io("x_t", &lat),
                io("t", &[B]),
                io("cond", &lat),
                avail,
                io("adj_t", &[B, m, W, W]),
                mask,
            ],
            vec![io("score", &lat)],
        ),
        "s_phi" => (
            vec![
                io("lam_t", &[B, m, k]),
                io("t", &[B]),
                io("lam_obs", &[B, m, k]),
                io("u", &[B, W, k]),
                io("cond", &lat),
                avail,
                mask,
            ],
            vec![io("score", &[B, m, k])],
        ),
        "recon" => (vec![io("x", &lat)], feats),
        "fusion" => {
            let mut outs = vec![io("logits", &[B, W, F(classes)])];
            if has_regression {
                outs.push(io("reg", &[B, W, F(1)]));
            }
            (vec![io("x", &lat), avail, io("adj", &[B, F(2), W, W]), mask], outs)
        }
        _ => return None,
    })
}

fn spec(name: &str, dims: &[D], window: usize, symbolic: bool) -> TensorSpec {
    let shape = dims.iter().map(|x| match x {
        D::B => 1,
        D::W => window,
        D::F(n) => *n,
    });
    let axes = dims.iter().map(|x| match (x, symbolic) {
        (D::B, true) => Axis::Batch,
        (D::W, true) => Axis::Window,
        _ => Axis::Fixed,
    });
    let (shape, axes): (Vec<usize>, Vec<Axis>) = (shape.collect(), axes.collect());
    TensorSpec::new(name, &shape, &axes)
}

/// The window sizes a model runs at: `[dims] buckets` (strictly increasing, 1..=W, ending at
/// W; only for parts with a symbolic window axis), absent = `[W]`.
pub(super) fn check_buckets(raw: Option<&[usize]>, window: usize, symbolic: bool) -> Result<Vec<usize>, String> {
    let Some(b) = raw else { return Ok(vec![window]) };
    let increasing = b.windows(2).all(|p| p[0] < p[1]);
    if b.is_empty() || !increasing || b[0] == 0 || b.last() != Some(&window) {
        return Err(format!(
            "[dims] buckets = {b:?}: need strictly increasing sizes from 1 up to and ending at window = {window}"
        ));
    }
    if b.len() > 1 && !symbolic {
        return Err(format!(
            "[dims] buckets = {b:?}: the parts' shapes are fixed (no \"window\" axis), so the only size is {window}"
        ));
    }
    Ok(b.to_vec())
}

pub(super) fn check_dims(d: &RawDims) -> Result<Dims, String> {
    if let Some(key) = d.other.keys().next() {
        let hint = if Modality::from_name(key).is_some() {
            ": feature sizes belong in [modalities] (e.g. `text = 300`)"
        } else {
            ""
        };
        return Err(format!("[dims] has an unknown key `{key}`{hint}"));
    }
    if d.window == 0 || d.latent == 0 || d.k == 0 || d.k > d.window {
        return Err(format!(
            "[dims] need window, latent, k > 0 and k <= window, got window {}, latent {}, k {}",
            d.window, d.latent, d.k
        ));
    }
    Ok(Dims {
        window: d.window,
        latent: d.latent,
        k: d.k,
    })
}

pub(super) fn check_modalities(raw: &BTreeMap<String, usize>) -> Result<Modalities, String> {
    let mut sizes = [0usize; 3];
    for (name, &size) in raw {
        let m = Modality::from_name(name)
            .ok_or_else(|| format!("[modalities] `{name}` is not a modality (text, audio, visual)"))?;
        if !(1..=MAX_FEATURE_SIZE).contains(&size) {
            return Err(format!(
                "[modalities] {name} = {size}: sizes must be 1..={MAX_FEATURE_SIZE}"
            ));
        }
        sizes[m.index()] = size;
    }
    Modalities::new(sizes).ok_or_else(|| {
        format!(
            "[modalities] lists {} modalities; a model needs two or three of text, audio, visual",
            raw.len()
        )
    })
}

pub(super) fn check_classes(raw: RawClasses) -> Result<Vec<String>, String> {
    let classes: Vec<String> = match raw {
        RawClasses::Count(n) => (0..n).map(|i| i.to_string()).collect(),
        RawClasses::Names(v) => v,
    };
    check_class_names(&classes).map_err(|e| format!("[model] classes: {e}"))?;
    Ok(classes)
}

pub(super) fn check_norm(mut n: RawNorm, mods: &Modalities) -> Result<Normalisation, String> {
    let mut norm = Normalisation {
        mean: Default::default(),
        std: Default::default(),
    };
    for m in mods.iter() {
        let want = mods.sizes()[m.index()];
        for kind in ["mean", "std"] {
            let key = format!("{}_{kind}", m.name());
            let v = n
                .remove(&key)
                .ok_or_else(|| format!("[normalisation] is missing {key}"))?;
            if v.len() != want {
                return Err(format!("[normalisation] {key} has {} values, expected {want}", v.len()));
            }
            if !v.iter().all(|x| x.is_finite()) {
                return Err(format!("[normalisation] {key} has a non-finite value"));
            }
            if kind == "std" && v.iter().any(|&s| s < 0.0) {
                return Err(format!("[normalisation] {key} has a negative value"));
            }
            match kind {
                "mean" => norm.mean[m.index()] = v,
                _ => norm.std[m.index()] = v,
            }
        }
    }
    if let Some(extra) = n.keys().next() {
        return Err(format!(
            "[normalisation] {extra}: not a statistic of the model's modalities ({})",
            mods.letters()
        ));
    }
    Ok(norm)
}
