//! Evaluation metrics: accuracy, support-weighted F1, per-class F1 and the confusion matrix of
//! the K-class labels, mean absolute error of a regression, and the confidence metrics of the probabilities (`Scored`, any number of classes K):
//! negative log-likelihood, Brier score, expected calibration error, selective prediction.
//! Definitions: docs/DESIGN.md "Evaluation metrics"; `python/gsdnet_ref/metrics.py` is the
//! reference twin.

use serde::Serialize;
use thiserror::Error;

/// Fraction of `pred[i] == truth[i]`; 0 for no samples.
pub fn accuracy(pred: &[u8], truth: &[u8]) -> f64 {
    if pred.is_empty() {
        return 0.0;
    }
    pred.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / pred.len() as f64
}

/// F1 of each class weighted by its support in `truth` (scikit-learn's `average="weighted"`;
/// a class with no predicted and no true samples contributes 0).
pub fn f1_weighted(pred: &[u8], truth: &[u8]) -> f64 {
    if pred.is_empty() {
        return 0.0;
    }
    let classes = pred.iter().chain(truth).copied().max().map_or(0, |m| m as usize + 1);
    let mut total = 0.0;
    for c in 0..classes as u8 {
        let tp = pred.iter().zip(truth).filter(|&(&p, &t)| p == c && t == c).count() as f64;
        let fp = pred.iter().zip(truth).filter(|&(&p, &t)| p == c && t != c).count() as f64;
        let support = truth.iter().filter(|&&t| t == c).count() as f64;
        let denom = 2.0 * tp + fp + (support - tp);
        let f1 = if denom > 0.0 { 2.0 * tp / denom } else { 0.0 };
        total += f1 * support;
    }
    total / truth.len() as f64
}

/// F1 of each class 0..k (0 for a class never predicted nor true).
pub fn f1_per_class(pred: &[u8], truth: &[u8], k: usize) -> Vec<f64> {
    let c = confusion(pred, truth, k);
    (0..k)
        .map(|i| {
            let tp = c[i][i] as f64;
            let predicted: u64 = c.iter().map(|row| row[i]).sum();
            let support: u64 = c[i].iter().sum();
            let denom = predicted as f64 + support as f64;
            if denom > 0.0 {
                2.0 * tp / denom
            } else {
                0.0
            }
        })
        .collect()
}

/// Confusion counts `[truth][pred]` over k classes; pairs with a class >= k are not counted.
pub fn confusion(pred: &[u8], truth: &[u8], k: usize) -> Vec<Vec<u64>> {
    let mut c = vec![vec![0u64; k]; k];
    for (&p, &t) in pred.iter().zip(truth) {
        if let Some(cell) = c.get_mut(t as usize).and_then(|row| row.get_mut(p as usize)) {
            *cell += 1;
        }
    }
    c
}

/// Mean of `|pred[i] - truth[i]|`; 0 for no samples.
pub fn mae(pred: &[f32], truth: &[f32]) -> f64 {
    if pred.is_empty() {
        return 0.0;
    }
    pred.iter()
        .zip(truth)
        .map(|(p, t)| f64::from((p - t).abs()))
        .sum::<f64>()
        / pred.len() as f64
}

/// Probability floor of the log-likelihood: -ln(max(p, P_FLOOR)) is at most 27.6.
pub const P_FLOOR: f64 = 1e-12;
/// Equal-width confidence bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

#[derive(Debug, Error, PartialEq)]
pub enum MetricsError {
    #[error("no utterances to score")]
    Empty,
    #[error("{len} probabilities are not whole rows of {k} classes (K must be >= 1)")]
    Shape { len: usize, k: usize },
    #[error("{rows} rows of probabilities but {labels} labels")]
    Labels { rows: usize, labels: usize },
    #[error("utterance {index}: label {label} is not one of the {k} classes")]
    Label { index: usize, label: u8, k: usize },
}

/// The confidence metrics of one (scenario, seed, completion), or their mean over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct ConfidenceMetrics {
    /// Mean negative log-likelihood of the true class (probability floor `P_FLOOR`).
    pub nll: f64,
    /// Mean multi-class Brier score, sum over classes of (p - onehot)^2.
    pub brier: f64,
    /// Expected calibration error, `ECE_BINS` equal-width confidence bins.
    pub ece: f64,
    /// Accuracy of the 50 % / 80 % most confident utterances.
    pub acc_cov50: f64,
    pub acc_cov80: f64,
    /// Area under the risk-coverage curve.
    pub aurc: f64,
}

