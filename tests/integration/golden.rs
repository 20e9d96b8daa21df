//! Golden parity with the Python reference (`python/gsdnet_torch/make_golden.py`): for every case directory
//! under `tests/golden/` with a `case.toml`, each ONNX part on the case's own inputs, the graph,
//! the spectra, the sampler's step-0 calls and the whole pipeline (with the case's recorded
//! noise) must match within the tolerance the case names for each tensor. Cases store the valid
//! region of each window axis: inputs are zero-padded to `full_shape`, outputs compared on the
//! stored region (docs/DESIGN.md, "Golden cases").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::util::{read_f32, repo};
use gsdnet_edge::backend::{self, Backend, BackendError, BackendKind, BackendOptions, PartSpec};
use gsdnet_edge::check::golden::{crop, pad};
use gsdnet_edge::diffusion::{RecordedNoise, SamplerKind};
use gsdnet_edge::manifest::Manifest;
use gsdnet_edge::model::Model;
use gsdnet_edge::pipeline::{Completion, Pipeline, Utterance, Window};
use gsdnet_edge::tensor::Tensor;
use serde::Deserialize;

#[derive(Deserialize)]
struct TensorEntry {
    file: String,
    shape: Vec<usize>,
    full_shape: Option<Vec<usize>>,
}

/// A case tensor as the pipeline sees it (zero-padded to `full`) and the region the case stores.
struct Stored {
    full: Vec<usize>,
    stored: Vec<usize>,
    data: Vec<f32>,
}

impl Stored {
    /// The stored region of `got`, a tensor of the full shape.
    fn region(&self, got: &[f32]) -> Result<Vec<f32>, String> {
        crop(got, &self.full, &self.stored)
    }
}

#[derive(Deserialize, Clone, Copy)]
struct Tol {
    atol: f64,
    rtol: f64,
}

#[derive(Deserialize)]
struct CaseToml {
    meta: toml::Table,
    tensors: BTreeMap<String, TensorEntry>,
    tolerances: BTreeMap<String, Tol>,
}

struct Case {
    name: String,
    meta: toml::Table,
    tensors: BTreeMap<String, Stored>,
    tol: BTreeMap<String, Tol>,
    /// Tolerances checked so far; every named tolerance must be used.
    used: Vec<String>,
    failures: Vec<String>,
}

