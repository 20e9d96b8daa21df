//! `gsdnet bench-frontend`: argument mapping of the text frontend benchmark
//! (`bench::frontend`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::backend::{self, BackendKind, BackendOptions};
use crate::bench::frontend::{frontend_table, run_frontend, Order};

#[derive(Debug, Args)]
pub struct BenchFrontendArgs {
    /// Frontend folder (frontend.toml + the set-up's files)
    #[arg(long, default_value = "models/frontends/all-minilm-l6-v2")]
    pub frontend: PathBuf,
    /// Engines, comma separated [default: every compiled one]
    #[arg(long, value_delimiter = ',')]
    pub backend: Option<Vec<BackendKind>>,
    /// Transcripts per encoder call, comma separated
    #[arg(long, value_delimiter = ',', default_value = "1,8,16")]
    pub batch: Vec<usize>,
    /// Timed calls per configuration
    #[arg(long, default_value_t = 30)]
    pub iters: usize,
    /// Engine threads (1 = one core, the target's setting)
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// One call of each engine in turn instead of each engine's calls back to back: every call
    /// then starts with the other engine's weights in the caches (a lone transcript after other
    /// work), not its own (a stream of transcripts)
    #[arg(long)]
    pub interleave: bool,
    /// Write the rows as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(a: BenchFrontendArgs) -> Result<()> {
    let backends = match a.backend {
        Some(b) => b,
        None => backend::compiled().to_vec(),
    };
    let opts = BackendOptions {
        threads: a.threads,
        ..BackendOptions::default()
    };
    let order = if a.interleave { Order::Interleaved } else { Order::Apart };
    eprintln!(
        "text frontend {}: 20-token transcript, {} threads, engines {}",
        a.frontend.display(),
        a.threads,
        order
    );
    let rows = run_frontend(&a.frontend, &backends, &a.batch, a.iters, &opts, order)
        .with_context(|| format!("benchmarking {}", a.frontend.display()))?;
    print!("{}", frontend_table(&rows));
    if let Some(path) = &a.json {
        let text =
            serde_json::to_string_pretty(&serde_json::json!({ "threads": a.threads, "order": order, "rows": rows }))?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