impl ConfidenceMetrics {
    /// The metrics in table order: nll, brier, ece, acc_cov50, acc_cov80, aurc.
    pub fn values(&self) -> [f64; 6] {
        [
            self.nll,
            self.brier,
            self.ece,
            self.acc_cov50,
            self.acc_cov80,
            self.aurc,
        ]
    }

    fn from_values(v: [f64; 6]) -> Self {
        ConfidenceMetrics {
            nll: v[0],
            brier: v[1],
            ece: v[2],
            acc_cov50: v[3],
            acc_cov80: v[4],
            aurc: v[5],
        }
    }

    /// The element-wise mean (zeros for none).
    pub fn mean(all: &[ConfidenceMetrics]) -> Self {
        let mut sum = [0.0; 6];
        for m in all {
            for (s, v) in sum.iter_mut().zip(m.values()) {
                *s += v;
            }
        }
        let k = all.len().max(1) as f64;
        Self::from_values(sum.map(|s| s / k))
    }
}

/// Probabilities of n utterances over K classes (row-major [n, K], f32 as published) with
/// their true classes. Invariant (checked by `new`): n >= 1, K >= 1, every label < K. Every
/// metric is computed in f64 from the f32 probabilities.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    probs: &'a [f32],
    k: usize,
    truth: &'a [u8],
}

impl<'a> Scored<'a> {
    pub fn new(probs: &'a [f32], k: usize, truth: &'a [u8]) -> Result<Scored<'a>, MetricsError> {
        if k == 0 || !probs.len().is_multiple_of(k) {
            return Err(MetricsError::Shape { len: probs.len(), k });
        }
        let rows = probs.len() / k;
        if rows != truth.len() {
            return Err(MetricsError::Labels {
                rows,
                labels: truth.len(),
            });
        }
        if rows == 0 {
            return Err(MetricsError::Empty);
        }
        if let Some((index, &label)) = truth.iter().enumerate().find(|(_, &t)| usize::from(t) >= k) {
            return Err(MetricsError::Label { index, label, k });
        }
        Ok(Scored { probs, k, truth })
    }

    pub fn len(&self) -> usize {
        self.truth.len()
    }

    pub fn is_empty(&self) -> bool {
        self.truth.is_empty()
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.probs[i * self.k..(i + 1) * self.k]
    }

    /// (confidence = max probability, predicted class = the first argmax) of utterance `i`.
    pub fn confidence(&self, i: usize) -> (f64, usize) {
        let row = self.row(i);
        let mut best = 0;
        for (c, &p) in row.iter().enumerate() {
            if p > row[best] {
                best = c;
            }
        }
        (f64::from(row[best]), best)
    }

    fn correct(&self, i: usize) -> bool {
        self.confidence(i).1 == usize::from(self.truth[i])
    }

    /// mean_i -ln(max(p_i[y_i], P_FLOOR)).
    pub fn nll(&self) -> f64 {
        let total: f64 = (0..self.len())
            .map(|i| -f64::from(self.row(i)[usize::from(self.truth[i])]).max(P_FLOOR).ln())
            .sum();
        total / self.len() as f64
    }

    /// mean_i sum_k (p_ik - [k == y_i])^2, in [0, 2].
    pub fn brier(&self) -> f64 {
        let total: f64 = (0..self.len())
            .map(|i| {
                let y = usize::from(self.truth[i]);
                let row = self.row(i).iter().enumerate();
                row.map(|(c, &p)| (f64::from(p) - f64::from(u8::from(c == y))).powi(2))
                    .sum::<f64>()
            })
            .sum();
        total / self.len() as f64
    }

    /// Expected calibration error over `bins` equal-width bins (b/bins, (b+1)/bins], b =
    /// ceil(bins * c) - 1 clamped to [0, bins - 1] (c = 0 falls in bin 0): sum over non-empty
    /// bins of |B|/n * |accuracy(B) - mean confidence(B)|.
    pub fn ece(&self, bins: usize) -> f64 {
        let bins = bins.max(1);
        let mut count = vec![0usize; bins];
        let mut hits = vec![0usize; bins];
        let mut conf = vec![0.0f64; bins];
        for i in 0..self.len() {
            let (c, _) = self.confidence(i);
            let b = ((c * bins as f64).ceil() - 1.0).clamp(0.0, (bins - 1) as f64) as usize;
            count[b] += 1;
            hits[b] += usize::from(self.correct(i));
            conf[b] += c;
        }
        let n = self.len() as f64;
        (0..bins)
            .filter(|&b| count[b] > 0)
            .map(|b| {
                let m = count[b] as f64;
                m / n * (hits[b] as f64 / m - conf[b] / m).abs()
            })
            .sum()
    }

    /// Correctness in order of confidence descending, ties in utterance order (stable sort).
    fn ranked_correct(&self) -> Vec<bool> {
        let conf: Vec<f64> = (0..self.len()).map(|i| self.confidence(i).0).collect();
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| conf[b].total_cmp(&conf[a]));
        order.into_iter().map(|i| self.correct(i)).collect()
    }

    /// Accuracy of the ceil(percent * n / 100) (at least 1) most confident utterances.
    pub fn acc_at_coverage(&self, percent: usize) -> f64 {
        let kept = kept(self.len(), percent);
        let hits = self.ranked_correct().iter().take(kept).filter(|&&c| c).count();
        hits as f64 / kept as f64
    }

    /// Area under the risk-coverage curve: mean over k = 1..n of the error rate of the k most
    /// confident utterances.
    pub fn aurc(&self) -> f64 {
        let mut errors = 0usize;
        let mut total = 0.0;
        for (k, c) in self.ranked_correct().into_iter().enumerate() {
            errors += usize::from(!c);
            total += errors as f64 / (k + 1) as f64;
        }
        total / self.len() as f64
    }

    pub fn confidence_metrics(&self) -> ConfidenceMetrics {
        ConfidenceMetrics {
            nll: self.nll(),
            brier: self.brier(),
            ece: self.ece(ECE_BINS),
            acc_cov50: self.acc_at_coverage(50),
            acc_cov80: self.acc_at_coverage(80),
            aurc: self.aurc(),
        }
    }
}

