//! gsdnet-edge: GSDNet inference runtime (graph spectral diffusion completion of missing
//! modalities, GCN fusion and classification) for edge devices.
//!
//! # Layers
//!
//! Modules sit in four layers; a module uses its own layer's and the layers below, never one
//! above, and no two modules use each other, nor do `daemon`'s modules (the unit test in
//! `layering.rs` reads the `crate::...` paths of src/ and checks all three).
//!
//! 1. Numerics and leaves: `capacity` (every shared capacity limit and the class-name rule),
//!    `paths` (the bundled files), `tensor`, `rng`, `modality`, `masks`, `stage`,
//!    `completion`, `calibration`, `metrics`, `spectral` (graph and eigenpairs),
//!    `multisample`.
//! 2. Model and pipeline: `backend` (the engine boundary: tract, ONNX Runtime), `diffusion`
//!    (the sampler), `manifest`, `model`, `pipeline` (one window or a batch, end to end),
//!    `frontend` (the text encoder), data formats (`recording`, `dataset`), the wire
//!    `protocol`, board profiles (`config`) and the daemon's byte streams (`io`).
//! 3. Programs over the pipeline: `eval` (accuracy under dropouts), `bench` (latency, memory,
//!    throughput), `check` (what runs where, golden parity), `daemon` (the edge daemon),
//!    `client` (senders: replay), `service` (the daemon's commands and process set-up).
//! 4. `cli`: the subcommands' arguments mapped to the layers below, and exit codes.

pub mod calibration;
pub mod capacity;
pub mod completion;
pub mod masks;
pub mod metrics;
pub mod modality;
pub mod multisample;
pub mod paths;
pub mod rng;
pub mod spectral;
pub mod stage;
pub mod tensor;

pub mod backend;
pub mod config;
pub mod dataset;
pub mod diffusion;
pub mod frontend;
pub mod io;
pub mod manifest;
pub mod model;
pub mod pipeline;
pub mod protocol;
pub mod recording;

pub mod bench;
pub mod check;
pub mod client;
pub mod daemon;
pub mod eval;
pub mod service;

pub mod cli;

#[cfg(test)]
mod layering;
