//! Cost of the text frontend per utterance (`gsdnet bench-frontend`): tokenise + encoder + pooling
//! of a 20-token transcript, alone (batch 1) and batched, on every backend asked for, with the
//! issue 20 targets as ratios (ort <= 5 ms per utterance on one core; tract <= 2x ort). Nothing
//! is asserted: the table prints the ratios.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::config::Stats;
use crate::backend::{BackendKind, BackendOptions};
use crate::frontend::{FrontendError, TextFrontend};

/// A transcript of exactly 20 tokens ([CLS] and [SEP] included) with the MiniLM tokenizer.
pub const TRANSCRIPT_20: &str = "I can't believe you did that again, after I told you twice to stop.";
/// ort's target per utterance, batch 1, one core (issue 20).
pub const ORT_TARGET_MS: f64 = 5.0;
/// tract's target relative to ort.
pub const TRACT_VS_ORT: f64 = 2.0;

/// One measured (backend, batch): per-utterance milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct FrontendRow {
    pub backend: &'static str,
    pub provider: String,
    pub batch: usize,
    pub tokens: usize,
    /// Per utterance (a batch's time / its size), ms.
    pub per_utterance_ms: Stats,
    /// Tokenisation alone, per utterance, ms (p50).
    pub tokenize_ms: f64,
}

/// Measures `backends` x `batches` with `iters` timed calls each (after 3 warm-up calls).
pub fn run_frontend(
    dir: &Path,
    backends: &[BackendKind],
    batches: &[usize],
    iters: usize,
    opts: &BackendOptions,
) -> Result<Vec<FrontendRow>, FrontendError> {
    let mut rows = Vec::new();
    for &kind in backends {
        let mut front = TextFrontend::load(dir, kind, opts)?;
        let tokens = front.token_ids(TRANSCRIPT_20)?.len();
        for &batch in batches {
            front.set_max_batch(batch);
            let texts = vec![TRANSCRIPT_20; batch];
            for _ in 0..3 {
                front.embed(&texts)?;
            }
            let mut per = Vec::with_capacity(iters);
            let mut tok = Vec::with_capacity(iters);
            for _ in 0..iters.max(1) {
                let t0 = Instant::now();
                for t in &texts {
                    front.token_ids(t)?;
                }
                tok.push(t0.elapsed().as_secs_f64() * 1e3 / batch as f64);
                let t0 = Instant::now();
                front.embed(&texts)?;
                per.push(t0.elapsed().as_secs_f64() * 1e3 / batch as f64);
            }
            tok.sort_by(f64::total_cmp);
            rows.push(FrontendRow {
                backend: kind.name(),
                provider: front.provider(),
                batch,
                tokens,
                per_utterance_ms: Stats::of(&mut per),
                tokenize_ms: tok[tok.len() / 2],
            });
        }
    }
    Ok(rows)
}

/// The table, with each row's ratio to its target: ort against `ORT_TARGET_MS`, tract against
/// `TRACT_VS_ORT` x ort at the same batch (when ort was measured).
pub fn frontend_table(rows: &[FrontendRow]) -> String {
    let mut out = String::from("backend  batch  tokens  p50 ms/utt  p99 ms/utt  tokenise ms  target ms  p50/target\n");
    for r in rows {
        let ort = rows.iter().find(|o| o.backend == "ort" && o.batch == r.batch);
        let target = match (r.backend, ort) {
            ("ort", _) => Some(ORT_TARGET_MS),
            (_, Some(o)) => Some(TRACT_VS_ORT * o.per_utterance_ms.p50_ms),
            _ => None,
        };
        let (t, ratio) = match target {
            Some(t) => (format!("{t:.2}"), format!("{:.2}", r.per_utterance_ms.p50_ms / t)),
            None => ("-".into(), "-".into()),
        };
        out += &format!(
            "{:<7}  {:>5}  {:>6}  {:>10.3}  {:>10.3}  {:>11.4}  {:>9}  {:>10}\n",
            r.backend, r.batch, r.tokens, r.per_utterance_ms.p50_ms, r.per_utterance_ms.p99_ms, r.tokenize_ms, t, ratio
        );
    }
    out
}