impl Case {
    fn load(dir: &Path) -> Case {
        let text = std::fs::read_to_string(dir.join("case.toml")).unwrap();
        let raw: CaseToml = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let tensors = raw
            .tensors
            .into_iter()
            .map(|(k, e)| {
                let data = read_f32(&dir.join(&e.file));
                let full = e.full_shape.unwrap_or_else(|| e.shape.clone());
                let data = pad(&data, &e.shape, &full).unwrap_or_else(|d| panic!("{}: {k}: {d}", dir.display()));
                (
                    k,
                    Stored {
                        full,
                        stored: e.shape,
                        data,
                    },
                )
            })
            .collect();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        Case {
            name,
            meta: raw.meta,
            tensors,
            tol: raw.tolerances,
            used: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn entry(&self, name: &str) -> &Stored {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("case {} has no tensor {name}", self.name))
    }

    /// Tensor `name` zero-padded to its full shape.
    fn get(&self, name: &str) -> &[f32] {
        &self.entry(name).data
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Tensor {
        Tensor::from_vec(shape, self.get(name).to_vec()).unwrap_or_else(|e| panic!("{}: {name}: {e}", self.name))
    }

    /// Compares `got` with the reference tensor `name` under the case's tolerance for it.
    fn check(&mut self, what: &str, name: &str, got: &[f32]) {
        let tol = *self
            .tol
            .get(name)
            .unwrap_or_else(|| panic!("case {} names no tolerance for {name}", self.name));
        self.used.push(name.to_string());
        let entry = self.entry(name);
        let (got, want) = match (entry.region(got), entry.region(&entry.data)) {
            (Ok(g), Ok(w)) => (g, w),
            (Err(e), _) | (_, Err(e)) => {
                self.failures.push(format!("{what} {name}: {} values: {e}", got.len()));
                return;
            }
        };
        let (got, want) = (&got[..], &want[..]);
        if let Some((i, x, y, _)) = crate::util::violation(got, want, tol.atol, tol.rtol) {
            let max = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            self.failures.push(format!(
                "{what} {name}: index {i}: rust {x} vs reference {y} (atol {}, rtol {}; max |diff| {max})",
                tol.atol, tol.rtol
            ));
        }
    }
}

fn model_dir() -> PathBuf {
    repo().join("models/gsdnet-mosi")
}

/// The model a case was recorded with: `models/<meta.model>` (CMU-MOSI's when unnamed).
fn case_model(c: &Case, cache: &mut BTreeMap<String, Manifest>) -> Manifest {
    let name = c
        .meta
        .get("model")
        .and_then(|v| v.as_str())
        .unwrap_or("gsdnet-mosi")
        .to_string();
    cache
        .entry(name.clone())
        .or_insert_with(|| Manifest::load(&repo().join("models").join(&name)).unwrap())
        .clone()
}

/// Names of the model's modalities in slot order.
fn slot_names(m: &Manifest) -> Vec<&'static str> {
    m.modalities.iter().map(|x| x.name()).collect()
}

/// `tests/golden`, or `GSDNET_GOLDEN_DIR` (to check cases regenerated elsewhere).
fn golden_dir() -> PathBuf {
    std::env::var_os("GSDNET_GOLDEN_DIR").map_or_else(|| repo().join("tests/golden"), PathBuf::from)
}

fn case_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Runs part `name` on `inputs` and returns its outputs.
fn run_part(m: &Manifest, name: &str, inputs: &[Tensor]) -> Vec<Tensor> {
    let spec = m.part(name).unwrap();
    let mut be = backend::load(BackendKind::Tract, spec, &BackendOptions::default()).unwrap();
    let mut outs: Vec<Tensor> = spec.outputs.iter().map(|s| Tensor::zeros(&s.shape)).collect();
    be.run(&inputs.iter().collect::<Vec<_>>(), &mut outs).unwrap();
    outs
}

fn check_parts(c: &mut Case, m: &Manifest) {
    let dm = m.dims;
    let (w, d, k, mm) = (dm.window, dm.latent, dm.k, m.modalities.count());
    let feats: Vec<Tensor> = m
        .modalities
        .iter()
        .map(|x| c.tensor(&format!("std_{}", x.name()), &[1, w, m.modalities.sizes()[x.index()]]))
        .collect();
    let h = run_part(m, "encoders", &feats);
    c.check("encoders", "h", h[0].data());
    let (x0, avail, mask) = (
        c.tensor("x0", &[1, mm, w, d]),
        c.tensor("avail", &[1, w, mm]),
        c.tensor("node_mask", &[1, w]),
    );
    let rec = run_part(m, "recon", std::slice::from_ref(&x0));
    for (o, n) in rec.iter().zip(slot_names(m)) {
        c.check("recon", &format!("recon_{n}"), o.data());
    }
    let fus = run_part(
        m,
        "fusion",
        &[x0, avail.clone(), c.tensor("adj_fusion", &[1, 2, w, w]), mask.clone()],
    );
    c.check("fusion", "logits", fus[0].data());
    if let Some(reg) = fus.get(1) {
        c.check("fusion", "reg", reg.data());
    }
    if c.has("s_theta_score") {
        let cond = c.tensor("cond", &[1, mm, w, d]);
        let ins = [
            c.tensor("s_theta_x_t", &[1, mm, w, d]),
            c.tensor("s_theta_t", &[1]),
            cond.clone(),
            avail.clone(),
            c.tensor("s_theta_adj_t", &[1, mm, w, w]),
            mask.clone(),
        ];
        c.check("s_theta", "s_theta_score", run_part(m, "s_theta", &ins)[0].data());
        let ins = [
            c.tensor("s_phi_lam_t", &[1, mm, k]),
            c.tensor("s_phi_t", &[1]),
            c.tensor("lam_obs", &[1, mm, k]),
            c.tensor("u", &[1, w, k]),
            cond,
            avail,
            mask,
        ];
        c.check("s_phi", "s_phi_score", run_part(m, "s_phi", &ins)[0].data());
    }
}

/// Wraps a backend and keeps the inputs of its first call.
struct Tap {
    inner: Box<dyn Backend>,
    first: Arc<Mutex<Option<Vec<Tensor>>>>,
}

impl Backend for Tap {
    fn spec(&self) -> &PartSpec {
        self.inner.spec()
    }
    fn provider(&self) -> String {
        self.inner.provider()
    }
    fn run(&mut self, inputs: &[&Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        let mut first = self.first.lock().unwrap();
        if first.is_none() {
            *first = Some(inputs.iter().map(|t| (*t).clone()).collect());
        }
        self.inner.run(inputs, outputs)
    }
}

/// The case's window: raw features of the model's modalities where `avail [W,M]` says observed.
fn window_of<'a>(c: &'a Case, n: usize, m: &Manifest) -> Window<'a> {
    let (avail, speaker) = (c.get("avail"), c.get("speaker"));
    let (mods, mm) = (m.modalities, m.modalities.count());
    let sizes = mods.sizes();
    let raw: [Option<&[f32]>; 3] =
        std::array::from_fn(|x| (sizes[x] > 0).then(|| c.get(gsdnet_edge::modality::Modality::ALL[x].name())));
    Window {
        utterances: (0..n)
            .map(|i| Utterance {
                speaker: speaker[i] as u32,
                features: std::array::from_fn(|x| {
                    let slot = mods.slot(gsdnet_edge::modality::Modality::ALL[x])?;
                    let f = raw[x]?;
                    (avail[i * mm + slot] > 0.5).then(|| &f[i * sizes[x]..(i + 1) * sizes[x]])
                }),
            })
            .collect(),
    }
}

