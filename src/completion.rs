//! Completion modes: how missing entries are completed before fusion (DESIGN.md "Sampler",
//! last paragraph). Only `Gsdnet` draws noise, so only it has several samples per window;
//! `Meanfill` and `Zero` are deterministic and ignore S.

use std::fmt;
use std::str::FromStr;

/// How missing entries are completed before fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Completion {
    /// Spectral diffusion (the model's own method).
    Gsdnet,
    /// The encoding of the training mean.
    Meanfill,
    /// The encoding of raw zeros.
    Zero,
}

impl Completion {
    pub const ALL: [Completion; 3] = [Completion::Gsdnet, Completion::Meanfill, Completion::Zero];

    pub fn name(self) -> &'static str {
        match self {
            Completion::Gsdnet => "gsdnet",
            Completion::Meanfill => "meanfill",
            Completion::Zero => "zero",
        }
    }
}

impl fmt::Display for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Completion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Completion::ALL
            .into_iter()
            .find(|c| c.name() == s.trim())
            .ok_or_else(|| format!("unknown completion `{s}` (known: gsdnet, meanfill, zero)"))
    }
}
