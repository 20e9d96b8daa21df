//! The manifest's default completion (`[completion]`, DESIGN.md "Default completion"): which
//! mode a window runs when the caller does not name one. `default` for every window, except
//! that a window whose valid utterances all share one availability pattern listed in
//! `[completion.patterns]` runs that pattern's mode.
//!
//! Invariant of a `CompletionPolicy`: every mode is a known `Completion`; an absent table is
//! `gsdnet` everywhere (the behaviour of manifests written before the table existed). Other keys
//! of `[completion]` are free-form provenance and are not read. `python/gsdnet_ref/completion.py`
//! implements the same rule.

use thiserror::Error;

use crate::calibration::pattern_bits;
use crate::completion::Completion;

#[derive(Debug, Error, PartialEq)]
pub enum PolicyError {
    #[error("[completion] needs `default = \"<mode>\"` (gsdnet, meanfill or zero)")]
    MissingDefault,
    #[error("[completion] {key}: {reason}")]
    BadMode { key: String, reason: String },
    #[error("[completion.patterns] key {0:?} is not an availability pattern (letters T, A, V, each at most once)")]
    BadPattern(String),
    #[error("[completion] patterns must be a table of pattern = mode")]
    NotATable,
}

/// The validated `[completion]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletionPolicy {
    /// Mode of a window not matched by `by_avail`.
    pub default: Completion,
    /// Mode per availability bits (T = 1, A = 2, V = 4); `None` = `default`.
    pub by_avail: [Option<Completion>; 8],
}

impl Default for CompletionPolicy {
    fn default() -> Self {
        CompletionPolicy::fixed(Completion::Gsdnet)
    }
}

impl CompletionPolicy {
    /// One mode for every window.
    pub fn fixed(mode: Completion) -> Self {
        CompletionPolicy {
            default: mode,
            by_avail: [None; 8],
        }
    }

    /// Reads `[completion]` (`None` = absent table: gsdnet everywhere).
    pub fn from_table(table: Option<&toml::Table>) -> Result<Self, PolicyError> {
        let Some(table) = table else {
            return Ok(CompletionPolicy::default());
        };
        let default = mode(table.get("default").ok_or(PolicyError::MissingDefault)?, "default")?;
        let mut policy = CompletionPolicy::fixed(default);
        match table.get("patterns") {
            None => {}
            Some(toml::Value::Table(patterns)) => {
                for (key, value) in patterns {
                    let bits = pattern_bits(key).ok_or_else(|| PolicyError::BadPattern(key.clone()))?;
                    policy.by_avail[usize::from(bits)] = Some(mode(value, &format!("patterns.{key}"))?);
                }
            }
            Some(_) => return Err(PolicyError::NotATable),
        }
        Ok(policy)
    }

    /// The mode of a window from the availability bits of its valid utterances: the listed
    /// mode of their pattern when they all share one, else `default` (also for no utterance).
    pub fn resolve(&self, bits: impl IntoIterator<Item = u8>) -> Completion {
        let mut it = bits.into_iter();
        let Some(first) = it.next() else { return self.default };
        if it.all(|b| b == first) {
            if let Some(mode) = self.by_avail.get(usize::from(first)).copied().flatten() {
                return mode;
            }
        }
        self.default
    }

    /// `pattern = mode` entries, patterns in bits order (for logs and reports).
    pub fn patterns(&self) -> Vec<(String, Completion)> {
        (1..8u8)
            .filter_map(|b| self.by_avail[usize::from(b)].map(|m| (pattern_name(b), m)))
            .collect()
    }
}

impl std::fmt::Display for CompletionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.default)?;
        for (p, m) in self.patterns() {
            write!(f, ", {p}: {m}")?;
        }
        Ok(())
    }
}

/// What a caller asks for: the manifest's policy (`default`) or one mode for every window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompletionChoice {
    /// The manifest's `[completion]` policy, resolved per window.
    Default,
    /// This mode for every window.
    Mode(Completion),
}

impl CompletionChoice {
    /// The mode a window runs: `Mode(m)` is m, `Default` the policy's choice for the window's
    /// availability bits (one per valid utterance, `avail_bits`).
    pub fn resolve(self, policy: &CompletionPolicy, bits: impl IntoIterator<Item = u8>) -> Completion {
        match self {
            CompletionChoice::Default => policy.resolve(bits),
            CompletionChoice::Mode(m) => m,
        }
    }
}

impl CompletionChoice {
    /// The mode name published with results (the wire's `completion`): the mode; for `Default`
    /// the policy's one mode when it lists no pattern, else "default".
    pub fn published(self, policy: &CompletionPolicy) -> &'static str {
        match self {
            CompletionChoice::Mode(m) => m.name(),
            CompletionChoice::Default if policy.by_avail.iter().all(Option::is_none) => policy.default.name(),
            CompletionChoice::Default => "default",
        }
    }
}

impl serde::Serialize for CompletionChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CompletionChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl From<Completion> for CompletionChoice {
    fn from(m: Completion) -> Self {
        CompletionChoice::Mode(m)
    }
}

impl std::fmt::Display for CompletionChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompletionChoice::Default => f.write_str("default"),
            CompletionChoice::Mode(m) => write!(f, "{m}"),
        }
    }
}

