//! `gsdnet check`: what this binary and device actually run. Reports the compiled backends, the
//! ONNX Runtime library loaded (version, path, TensorRT), the provider running each part (and why
//! preferred ones do not), golden-case parity of every part on this device, and the latency of
//! one window's worth of part calls.
//!
//! `run` never fails: every problem becomes a line of the report and makes `Report::ok` false,
//! so the command can print everything it found before exiting non-zero.

pub mod golden;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::{self, Backend, BackendKind, BackendOptions, OrtLibraryInfo, PartSpec};
use crate::tensor::Tensor;
use golden::{GoldenCase, OutputParity};

/// What to check: the parts from the manifest, the engine and its options, and the golden cases.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub backend: BackendKind,
    pub backend_opts: BackendOptions,
    pub parts: Vec<PartSpec>,
    /// Folder holding `<case>/case.toml`; None skips parity and latency.
    pub golden_dir: Option<PathBuf>,
    /// Calls of s_theta and of s_phi in one window (the manifest's sampler: steps, or twice the
    /// steps for Heun).
    pub steps: usize,
    /// Timed repetitions of one window; the median is reported.
    pub latency_runs: usize,
    /// The model's `[model] name`: golden cases recorded with another model are skipped.
    pub model_name: Option<String>,
}

impl CheckOptions {
    /// Options for the model folder `dir` (its manifest gives the parts and the SDE step count):
    /// what `gsdnet check` needs besides the board profile's engine settings.
    pub fn for_model(
        dir: &std::path::Path,
        backend: BackendKind,
        backend_opts: BackendOptions,
        golden_dir: Option<PathBuf>,
    ) -> Result<Self, crate::manifest::ManifestError> {
        let m = crate::manifest::Manifest::load(dir)?;
        let steps = m.sde.sampler.score_calls(m.sde.steps);
        let model_name = Some(m.model.name);
        Ok(CheckOptions {
            backend,
            backend_opts,
            parts: m.parts,
            golden_dir,
            steps,
            latency_runs: 5,
            model_name,
        })
    }
}

#[derive(Debug, Clone)]
pub struct PartReport {
    pub part: String,
    /// `Backend::provider()`, or the load error.
    pub provider: Result<String, String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Latency {
    pub case: String,
    pub steps: usize,
    pub runs: usize,
    pub median: Duration,
    pub min: Duration,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub compiled: Vec<BackendKind>,
    pub backend: BackendKind,
    /// Present when the ort backend is selected.
    pub ort_library: Option<Result<OrtLibraryInfo, String>>,
    pub parts: Vec<PartReport>,
    pub parity: Vec<OutputParity>,
    /// Cases or parts not compared, with the reason.
    pub skipped: Vec<String>,
    pub latency: Option<Latency>,
    pub errors: Vec<String>,
}

impl Report {
    /// Every part loaded, every compared output within tolerance, and no error.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
            && self.parts.iter().all(|p| p.provider.is_ok())
            && self.parity.iter().all(|p| p.within)
            && !matches!(self.ort_library, Some(Err(_)))
    }
}