fn check_pipeline(c: &mut Case, m: &Manifest) {
    let dm = m.dims;
    let n = c.meta["n_nodes"].as_integer().unwrap() as usize;
    let steps = c.meta.get("steps").and_then(|s| s.as_integer()).unwrap_or(0) as usize;
    let completion: Completion = c
        .meta
        .get("completion")
        .and_then(|s| s.as_str())
        .unwrap_or("gsdnet")
        .parse()
        .unwrap();
    let taps: Vec<Arc<Mutex<Option<Vec<Tensor>>>>> = (0..5).map(|_| Arc::new(Mutex::new(None))).collect();
    let parts: Vec<Box<dyn Backend>> = m
        .parts
        .iter()
        .zip(&taps)
        .map(|(spec, first)| {
            let inner = backend::load(BackendKind::Tract, spec, &BackendOptions::default()).unwrap();
            Box::new(Tap {
                inner,
                first: first.clone(),
            }) as Box<dyn Backend>
        })
        .collect();
    let model = Model::from_parts(m.clone(), BackendKind::Tract, parts).unwrap();
    // Cases name their integrator; older ones (no `sampler`) were recorded with Euler-Maruyama.
    let sampler: SamplerKind = c
        .meta
        .get("sampler")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("euler_maruyama_inpaint")
        .parse()
        .unwrap();
    let opts = gsdnet_edge::pipeline::PipelineOptions {
        steps: Some(steps.max(1)),
        sampler: Some(sampler),
        ..Default::default()
    };
    let mut pipe = Pipeline::new(model, &opts).unwrap();
    let mut noise = if c.has("zx_init") {
        RecordedNoise {
            zx_init: c.get("zx_init").to_vec(),
            zl_init: c.get("zl_init").to_vec(),
            // The ODE draws no per-step noise: its cases hold no `zx`, `zl`.
            zx: if c.has("zx") { c.get("zx").to_vec() } else { vec![] },
            zl: if c.has("zl") { c.get("zl").to_vec() } else { vec![] },
            steps: if c.has("zx") { c.entry("zx").full[0] } else { 0 },
        }
    } else {
        RecordedNoise {
            zx_init: vec![],
            zl_init: vec![],
            zx: vec![],
            zl: vec![],
            steps: 0,
        }
    };
    let win = window_of(c, n, m);
    let out = pipe
        .run(&win, completion, &mut noise)
        .unwrap_or_else(|e| panic!("case {}: {e}", c.name));
    assert_eq!(
        out.sampled,
        c.has("zx_init"),
        "case {}: sampler ran = {}",
        c.name,
        out.sampled
    );
    let it = pipe.intermediates();
    assert_eq!(
        it.window,
        pipe.bucket(n),
        "case {}: {n} utterances ran at window {}",
        c.name,
        it.window
    );
    eprintln!(
        "case {}: {n} utterances ran at window {} of W = {}",
        c.name, it.window, dm.window
    );
    let k = m.model.classes.len();
    let mut owned: Vec<(String, Vec<f32>)> = Vec::new();
    for (slot, name) in slot_names(m).into_iter().enumerate() {
        owned.push((format!("std_{name}"), it.inputs[slot].data().to_vec()));
        owned.push((format!("recon_{name}"), it.recon[slot].data().to_vec()));
    }
    if let Some(reg) = it.reg {
        owned.push(("reg".into(), reg.data().to_vec()));
    }
    let probs: Vec<f32> = out.utterances.iter().flat_map(|u| u.probs.iter().copied()).collect();
    let owned = owned.into_iter().chain(
        [
            ("h", it.h.data().to_vec()),
            ("cond", it.cond.data().to_vec()),
            ("adj_struct", it.spectral.adj.clone()),
            ("u", it.spectral.u.clone()),
            ("eig", it.spectral.eig.clone()),
            ("lam_obs", it.lam_obs.data().to_vec()),
            ("x0", it.x0.data().to_vec()),
            ("lam0", it.lam0.data().to_vec()),
            ("adj_fusion", it.adj_fusion.data().to_vec()),
            ("logits", it.logits.data().to_vec()),
            ("probs", probs_of_window(&probs, k, dm.window)),
        ]
        .map(|(n, v)| (n.to_string(), v)),
    );
    for (name, got) in owned {
        c.check("pipeline", &name, &got);
    }
    if c.has("s_theta_x_t") {
        let st = taps[1].lock().unwrap().take().expect("s_theta was called");
        // The pipeline runs at the window's bucket N; the case holds the parts' W view.
        let full = |t: &gsdnet_edge::tensor::Tensor, axes: &[usize]| {
            let mut to = t.shape().to_vec();
            axes.iter().for_each(|&a| to[a] = dm.window);
            pad(t.data(), t.shape(), &to).unwrap_or_else(|e| panic!("{e}"))
        };
        c.check("sampler step 0", "s_theta_x_t", &full(&st[0], &[2]));
        c.check("sampler step 0", "s_theta_adj_t", &full(&st[4], &[2, 3]));
        let sp = taps[2].lock().unwrap().take().expect("s_phi was called");
        c.check("sampler step 0", "s_phi_lam_t", sp[0].data());
        for (name, t) in [("s_theta_t", &st[1]), ("s_phi_t", &sp[1])] {
            if c.tol.contains_key(name) {
                c.check("sampler step 0", name, t.data());
            } else {
                assert_eq!(t.data(), c.get(name), "{name}");
            }
        }
    }
}

