//! Cost of the text frontend per utterance (`gsdnet bench-frontend`): tokenise + encoder + pooling
//! of a 20-token transcript, alone (batch 1) and batched, on every backend asked for, with the
//! issue 20 targets as ratios (ort <= 5 ms per utterance on one core; tract <= 2x ort), with the
//! engines' calls apart (hot caches) or interleaved (each call after the other engine's). Nothing
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

/// How the engines take turns within one batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Each engine's calls back to back: its weights stay in the caches between calls, as in a
    /// stream of transcripts.
    Apart,
    /// One call of each engine in turn: every call starts after the other engine's run has
    /// evicted its weights, as a lone transcript that arrives after other work does.
    Interleaved,
}

impl std::fmt::Display for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Order::Apart => "apart (each engine's calls back to back)",
            Order::Interleaved => "interleaved (one call of each engine in turn)",
        })
    }
}

/// Measures `backends` x `batches` with `iters` timed calls each (after 3 warm-up calls), the
/// engines taking turns as `order` says.
pub fn run_frontend(
    dir: &Path,
    backends: &[BackendKind],
    batches: &[usize],
    iters: usize,
    opts: &BackendOptions,
    order: Order,
) -> Result<Vec<FrontendRow>, FrontendError> {
    let mut fronts = backends
        .iter()
        .map(|&kind| TextFrontend::load(dir, kind, opts).map(|f| (kind, f)))
        .collect::<Result<Vec<_>, _>>()?;
    let iters = iters.max(1);
    let mut rows = Vec::new();
    for &batch in batches {
        let texts = vec![TRANSCRIPT_20; batch];
        let mut times = vec![Timings::default(); fronts.len()];
        for (_, front) in &mut fronts {
            front.set_max_batch(batch);
            for _ in 0..3 {
                front.embed(&texts)?;
            }
        }
        match order {
            Order::Apart => {
                for ((_, front), t) in fronts.iter_mut().zip(&mut times) {
                    for _ in 0..iters {
                        t.call(front, &texts)?;
                    }
                }
            }
            Order::Interleaved => {
                for _ in 0..iters {
                    for ((_, front), t) in fronts.iter_mut().zip(&mut times) {
                        t.call(front, &texts)?;
                    }
                }
            }
        }
        for ((kind, front), t) in fronts.iter().zip(times) {
            rows.push(t.row(*kind, front, batch)?);
        }
    }
    Ok(rows)
}

/// One configuration's timed calls, per utterance, ms.
#[derive(Debug, Clone, Default)]
struct Timings {
    embed: Vec<f64>,
    tokenize: Vec<f64>,
}

impl Timings {
    /// Times tokenising `texts` and one `embed` call of them.
    fn call(&mut self, front: &mut TextFrontend, texts: &[&str]) -> Result<(), FrontendError> {
        let n = texts.len() as f64;
        let t0 = Instant::now();
        for t in texts {
            front.token_ids(t)?;
        }
        self.tokenize.push(t0.elapsed().as_secs_f64() * 1e3 / n);
        let t0 = Instant::now();
        front.embed(texts)?;
        self.embed.push(t0.elapsed().as_secs_f64() * 1e3 / n);
        Ok(())
    }

    fn row(mut self, kind: BackendKind, front: &TextFrontend, batch: usize) -> Result<FrontendRow, FrontendError> {
        Ok(FrontendRow {
            backend: kind.name(),
            provider: front.provider(),
            batch,
            tokens: front.token_ids(TRANSCRIPT_20)?.len(),
            per_utterance_ms: Stats::of(&mut self.embed),
            tokenize_ms: Stats::of(&mut self.tokenize).p50_ms,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(backend: &'static str, batch: usize, p50: f64) -> FrontendRow {
        let mut v = vec![p50];
        FrontendRow {
            backend,
            provider: String::new(),
            batch,
            tokens: 20,
            per_utterance_ms: Stats::of(&mut v),
            tokenize_ms: 0.1,
        }
    }

    /// ort is held to 5 ms, tract to twice ort at the same batch, and without ort tract has no
    /// target.
    #[test]
    fn the_table_holds_each_row_to_its_target() {
        let t = frontend_table(&[row("ort", 1, 4.0), row("tract", 1, 9.0), row("tract", 8, 6.0)]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].ends_with("5.00        0.80"), "{}", lines[1]);
        assert!(lines[2].ends_with("8.00        1.12"), "{}", lines[2]);
        assert!(lines[3].ends_with("-           -"), "{}", lines[3]);
    }

    /// Both orders give one row per engine and batch, each with a time.
    #[test]
    fn both_orders_measure_every_engine_and_batch() {
        let Some(config) = crate::frontend::test_config() else {
            return;
        };
        for order in [Order::Apart, Order::Interleaved] {
            let rows = run_frontend(
                &config.dir,
                &[BackendKind::Tract],
                &[1, 2],
                2,
                &BackendOptions::default(),
                order,
            )
            .expect("bench");
            let got: Vec<(&str, usize, usize)> = rows.iter().map(|r| (r.backend, r.batch, r.tokens)).collect();
            assert_eq!(got, [("tract", 1, 20), ("tract", 2, 20)]);
            assert!(rows
                .iter()
                .all(|r| r.per_utterance_ms.p50_ms > 0.0 && r.per_utterance_ms.p99_ms >= r.per_utterance_ms.p50_ms));
        }
    }
}