/// ceil(percent * n / 100) in integers (exact for any n), at least 1.
pub fn kept(n: usize, percent: usize) -> usize {
    (percent * n).div_ceil(100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_class_f1_and_confusion_by_hand() {
        // truth 0 0 1 2 2 2, pred 0 1 1 2 2 0 (K = 4: class 3 absent everywhere).
        let (pred, truth) = ([0u8, 1, 1, 2, 2, 0], [0u8, 0, 1, 2, 2, 2]);
        let c = confusion(&pred, &truth, 4);
        assert_eq!(c[0], [1, 1, 0, 0]);
        assert_eq!(c[1], [0, 1, 0, 0]);
        assert_eq!(c[2], [1, 0, 2, 0]);
        assert_eq!(c[3], [0, 0, 0, 0]);
        let f = f1_per_class(&pred, &truth, 4);
        // class 0: tp 1, predicted 2, support 2 -> 0.5; class 1: tp 1, pred 2, sup 1 -> 2/3;
        // class 2: tp 2, pred 2, sup 3 -> 0.8; class 3: 0.
        let want = [0.5, 2.0 / 3.0, 0.8, 0.0];
        assert!(f.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{f:?}");
        let weighted = (0.5 * 2.0 + 2.0 / 3.0 + 0.8 * 3.0) / 6.0;
        assert!((f1_weighted(&pred, &truth) - weighted).abs() < 1e-12);
    }

    #[test]
    fn known_values() {
        let truth = [1, 1, 1, 0, 0];
        let pred = [1, 1, 0, 0, 1];
        assert!((accuracy(&pred, &truth) - 0.6).abs() < 1e-12);
        // class 1: p = 2/3, r = 2/3, f1 = 2/3 (support 3); class 0: p = 1/2, r = 1/2 (support 2).
        let want = (2.0 / 3.0 * 3.0 + 0.5 * 2.0) / 5.0;
        assert!((f1_weighted(&pred, &truth) - want).abs() < 1e-12);
        assert!((mae(&[1.0, -1.0], &[0.5, 1.0]) - 1.25).abs() < 1e-12);
        assert_eq!(f1_weighted(&truth, &truth), 1.0);
    }

    fn close(got: f64, want: f64, what: &str) {
        assert!((got - want).abs() < 1e-12, "{what}: {got} vs {want}");
    }

    /// K = 2, five utterances: a tie of probabilities (row 3: 0.5 / 0.5, predicted 0) and a
    /// tie of confidences (rows 1 and 4, 0.75: row 1 ranks first). Every value is exact in f32.
    const P2: [f32; 10] = [0.875, 0.125, 0.25, 0.75, 0.375, 0.625, 0.5, 0.5, 0.25, 0.75];
    const Y2: [u8; 5] = [0, 0, 1, 1, 1];

    #[test]
    fn confidence_metrics_by_hand_k2_with_ties() {
        let s = Scored::new(&P2, 2, &Y2).unwrap();
        let nll = -(0.875f64.ln() + 0.25f64.ln() + 0.625f64.ln() + 0.5f64.ln() + 0.75f64.ln()) / 5.0;
        close(s.nll(), nll, "nll");
        // 0.03125 + 1.125 + 0.28125 + 0.5 + 0.125
        close(s.brier(), 2.0625 / 5.0, "brier");
        // 15 bins: 0.875 -> 13, 0.75 -> 11 (rows 1, 4: accuracy 1/2), 0.625 -> 9, 0.5 -> 7.
        close(s.ece(15), (0.125 + 2.0 * 0.25 + 0.375 + 0.5) / 5.0, "ece 15");
        // 4 bins (exact edges), right-closed: 0.75 joins 0.625 in (0.5, 0.75], 0.5 is in
        // (0.25, 0.5].
        let mid = (2.0f64 / 3.0 - (0.75 + 0.625 + 0.75) / 3.0).abs() * 3.0 / 5.0;
        close(s.ece(4), 0.125 / 5.0 + mid + 0.5 / 5.0, "ece 4");
        // Ranked: row 0 (right), 1 (wrong; before row 4, same confidence), 4, 2 (right), 3 (wrong).
        close(s.acc_at_coverage(40), 0.5, "acc@40 (the confidence tie)");
        close(s.acc_at_coverage(50), 2.0 / 3.0, "acc@50: ceil(2.5) = 3 kept");
        close(s.acc_at_coverage(80), 0.75, "acc@80");
        close(s.acc_at_coverage(100), 0.6, "acc@100 = accuracy");
        close(
            s.aurc(),
            (0.0 + 1.0 / 2.0 + 1.0 / 3.0 + 1.0 / 4.0 + 2.0 / 5.0) / 5.0,
            "aurc",
        );
        let m = s.confidence_metrics();
        assert_eq!(
            (m.nll, m.ece, m.acc_cov50, m.acc_cov80),
            (s.nll(), s.ece(15), s.acc_at_coverage(50), 0.75)
        );
    }

    #[test]
    fn perfectly_calibrated_and_floored() {
        // Confidence 0.75 everywhere, 3 of 4 right: ECE 0.
        let p = [0.75f32, 0.25, 0.75, 0.25, 0.25, 0.75, 0.75, 0.25];
        let s = Scored::new(&p, 2, &[0, 0, 1, 1]).unwrap();
        close(s.ece(ECE_BINS), 0.0, "calibrated ece");
        // Certain and right: everything 0; certain and wrong: the floor bounds the NLL.
        let s = Scored::new(&[1.0, 0.0], 2, &[0]).unwrap();
        close(s.nll() + s.brier() + s.ece(ECE_BINS) + s.aurc(), 0.0, "certain");
        let s = Scored::new(&[1.0, 0.0], 2, &[1]).unwrap();
        close(s.nll(), -P_FLOOR.ln(), "floored nll");
        close(s.brier(), 2.0, "brier maximum");
        close(s.ece(ECE_BINS), 1.0, "ece maximum (confidence 1 in the last bin)");
    }

    #[test]
    fn confidence_metrics_by_hand_k3() {
        let p = [0.5f32, 0.25, 0.25, 0.125, 0.25, 0.625, 0.25, 0.5, 0.25];
        let s = Scored::new(&p, 3, &[0, 1, 1]).unwrap();
        close(s.nll(), -(0.5f64.ln() + 0.25f64.ln() + 0.5f64.ln()) / 3.0, "nll");
        close(s.brier(), (0.375 + 0.96875 + 0.375) / 3.0, "brier");
        close(s.ece(15), (2.0 * 0.5 + 0.625) / 3.0, "ece");
        // Ranked: row 1 (0.625, wrong), then rows 0 and 2 (0.5, right).
        close(s.acc_at_coverage(50), 0.5, "acc@50");
        close(s.acc_at_coverage(80), 2.0 / 3.0, "acc@80");
        close(s.aurc(), (1.0 + 1.0 / 2.0 + 1.0 / 3.0) / 3.0, "aurc");
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(Scored::new(&[], 2, &[]).unwrap_err(), MetricsError::Empty);
        assert!(matches!(
            Scored::new(&[0.5, 0.5], 0, &[0]),
            Err(MetricsError::Shape { .. })
        ));
        assert!(matches!(
            Scored::new(&[0.5, 0.3, 0.2], 2, &[0]),
            Err(MetricsError::Shape { .. })
        ));
        assert!(matches!(
            Scored::new(&[0.5, 0.5], 2, &[0, 1]),
            Err(MetricsError::Labels { .. })
        ));
        let err = Scored::new(&[0.5, 0.5, 1.0, 0.0], 2, &[0, 2]).unwrap_err();
        assert_eq!(
            err,
            MetricsError::Label {
                index: 1,
                label: 2,
                k: 2
            }
        );
        assert_eq!((kept(191, 50), kept(191, 80), kept(5, 80), kept(1, 1)), (96, 153, 4, 1));
    }
}