/// The pipeline's probabilities of the N valid utterances over K classes, zero-padded to the
/// window's W rows.
fn probs_of_window(probs: &[f32], k: usize, w: usize) -> Vec<f32> {
    pad(probs, &[probs.len() / k, k], &[w, k]).unwrap_or_else(|e| panic!("probs: {e}"))
}

/// Runs every check on the case in `dir`; returns its mismatches, each naming the case.
fn case_failures(dir: &Path, m: &Manifest) -> Vec<String> {
    let mut c = Case::load(dir);
    check_parts(&mut c, m);
    check_pipeline(&mut c, m);
    let unused: Vec<&String> = c
        .tol
        .keys()
        .filter(|k| !c.used.contains(k) && c.has(k) && !is_input_noise(k))
        .collect();
    assert!(
        unused.is_empty(),
        "case {}: tolerances never checked: {unused:?}",
        c.name
    );
    eprintln!(
        "case {}: {} comparisons, {} failures",
        c.name,
        c.used.len(),
        c.failures.len()
    );
    c.failures.iter().map(|f| format!("case {}: {f}", c.name)).collect()
}

#[test]
fn golden_cases_match_the_python_reference() {
    let dirs = case_dirs();
    assert!(!dirs.is_empty(), "no golden cases under {}", golden_dir().display());
    let mut models = BTreeMap::new();
    let report: Vec<String> = dirs
        .iter()
        .flat_map(|d| {
            let m = case_model(&Case::load(d), &mut models);
            case_failures(d, &m)
        })
        .collect();
    assert!(report.is_empty(), "golden mismatches:\n{}", report.join("\n"));
}

