//! gsdnet-edge: GSDNet inference runtime (graph spectral diffusion completion of missing
//! modalities, GCN fusion and classification) for edge devices.

pub mod backend;
pub mod tensor;
pub mod daemon;
pub mod protocol;
pub mod config;
pub mod io;
