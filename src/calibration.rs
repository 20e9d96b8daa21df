//! Probability calibration (DESIGN.md "Calibration"): the manifest's `[calibration]` table and
//! the tempered softmax the pipeline publishes, `probs = softmax(logits / T)`.
//!
//! Invariant of a `Calibration`: the temperature is finite and in [T_MIN, T_MAX] (absent = 1.0,
//! which is the uncalibrated softmax bit for bit: `x / 1.0 == x` in f32). The bounds keep
//! `logits / T` finite in f32 for every finite logit below 3e36 and hold any sensible fit.
//! `scripts/gsdnet_ref/pipeline.py` (`load_temperature`, `softmax_t`) implements the same rule
//! and the same f32 operations.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum CalibrationError {
    #[error("[calibration] temperature must be a number, got {0}")]
    NotANumber(String),
    #[error("[calibration] temperature must be finite and in [{T_MIN}, {T_MAX}], got {0}")]
    OutOfRange(f64),
}

/// Smallest and largest accepted temperature.
pub const T_MIN: f64 = 0.01;
pub const T_MAX: f64 = 100.0;

/// The validated `[calibration]` table of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Divides the fusion logits before the softmax; 1.0 = uncalibrated.
    pub temperature: f64,
    /// The whole table as written (fitting provenance: command, split, NLL before and after).
    pub table: toml::Table,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            temperature: 1.0,
            table: toml::Table::new(),
        }
    }
}

impl Calibration {
    /// Reads `temperature` from the `[calibration]` table (integer or float; absent = 1.0).
    pub fn from_table(table: toml::Table) -> Result<Calibration, CalibrationError> {
        let temperature = match table.get("temperature") {
            None => 1.0,
            Some(toml::Value::Float(f)) => *f,
            Some(toml::Value::Integer(i)) => *i as f64,
            Some(other) => return Err(CalibrationError::NotANumber(other.to_string())),
        };
        if !(temperature.is_finite() && (T_MIN..=T_MAX).contains(&temperature)) {
            return Err(CalibrationError::OutOfRange(temperature));
        }
        Ok(Calibration { temperature, table })
    }
}

/// `out = softmax(logits / t)` for any number of classes (`out.len() == logits.len() >= 1`),
/// max-subtracted so large magnitudes do not overflow; f32 throughout, in the reference's order:
/// divide, subtract the max, exp, divide by the sequential sum.
pub fn softmax_tempered(logits: &[f32], t: f32, out: &mut [f32]) {
    debug_assert_eq!(logits.len(), out.len());
    let m = logits
        .iter()
        .map(|&l| l / t)
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = (l / t - m).exp();
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn temperature_is_validated() {
        assert_eq!(Calibration::from_table(table("")).unwrap().temperature, 1.0);
        assert_eq!(
            Calibration::from_table(table("temperature = 2"))
                .unwrap()
                .temperature,
            2.0
        );
        let c = Calibration::from_table(table("temperature = 1.25\nfitted_on = \"val\"")).unwrap();
        assert_eq!(c.temperature, 1.25);
        assert_eq!(c.table["fitted_on"].as_str(), Some("val"));
        assert_eq!(
            Calibration::from_table(table("temperature = 0.01"))
                .unwrap()
                .temperature,
            T_MIN
        );
        assert_eq!(
            Calibration::from_table(table("temperature = 100"))
                .unwrap()
                .temperature,
            T_MAX
        );
        for bad in [
            "temperature = 0.0",
            "temperature = -1.0",
            "temperature = inf",
            "temperature = nan",
            "temperature = 1e-300",
            "temperature = 100.5",
        ] {
            assert!(
                matches!(
                    Calibration::from_table(table(bad)),
                    Err(CalibrationError::OutOfRange(_))
                ),
                "{bad}"
            );
        }
        let err = Calibration::from_table(table("temperature = \"1\"")).unwrap_err();
        assert!(matches!(err, CalibrationError::NotANumber(_)), "{err}");
    }

    #[test]
    fn tempered_softmax() {
        let mut p = [0.0f32; 2];
        // T = 1 is the plain softmax of two logits, as the pipeline computed before calibration.
        softmax_tempered(&[0.5, -1.5], 1.0, &mut p);
        let (ea, eb) = (0.0f32.exp(), (-2.0f32).exp());
        assert_eq!(p, [ea / (ea + eb), eb / (ea + eb)]);
        // T = 2 halves the logit gap: p1 / p0 = exp(-1).
        softmax_tempered(&[0.5, -1.5], 2.0, &mut p);
        assert!((p[1] / p[0] - (-1.0f32).exp()).abs() < 1e-6);
        // K = 3, huge logits: no overflow, sums to 1, order kept.
        let mut q = [0.0f32; 3];
        softmax_tempered(&[1000.0, 999.0, -1000.0], 0.5, &mut q);
        assert!((q.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(q[0] > q[1] && q[1] > q[2] && q[2] == 0.0);
        assert!((q[1] / q[0] - (-2.0f32).exp()).abs() < 1e-6);
    }
}
