//! The model-defined layout of a manifest: `[dims]`, `[modalities]`, `[model] classes`,
//! `[normalisation]` checked into settings, and DESIGN.md's part I/O for that layout.

use std::collections::BTreeMap;

use super::{io, Dims, Normalisation, RawClasses, RawDims, RawNorm, MAX_CLASSES, MAX_CLASS_NAME};
use crate::backend::TensorSpec;
use crate::modality::{Modalities, Modality, MAX_FEATURE_SIZE};

/// DESIGN.md's inputs and outputs of `part` for a model with `mods`, `classes` classes, a
/// regression head or not, and `dims` (M = `mods.count()` slots in canonical order).
pub fn expected_io(
    part: &str,
    mods: &Modalities,
    classes: usize,
    has_regression: bool,
    d: &Dims,
) -> Option<(Vec<TensorSpec>, Vec<TensorSpec>)> {
    let (w, l, k, m) = (d.window, d.latent, d.k, mods.count());
    let lat = [1, m, w, l];
    let feats: Vec<TensorSpec> = mods
        .iter()
        .map(|x| io(x.name(), &[1, w, mods.sizes()[x.index()]]))
        .collect();
    let (avail, mask) = (io("avail", &[1, w, m]), io("node_mask", &[1, w]));
    Some(match part {
        "encoders" => (feats, vec![io("h", &lat)]),
        "s_theta" => (
            vec![
                io("x_t", &lat),
                io("t", &[1]),
                io("cond", &lat),
                avail,
                io("adj_t", &[1, m, w, w]),
                mask,
            ],
            vec![io("score", &lat)],
        ),
        "s_phi" => (
            vec![
                io("lam_t", &[1, m, k]),
                io("t", &[1]),
                io("lam_obs", &[1, m, k]),
                io("u", &[1, w, k]),
                io("cond", &lat),
                avail,
                mask,
            ],
            vec![io("score", &[1, m, k])],
        ),
        "recon" => (vec![io("x", &lat)], feats),
        "fusion" => {
            let mut outs = vec![io("logits", &[1, w, classes])];
            if has_regression {
                outs.push(io("reg", &[1, w, 1]));
            }
            (vec![io("x", &lat), avail, io("adj", &[1, 2, w, w]), mask], outs)
        }
        _ => return None,
    })
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
        let m = Modality::from_name(name).ok_or_else(|| {
            format!("[modalities] `{name}` is not a modality (text, audio, visual)")
        })?;
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
    if !(2..=MAX_CLASSES).contains(&classes.len()) {
        return Err(format!(
            "[model] classes: a model has 2 to {MAX_CLASSES} classes, got {}",
            classes.len()
        ));
    }
    for (i, c) in classes.iter().enumerate() {
        if c.is_empty() || c.len() > MAX_CLASS_NAME || c.chars().any(char::is_control) {
            return Err(format!(
                "[model] classes: name {i} `{}` must be 1 to {MAX_CLASS_NAME} bytes, no control characters",
                c.escape_debug()
            ));
        }
        if classes[..i].contains(c) {
            return Err(format!("[model] classes: `{c}` appears twice"));
        }
    }
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
                return Err(format!(
                    "[normalisation] {key} has {} values, expected {want}",
                    v.len()
                ));
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