impl std::str::FromStr for CompletionChoice {
    type Err = String;

    /// `default`, or a mode name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "default" {
            return Ok(CompletionChoice::Default);
        }
        s.parse::<Completion>()
            .map(CompletionChoice::Mode)
            .map_err(|e| format!("{e}, or default (the manifest's [completion])"))
    }
}

/// Availability bits (T = 1, A = 2, V = 4) of an utterance from its features by
/// `Modality::index` (`None` = missing).
pub fn avail_bits(features: &[Option<&[f32]>; 3]) -> u8 {
    features
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is_some())
        .map(|(i, _)| 1u8 << i)
        .sum()
}

fn mode(value: &toml::Value, key: &str) -> Result<Completion, PolicyError> {
    let bad = |reason: String| PolicyError::BadMode {
        key: key.to_string(),
        reason,
    };
    let s = value
        .as_str()
        .ok_or_else(|| bad(format!("must be a string, got {value}")))?;
    s.parse::<Completion>().map_err(bad)
}

fn pattern_name(bits: u8) -> String {
    [(1, 'T'), (2, 'A'), (4, 'V')]
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, c)| *c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn absent_table_is_gsdnet_everywhere() {
        let p = CompletionPolicy::from_table(None).unwrap();
        assert_eq!(p, CompletionPolicy::fixed(Completion::Gsdnet));
        assert_eq!(p.resolve([2, 2]), Completion::Gsdnet);
    }

    #[test]
    fn patterns_override_the_default_for_uniform_windows() {
        let t = table("default = \"meanfill\"\nchosen_on = \"val\"\nval_f1_policy = [0.5]\n[patterns]\nA = \"gsdnet\"\nAT = \"zero\"");
        let p = CompletionPolicy::from_table(Some(&t)).unwrap();
        assert_eq!(p.default, Completion::Meanfill);
        assert_eq!(p.resolve([2, 2, 2]), Completion::Gsdnet);
        assert_eq!(p.resolve([3]), Completion::Zero);
        assert_eq!(p.resolve([2, 3]), Completion::Meanfill, "mixed window");
        assert_eq!(p.resolve([1, 1]), Completion::Meanfill, "pattern not listed");
        assert_eq!(p.resolve([]), Completion::Meanfill);
        assert_eq!(
            p.patterns(),
            vec![
                ("A".to_string(), Completion::Gsdnet),
                ("TA".to_string(), Completion::Zero)
            ]
        );
        assert_eq!(p.to_string(), "meanfill, A: gsdnet, TA: zero");
    }

    #[test]
    fn choices_parse_and_resolve() {
        let t = table("default = \"meanfill\"\n[patterns]\nA = \"gsdnet\"");
        let p = CompletionPolicy::from_table(Some(&t)).unwrap();
        let d: CompletionChoice = "default".parse().unwrap();
        assert_eq!((d, d.to_string()), (CompletionChoice::Default, "default".to_string()));
        assert_eq!(d.resolve(&p, [2, 2]), Completion::Gsdnet);
        assert_eq!(d.resolve(&p, [3, 2]), Completion::Meanfill);
        let z: CompletionChoice = "zero".parse().unwrap();
        assert_eq!(
            (z.resolve(&p, [2]), z.to_string()),
            (Completion::Zero, "zero".to_string())
        );
        assert!("tweedie".parse::<CompletionChoice>().unwrap_err().contains("default"));
        assert_eq!(d.published(&p), "default");
        assert_eq!(d.published(&CompletionPolicy::fixed(Completion::Meanfill)), "meanfill");
        assert_eq!(z.published(&p), "zero");
        let x = [1.0f32];
        assert_eq!(avail_bits(&[Some(&x[..]), None, Some(&x[..])]), 5);
        assert_eq!(avail_bits(&[None, Some(&x[..]), None]), 2);
    }

    #[test]
    fn bad_tables_are_refused() {
        let cases = [
            ("[patterns]\nA = \"zero\"", PolicyError::MissingDefault),
            (
                "default = 1",
                PolicyError::BadMode {
                    key: "default".into(),
                    reason: "must be a string, got 1".into(),
                },
            ),
            ("default = \"zero\"\npatterns = 3", PolicyError::NotATable),
            (
                "default = \"zero\"\n[patterns]\nX = \"zero\"",
                PolicyError::BadPattern("X".into()),
            ),
            (
                "default = \"zero\"\n[patterns]\nTT = \"zero\"",
                PolicyError::BadPattern("TT".into()),
            ),
            (
                "default = \"zero\"\n[patterns]\n\"\" = \"zero\"",
                PolicyError::BadPattern("".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                CompletionPolicy::from_table(Some(&table(text))).unwrap_err(),
                want,
                "{text}"
            );
        }
        let e = CompletionPolicy::from_table(Some(&table("default = \"tweedie\""))).unwrap_err();
        assert!(
            matches!(e, PolicyError::BadMode { ref key, .. } if key == "default"),
            "{e}"
        );
        let e = CompletionPolicy::from_table(Some(&table("default = \"zero\"\n[patterns]\nA = \"mean\""))).unwrap_err();
        assert!(
            matches!(e, PolicyError::BadMode { ref key, .. } if key == "patterns.A"),
            "{e}"
        );
    }
}
