//! Probability calibration (DESIGN.md "Calibration"): the manifest's `[calibration]` table and
//! the tempered softmax the pipeline publishes, `probs = softmax(logits / T)`, where T may
//! depend on the utterance's availability pattern (`[calibration.patterns]`, e.g. `TA = 1.05`;
//! patterns not listed use `temperature`).
//!
//! Invariant of a `Calibration`: every temperature is finite and in [T_MIN, T_MAX] (absent = 1.0,
//! which is the uncalibrated softmax bit for bit: `x / 1.0 == x` in f32). The bounds keep
//! `logits / T` finite in f32 for every finite logit below 3e36 and hold any sensible fit.
//! `python/gsdnet_ref/pipeline.py` (`load_temperature`, `softmax_t`) implements the same rule
//! and the same f32 operations.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum CalibrationError {
    #[error("[calibration] temperature must be a number, got {0}")]
    NotANumber(String),
    #[error("[calibration] temperature must be finite and in [{T_MIN}, {T_MAX}], got {0}")]
    OutOfRange(f64),
    #[error("[calibration.patterns] key {0:?} is not an availability pattern (letters T, A, V, each at most once)")]
    BadPattern(String),
    #[error("[calibration] patterns must be a table of pattern = temperature")]
    NotATable,
}

/// Smallest and largest accepted temperature.
pub const T_MIN: f64 = 0.01;
pub const T_MAX: f64 = 100.0;

/// The validated `[calibration]` table of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Divides the fusion logits before the softmax; 1.0 = uncalibrated.
    pub temperature: f64,
    /// Temperature per availability bits (T = 1, A = 2, V = 4); index 0 (nothing observed,
    /// never inferred) and unlisted patterns hold `temperature`.
    pub by_avail: [f64; 8],
    /// The whole table as written (fitting provenance: command, split, NLL before and after).
    pub table: toml::Table,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            temperature: 1.0,
            by_avail: [1.0; 8],
            table: toml::Table::new(),
        }
    }
}

impl Calibration {
    /// Reads `temperature` (integer or float; absent = 1.0) and the optional `patterns` table
    /// from the `[calibration]` table.
    pub fn from_table(table: toml::Table) -> Result<Calibration, CalibrationError> {
        let temperature = table.get("temperature").map_or(Ok(1.0), number)?;
        let mut by_avail = [temperature; 8];
        match table.get("patterns") {
            None => {}
            Some(toml::Value::Table(patterns)) => {
                for (key, value) in patterns {
                    let bits = pattern_bits(key).ok_or_else(|| CalibrationError::BadPattern(key.clone()));
                    by_avail[usize::from(bits?)] = number(value)?;
                }
            }
            Some(_) => return Err(CalibrationError::NotATable),
        }
        Ok(Calibration {
            temperature,
            by_avail,
            table,
        })
    }

    /// The temperature of an utterance with availability bits `avail` (T = 1, A = 2, V = 4).
    pub fn temperature_for(&self, avail: u8) -> f64 {
        self.by_avail[usize::from(avail & 7)]
    }
}

/// A temperature: finite, in [T_MIN, T_MAX].
fn number(v: &toml::Value) -> Result<f64, CalibrationError> {
    let t = match v {
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        other => return Err(CalibrationError::NotANumber(other.to_string())),
    };
    if t.is_finite() && (T_MIN..=T_MAX).contains(&t) {
        Ok(t)
    } else {
        Err(CalibrationError::OutOfRange(t))
    }
}

/// Availability bits of a pattern key such as "TA" (DESIGN.md letters, each at most once, any
/// order); `None` for anything else. Also reads the keys of `[completion.patterns]`.
pub(crate) fn pattern_bits(key: &str) -> Option<u8> {
    let mut bits = 0u8;
    for c in key.chars() {
        let b = match c {
            'T' => 1,
            'A' => 2,
            'V' => 4,
            _ => return None,
        };
        if bits & b != 0 {
            return None;
        }
        bits |= b;
    }
    (bits != 0).then_some(bits)
}

/// Index of the first maximum of `p` (0 for an empty slice): the published label.
pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// `out = softmax(logits / t)` for any number of classes (`out.len() == logits.len() >= 1`),
/// max-subtracted so large magnitudes do not overflow; f32 throughout, in the reference's order:
/// divide, subtract the max, exp, divide by the sequential sum.
pub fn softmax_tempered(logits: &[f32], t: f32, out: &mut [f32]) {
    debug_assert_eq!(logits.len(), out.len());
    let m = logits.iter().map(|&l| l / t).fold(f32::NEG_INFINITY, f32::max);
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
            Calibration::from_table(table("temperature = 2")).unwrap().temperature,
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
            Calibration::from_table(table("temperature = 100")).unwrap().temperature,
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
    fn pattern_temperatures_override_the_scalar() {
        let c = Calibration::from_table(table("temperature = 1.5\n[patterns]\nTAV = 1.05\nAT = 1.1\nV = 2")).unwrap();
        assert_eq!(
            (c.temperature_for(7), c.temperature_for(3), c.temperature_for(4)),
            (1.05, 1.1, 2.0)
        );
        assert_eq!(
            (c.temperature_for(1), c.temperature_for(6)),
            (1.5, 1.5),
            "unlisted: the scalar"
        );
        assert_eq!(Calibration::from_table(table("")).unwrap().by_avail, [1.0; 8]);
        for bad in [
            "[patterns]\nX = 1.0",
            "[patterns]\nTT = 1.0",
            "[patterns]\n\"\" = 1.0",
            "[patterns]\nT = 0.0",
            "patterns = 2",
        ] {
            assert!(Calibration::from_table(table(bad)).is_err(), "{bad}");
        }
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
