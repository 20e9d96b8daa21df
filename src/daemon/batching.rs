//! How many waiting windows the inference thread runs at once: the latency-budget decision (a
//! pure function of the waiting windows' ages and a run-time estimate) and the estimate itself.
//!
//! Policy (docs/PROTOCOL.md, "Queue"): the thread never waits for more windows to arrive; it
//! takes what is waiting, up to the runner's `max_batch`, and shrinks the batch until every
//! window of it that could still meet the latency budget alone (`age + t(1) <= budget`) still
//! meets it in the batch (`age + t(n) <= budget`). A window already past that point (overload)
//! does not limit the batch: holding it to one window at a time would make the ones behind it
//! late too, and batching is what catches up. A batch size with no estimate yet is allowed;
//! at least one window always runs.
//!
//! Estimate: an exponentially weighted mean of the measured run time of each batch size. For a
//! size not measured yet, the tightest bound the measured sizes give: a larger batch takes at
//! least as long (`t(n) <= t(m)` for `m >= n`), and a batch costs at most its windows run one
//! batch of `m` after another (`t(n) <= t(m) n / m` for `m < n`).

use std::time::Duration;

/// Weight of the newest measurement in the running mean.
const EWMA_WEIGHT: f64 = 0.25;

/// Running run-time estimate per batch size 1..=max (microseconds).
#[derive(Debug, Clone)]
pub struct RunCost {
    /// `mean_us[n - 1]`: mean run time of a batch of n; `None` until one ran.
    mean_us: Vec<Option<f64>>,
}

impl RunCost {
    pub fn new(max_batch: usize) -> Self {
        RunCost {
            mean_us: vec![None; max_batch.max(1)],
        }
    }

    /// The largest batch size it tracks.
    pub fn max_batch(&self) -> usize {
        self.mean_us.len()
    }

    /// Records that a batch of `n` windows took `took` (sizes beyond `max_batch` are ignored).
    pub fn record(&mut self, n: usize, took: Duration) {
        let Some(slot) = n.checked_sub(1).and_then(|i| self.mean_us.get_mut(i)) else {
            return;
        };
        let us = took.as_secs_f64() * 1e6;
        *slot = Some(match *slot {
            Some(mean) => mean + EWMA_WEIGHT * (us - mean),
            None => us,
        });
    }

    /// Expected run time of a batch of `n` (module doc); `None` when nothing was measured.
    pub fn expected(&self, n: usize) -> Option<Duration> {
        let n = n.max(1);
        let bound = |(i, mean): (usize, &Option<f64>)| {
            let m = i + 1;
            mean.map(|t| if m >= n { t } else { t * n as f64 / m as f64 })
        };
        let us = self.mean_us.iter().enumerate().filter_map(bound).reduce(f64::min)?;
        Some(Duration::from_nanos((us.max(0.0) * 1e3).round() as u64))
    }
}

/// How many of the waiting windows to run now. `ages[i]` is the time the i-th waiting window
/// (oldest first) has waited; the caller passes at most `max_batch` of them. Returns
/// 1..=`ages.len()` (0 only when nothing waits).
pub fn batch_size(budget: Duration, ages: &[Duration], cost: &RunCost) -> usize {
    if ages.len() <= 1 {
        return ages.len();
    }
    let single = cost.expected(1).unwrap_or(Duration::ZERO);
    // Windows that can meet the budget alone; the others do not limit the batch.
    let can_meet = |a: Duration| a.saturating_add(single) <= budget;
    for n in (2..=ages.len()).rev() {
        let Some(t) = cost.expected(n) else { return n };
        if ages[..n].iter().all(|&a| !can_meet(a) || a.saturating_add(t) <= budget) {
            return n;
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Batches of n measured at `base + per * n` ms.
    fn linear(max: usize, base: u64, per: u64) -> RunCost {
        let mut c = RunCost::new(max);
        for n in 1..=max {
            c.record(n, ms(base + per * n as u64));
        }
        c
    }

    #[test]
    fn with_nothing_measured_the_whole_batch_runs() {
        let c = RunCost::new(8);
        assert_eq!(c.expected(3), None);
        assert_eq!(batch_size(ms(250), &[ms(10_000); 8], &c), 8);
        assert_eq!(batch_size(ms(250), &[ms(0); 3], &c), 3);
        assert_eq!(batch_size(ms(250), &[ms(0)], &c), 1);
        assert_eq!(batch_size(ms(250), &[], &c), 0);
    }

    #[test]
    fn the_batch_shrinks_until_the_oldest_window_meets_the_budget() {
        let c = linear(8, 0, 20); // t(n) = 20 n ms
        let fresh = [ms(0); 8];
        assert_eq!(batch_size(ms(250), &fresh, &c), 8, "160 ms fits");
        let ages = [ms(150), ms(100), ms(0), ms(0), ms(0), ms(0), ms(0), ms(0)];
        assert_eq!(batch_size(ms(250), &ages, &c), 5, "150 + 100 <= 250 < 150 + 120");
        assert_eq!(batch_size(ms(250), &ages[..3], &c), 3, "never more than waits");
        let ages = [ms(225), ms(0), ms(0)];
        assert_eq!(
            batch_size(ms(250), &ages, &c),
            1,
            "225 + 20 fits alone, 225 + 40 does not"
        );
    }

    #[test]
    fn a_window_that_is_late_anyway_does_not_limit_the_batch() {
        let c = linear(8, 0, 20);
        // The oldest cannot make 250 ms even alone; the second can, with a batch of up to 4.
        let ages = [ms(400), ms(170), ms(0), ms(0), ms(0), ms(0)];
        assert_eq!(batch_size(ms(250), &ages, &c), 4);
        // Overload: everything waiting is late: batching catches up.
        assert_eq!(batch_size(ms(250), &[ms(300); 8], &c), 8);
    }

    #[test]
    fn unmeasured_sizes_are_bounded_by_the_measured_ones() {
        let mut c = RunCost::new(8);
        c.record(2, ms(30));
        assert_eq!(c.expected(1), Some(ms(30)), "a smaller batch takes at most as long");
        assert_eq!(c.expected(6), Some(ms(90)), "at most three batches of two");
        c.record(8, ms(60));
        assert_eq!(c.expected(6), Some(ms(60)), "the tighter bound: one batch of eight");
        // 200 + 60 > 250, but three windows are bounded by 1.5 batches of two: 200 + 45 fits.
        assert_eq!(
            batch_size(ms(250), &[ms(200), ms(0), ms(0), ms(0), ms(0), ms(0), ms(0), ms(0)], &c),
            3
        );
    }

    #[test]
    fn the_estimate_follows_the_measurements() {
        let mut c = RunCost::new(2);
        c.record(1, ms(40));
        assert_eq!(c.expected(1), Some(ms(40)));
        c.record(1, ms(80));
        assert_eq!(c.expected(1), Some(ms(50)), "40 + 0.25 (80 - 40)");
        c.record(0, ms(1));
        c.record(3, ms(1));
        assert_eq!(
            (c.expected(1), c.max_batch()),
            (Some(ms(50)), 2),
            "sizes out of range are ignored"
        );
    }
}
