//! `gsdnet check`: what this binary and this machine actually run (compiled backends, the ONNX
//! Runtime library, the provider of each part), golden parity on this device and the latency of
//! one window. The work is `check::run`; this file only maps arguments to `CheckOptions`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::backend::{BackendKind, BackendOptions, ProviderKind};
use crate::check::{self, CheckOptions};
use crate::paths::{bundled, DEFAULT_MODEL, GOLDEN_DIR};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Model folder with manifest.toml [default: the bundled models/gsdnet-mosi]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Engine to check: tract or ort
    #[arg(long, default_value = "tract")]
    pub backend: BackendKind,
    /// ONNX Runtime execution providers in order of preference, e.g. tensorrt,cuda,cpu
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    pub providers: Vec<ProviderKind>,
    /// Path of libonnxruntime.so [default: $ORT_DYLIB_PATH]
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// Fail instead of falling back to the CPU provider
    #[arg(long)]
    pub require_accelerator: bool,
    /// TensorRT engine and timing cache folder
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Golden cases folder [default: the bundled tests/golden when present]; `none` skips parity
    #[arg(long)]
    pub golden: Option<PathBuf>,
    /// Engine threads (0 = engine's choice)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn run_check(a: CheckArgs) -> Result<()> {
    let model_dir = a.model.clone().unwrap_or_else(|| bundled(DEFAULT_MODEL));
    let golden_dir = match &a.golden {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p.clone()),
        None => Some(bundled(GOLDEN_DIR)).filter(|p| p.is_dir()),
    };
    let opts = BackendOptions {
        threads: a.threads,
        providers: a.providers.clone(),
        ort_library: a.ort_library.clone(),
        require_accelerator: a.require_accelerator,
        cache_dir: a.cache_dir.clone(),
        ..BackendOptions::default()
    };
    let copts = CheckOptions::for_model(&model_dir, a.backend, opts, golden_dir)
        .with_context(|| format!("loading model {}", model_dir.display()))?;
    let report = check::run(&copts);
    print!("{report}");
    if !report.ok() {
        bail!("check failed (see the report above)");
    }
    Ok(())
}
