//! Evaluation metrics: binary accuracy, support-weighted F1 and mean absolute error.

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
    let classes = pred
        .iter()
        .chain(truth)
        .copied()
        .max()
        .map_or(0, |m| m as usize + 1);
    let mut total = 0.0;
    for c in 0..classes as u8 {
        let tp = pred
            .iter()
            .zip(truth)
            .filter(|&(&p, &t)| p == c && t == c)
            .count() as f64;
        let fp = pred
            .iter()
            .zip(truth)
            .filter(|&(&p, &t)| p == c && t != c)
            .count() as f64;
        let support = truth.iter().filter(|&&t| t == c).count() as f64;
        let denom = 2.0 * tp + fp + (support - tp);
        let f1 = if denom > 0.0 { 2.0 * tp / denom } else { 0.0 };
        total += f1 * support;
    }
    total / truth.len() as f64
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