/// One stored value changed in a copy of a case (the last valid row of a cropped output, then
/// of a cropped input) must be reported, under the tensors it spoils.
#[test]
fn a_corrupted_stored_value_is_reported() {
    let m = Manifest::load(&model_dir()).unwrap();
    let src = repo().join("tests/golden/rate05_s5");
    for (file, expect) in [("recon_audio.f32", "recon recon_audio"), ("x0.f32", "fusion logits")] {
        let tmp = tempfile::tempdir().unwrap();
        let dst = tmp.path().join("rate05_s5");
        std::fs::create_dir(&dst).unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
        let path = dst.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 4;
        let v = f32::from_le_bytes(bytes[at..].try_into().unwrap()) + 1.0;
        bytes[at..].copy_from_slice(&v.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        let failures = case_failures(&dst, &m);
        assert!(
            failures.iter().any(|f| f.contains(expect)),
            "{file} corrupted, no `{expect}` failure in {failures:#?}"
        );
    }
}

/// Noise tensors are inputs replayed into the sampler; `rng_vectors` tests the generator.
fn is_input_noise(name: &str) -> bool {
    matches!(name, "zx_init" | "zl_init" | "zx" | "zl")
}

#[test]
fn golden_noise_is_the_seeded_stream() {
    use gsdnet_edge::diffusion::{Draw, NoiseSource, SeededNoise};
    for dir in case_dirs() {
        let c = Case::load(&dir);
        if !c.has("zx") {
            continue;
        }
        let conv = c.meta["conv_id"].as_str().unwrap();
        let seed = c.meta["seed"].as_integer().unwrap() as u64;
        let scenario = c.meta["scenario"].as_integer().unwrap() as u64;
        let wi = c.meta.get("window_index").and_then(|v| v.as_integer()).unwrap_or(0) as u64;
        let mut noise = SeededNoise::for_window(seed, scenario, conv, wi);
        // The stream draws whole [3, W, d] tensors; the case stores their valid rows.
        for (draw, name) in [(Draw::XInit, "zx_init"), (Draw::LamInit, "zl_init")] {
            let e = c.entry(name);
            let mut got = vec![0f32; e.data.len()];
            noise.fill(draw, &mut got).unwrap();
            assert_eq!(e.region(&got), e.region(&e.data), "case {}: {name}", c.name);
        }
        let zx = c.entry("zx");
        let last = zx.full[0] - 1;
        let mut got = vec![0f32; zx.full[1..].iter().product()];
        noise.fill(Draw::X(last), &mut got).unwrap();
        let per = zx.stored[1..].iter().product::<usize>();
        let want = &zx.region(&zx.data).unwrap()[last * per..];
        assert_eq!(
            crop(&got, &zx.full[1..], &zx.stored[1..]).unwrap(),
            want,
            "case {}: zx[{last}]",
            c.name
        );
    }
}