/// Runs every check; see the module doc.
pub fn run(opts: &CheckOptions) -> Report {
    let mut report = Report {
        compiled: backend::compiled().to_vec(),
        backend: opts.backend,
        ort_library: None,
        parts: Vec::new(),
        parity: Vec::new(),
        skipped: Vec::new(),
        latency: None,
        errors: Vec::new(),
    };
    if opts.backend == BackendKind::Ort {
        report.ort_library = Some(backend::ort_library(&opts.backend_opts).map_err(|e| e.to_string()));
    }
    let mut loaded = load_parts(opts, &mut report.parts);
    let Some(dir) = &opts.golden_dir else { return report };
    let Some(cases) = golden_cases(dir, opts.model_name.as_deref(), &mut report) else {
        return report;
    };
    for case in &cases {
        for b in loaded.iter_mut() {
            match golden::part_parity(case, b.as_mut()) {
                Ok(Ok(rows)) => report.parity.extend(rows),
                Ok(Err(reason)) => report.skipped.push(reason),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }
    report.latency = window_latency(&cases, &mut loaded, opts, &mut report.errors);
    report
}

/// Every part loaded on the chosen backend; each gets a row in `parts` (its provider, or why it
/// did not load). Returns the loaded ones.
fn load_parts(opts: &CheckOptions, parts: &mut Vec<PartReport>) -> Vec<Box<dyn Backend>> {
    let mut loaded: Vec<Box<dyn Backend>> = Vec::new();
    for spec in &opts.parts {
        match backend::load(opts.backend, spec, &opts.backend_opts) {
            Ok(b) => {
                parts.push(PartReport {
                    part: spec.name.clone(),
                    provider: Ok(b.provider()),
                    notes: b.provider_notes(),
                });
                loaded.push(b);
            }
            Err(e) => parts.push(PartReport {
                part: spec.name.clone(),
                provider: Err(e.to_string()),
                notes: vec![],
            }),
        }
    }
    loaded
}

/// The golden cases under `dir` recorded with `model` (or with no model named); the others are
/// reported as skipped, and none at all is an error. None when the folder cannot be read.
fn golden_cases(dir: &Path, model: Option<&str>, report: &mut Report) -> Option<Vec<GoldenCase>> {
    let cases = match GoldenCase::discover(dir) {
        Ok(c) => c,
        Err(e) => {
            report.errors.push(format!("golden cases: {e}"));
            return None;
        }
    };
    let (cases, other): (Vec<GoldenCase>, Vec<GoldenCase>) = cases
        .into_iter()
        .partition(|c| model.is_none() || c.model.is_none() || c.model.as_deref() == model);
    for c in &other {
        let recorded = c.model.as_deref().unwrap_or("?");
        report
            .skipped
            .push(format!("case {}: recorded with model {recorded}", c.name));
    }
    if cases.is_empty() {
        report
            .errors
            .push(format!("no golden case (*/case.toml) under {}", dir.display()));
    }
    Some(cases)
}

/// One window = encoders, `steps` calls of (s_theta, s_phi), recon, fusion, on the first case that
/// holds every part's inputs. Graph and spectral maths and the sampler's own arithmetic (outside
/// ONNX) are not included: this is the engine's share of a window.
fn window_latency(
    cases: &[GoldenCase],
    loaded: &mut [Box<dyn Backend>],
    opts: &CheckOptions,
    errors: &mut Vec<String>,
) -> Option<Latency> {
    if loaded.is_empty() || opts.latency_runs == 0 {
        return None;
    }
    let case = cases
        .iter()
        .find(|c| loaded.iter().all(|b| has_inputs(c, b.as_ref())))?;
    let mut io = Vec::new();
    for b in loaded.iter() {
        match part_io(case, b.as_ref()) {
            Ok(x) => io.push(x),
            Err(e) => {
                errors.push(format!("latency: {e}"));
                return None;
            }
        }
    }
    let mut times = Vec::with_capacity(opts.latency_runs);
    for _ in 0..opts.latency_runs {
        let start = Instant::now();
        for (b, (inputs, alt, outputs)) in loaded.iter_mut().zip(io.iter_mut()) {
            let reps = if matches!(b.spec().name.as_str(), "s_theta" | "s_phi") {
                opts.steps
            } else {
                1
            };
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let alt_refs: Vec<&Tensor> = alt.iter().collect();
            for rep in 0..reps {
                let r = if rep % 2 == 0 { &refs } else { &alt_refs };
                if let Err(e) = b.run(r, outputs) {
                    errors.push(format!("latency: {e}"));
                    return None;
                }
            }
        }
        times.push(start.elapsed());
    }
    times.sort();
    Some(Latency {
        case: case.name.clone(),
        steps: opts.steps,
        runs: times.len(),
        median: times[times.len() / 2],
        min: times[0],
    })
}

fn has_inputs(case: &GoldenCase, b: &dyn Backend) -> bool {
    b.spec()
        .inputs
        .iter()
        .all(|s| case.find(&b.spec().name, &s.name, false).is_some())
}

/// Inputs that change at every reverse-SDE step; the others (conditioning) stay fixed per window.
const PER_STEP_INPUTS: [&str; 4] = ["x_t", "t", "adj_t", "lam_t"];

type PartIo = (Vec<Tensor>, Vec<Tensor>, Vec<Tensor>);

/// The case's inputs, a second set whose per-step inputs differ (alternating the two makes every
/// timed step hand the engine new per-step data, as the sampler does), and output buffers.
fn part_io(case: &GoldenCase, b: &dyn Backend) -> Result<PartIo, golden::GoldenError> {
    let spec = b.spec();
    let mut inputs = Vec::new();
    let mut alt = Vec::new();
    for s in &spec.inputs {
        // has_inputs() held for this case, so find() is Some.
        let name = case.find(&spec.name, &s.name, false).unwrap_or_default();
        let t = case.tensor(&name, &s.shape)?;
        let mut a = t.clone();
        if PER_STEP_INPUTS.contains(&s.name.as_str()) {
            a.data_mut().iter_mut().for_each(|v| *v = *v * 0.999 + 1e-4);
        }
        inputs.push(t);
        alt.push(a);
    }
    Ok((
        inputs,
        alt,
        spec.outputs.iter().map(|s| Tensor::zeros(&s.shape)).collect(),
    ))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let compiled: Vec<&str> = self.compiled.iter().map(|k| k.name()).collect();
        writeln!(f, "compiled backends: {}", compiled.join(", "))?;
        writeln!(f, "selected backend:  {:?}", self.backend)?;
        match &self.ort_library {
            Some(Ok(l)) => writeln!(
                f,
                "onnxruntime:       {} at {} (TensorRT: {})",
                l.version,
                l.path.display(),
                l.tensorrt.as_deref().unwrap_or("not loadable")
            )?,
            Some(Err(e)) => writeln!(f, "onnxruntime:       FAILED: {e}")?,
            None => {}
        }
        for p in &self.parts {
            match &p.provider {
                Ok(prov) => writeln!(f, "part {:<9} runs on {prov}", p.part)?,
                Err(e) => writeln!(f, "part {:<9} FAILED to load: {e}", p.part)?,
            }
            for n in &p.notes {
                writeln!(f, "    not used: {n}")?;
            }
        }
        for r in &self.parity {
            let tol = if r.named_tolerance { "" } else { " (default tolerance)" };
            writeln!(
                f,
                "parity {} {:<8} {:<16} max|diff| {:.3e}  atol {:.0e} rtol {:.0e}{tol}  {}",
                r.case,
                r.part,
                r.tensor,
                r.max_abs_diff,
                r.tolerance.atol,
                r.tolerance.rtol,
                if r.within { "ok" } else { "FAIL" }
            )?;
        }
        for s in &self.skipped {
            writeln!(f, "not compared: {s}")?;
        }
        if let Some(l) = &self.latency {
            writeln!(
                f,
                "window latency ({} score-network calls, case {}, parts only): median {:.2} ms, min {:.2} ms over {} runs",
                l.steps,
                l.case,
                l.median.as_secs_f64() * 1e3,
                l.min.as_secs_f64() * 1e3,
                l.runs
            )?;
        }
        for e in &self.errors {
            writeln!(f, "ERROR: {e}")?;
        }
        write!(f, "check: {}", if self.ok() { "OK" } else { "FAILED" })
    }
}
