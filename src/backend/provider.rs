//! Execution providers of ONNX Runtime as the runtime names them: the typed setting a board
//! profile's `engine.execution_providers`, `gsdnet check --providers` and `gsdnet-bench
//! --providers` are parsed into once. Compiled in every build (a profile naming them is
//! validated without the `ort` feature); only `backend::ort` turns them into ONNX Runtime's.

use serde::{Deserialize, Serialize};

/// One execution provider a board profile may list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    #[serde(rename = "tensorrt")]
    TensorRt,
    Cuda,
    Cpu,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 3] = [ProviderKind::TensorRt, ProviderKind::Cuda, ProviderKind::Cpu];

    /// ONNX Runtime's own name for the provider.
    pub fn ort_name(self) -> &'static str {
        match self {
            ProviderKind::TensorRt => "TensorrtExecutionProvider",
            ProviderKind::Cuda => "CUDAExecutionProvider",
            ProviderKind::Cpu => "CPUExecutionProvider",
        }
    }

    /// The name used in board profiles and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::TensorRt => "tensorrt",
            ProviderKind::Cuda => "cuda",
            ProviderKind::Cpu => "cpu",
        }
    }

    pub fn is_accelerator(self) -> bool {
        self != ProviderKind::Cpu
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Command-line spelling: the profile names in any case, and `trt`.
impl std::str::FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trt" => Ok(ProviderKind::TensorRt),
            name => ProviderKind::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| format!("unknown execution provider `{name}` (known: tensorrt, cuda, cpu)")),
        }
    }
}

/// The list in order without duplicates; CPU is appended when absent because ONNX Runtime
/// always has it (whether falling back to it is allowed is decided by the caller).
pub fn with_cpu_fallback(list: &[ProviderKind]) -> Vec<ProviderKind> {
    let mut out: Vec<ProviderKind> = Vec::with_capacity(list.len() + 1);
    for &k in list {
        if !out.contains(&k) {
            out.push(k);
        }
    }
    if !out.contains(&ProviderKind::Cpu) {
        out.push(ProviderKind::Cpu);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_keeps_order_and_adds_cpu() {
        let l: Vec<ProviderKind> = ["TensorRT", "cuda", "cuda"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            with_cpu_fallback(&l),
            [ProviderKind::TensorRt, ProviderKind::Cuda, ProviderKind::Cpu]
        );
        assert_eq!(with_cpu_fallback(&[]), [ProviderKind::Cpu]);
        assert!("npu".parse::<ProviderKind>().is_err());
    }

    #[test]
    fn profile_names_round_trip_through_serde() {
        for p in ProviderKind::ALL {
            let v: ProviderKind = serde::Deserialize::deserialize(serde::de::value::StrDeserializer::<
                serde::de::value::Error,
            >::new(p.name()))
            .unwrap();
            assert_eq!(v, p);
        }
    }
}
