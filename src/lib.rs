//! gsdnet-edge: GSDNet inference runtime (graph spectral diffusion completion of missing
//! modalities, GCN fusion and classification) for edge devices.

pub mod backend;
pub mod bench;
pub mod calibration;
pub mod check;
pub mod completion;
pub mod dataset;
pub mod recording;
pub mod cli;
pub mod diffusion;
pub mod eval;
pub mod metrics;
pub mod manifest;
pub mod masks;
pub mod modality;
pub mod model;
pub mod multisample;
pub mod pipeline;
pub mod rng;
pub mod spectral;
pub mod stage;
pub mod tensor;
pub mod daemon;
pub mod protocol;
pub mod config;
pub mod io;
