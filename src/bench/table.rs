//! The text tables printed by `gsdnet bench` and `gsdnet-bench`: per-configuration latency
//! (whole window and per stage), bucketed vs padded speedups, and the batch mode. Column
//! layouts are part of the output contract; the JSON carries the same numbers unrounded.

use super::{BatchRow, BenchRow, Speedup, Stats};
use crate::diffusion::SamplerKind;

/// Bucketed vs padded p50 per (backend, size, steps).
pub fn speedup_table(sp: &[Speedup]) -> String {
    let mut s = format!(
        "{:<6} {:>3} {:>5} {:>6} {:>14} {:>14} {:>8}\n",
        "engine", "N", "steps", "bucket", "bucketed p50", "padded p50", "speedup"
    );
    for r in sp {
        s += &format!(
            "{:<6} {:>3} {:>5} {:>6} {:>14.3} {:>14.3} {:>7.2}x\n",
            r.backend, r.window, r.steps, r.bucket, r.bucketed_p50_ms, r.padded_p50_ms, r.speedup
        );
    }
    s
}

/// The batch mode's rows.
pub fn batch_table(rows: &[BatchRow]) -> String {
    let mut s = format!(
        "{:<6} {:>5} {:>3} {:>7} {:>17} {:>12} {:>10} {:>8} {:>9}\n",
        "engine", "steps", "B", "windows", "batch p50/p99", "ms/window", "windows/s", "vs B=1", "allocs/w"
    );
    for r in rows {
        s += &format!(
            "{:<6} {:>5} {:>3} {:>7} {:>17} {:>12.3} {:>10.1} {:>8} {:>9}\n",
            r.backend,
            r.steps,
            r.batch,
            r.windows,
            format!("{:.3}/{:.3}", r.per_batch.p50_ms, r.per_batch.p99_ms),
            r.per_window_p50_ms,
            r.windows_per_s,
            r.speedup_vs_1.map_or("-".to_string(), |x| format!("{x:.2}x")),
            r.allocs_per_window.map_or("n/a".to_string(), |a| format!("{a:.0}")),
        );
    }
    s
}

/// A readable table of `rows`: whole-window and per-stage p50 / p99 in ms.
pub fn table(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:<6} {:>8} {:>3} {:>3} {:>4} {:>5} {:>6} {:>17} {:>17} {:>17} {:>17} {:>17} {:>17} {:>9}\n",
        "engine",
        "layout",
        "N",
        "at",
        "int",
        "steps",
        "iters",
        "window p50/p99",
        "encoders",
        "graph+eigen",
        "sampler step",
        "recon",
        "fusion",
        "allocs/w"
    );
    for r in rows {
        s += &table_line(r);
    }
    s
}

/// One line of `table` (columns as its header).
fn table_line(r: &BenchRow) -> String {
    let stage = |name: &str| r.stages.iter().find(|(n, _)| n == name).map(|(_, st)| *st);
    let cell = |st: Option<Stats>| st.map_or("-".to_string(), |st| format!("{:.3}/{:.3}", st.p50_ms, st.p99_ms));
    let allocs = r.allocs_per_window.map_or("n/a".to_string(), |a| format!("{a:.0}"));
    format!(
        "{:<6} {:>8} {:>3} {:>3} {:>4} {:>5} {:>6} {:>17} {:>17} {:>17} {:>17} {:>17} {:>17} {:>9}\n",
        r.backend,
        r.layout,
        r.window,
        r.bucket,
        if r.sampler == SamplerKind::PfOdeHeun.name() {
            "heun"
        } else {
            "em"
        },
        r.steps,
        r.iters,
        cell(Some(r.total)),
        cell(stage("encoders")),
        cell(stage("graph+eigen")),
        cell(Some(r.sampler_step)),
        cell(stage("recon")),
        cell(stage("fusion")),
        allocs
    )
}
