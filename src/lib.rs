//! gsdnet-edge: GSDNet inference runtime (graph spectral diffusion completion of missing
//! modalities, GCN fusion and classification) for edge devices.

pub mod backend;
pub mod check;
pub mod tensor;
