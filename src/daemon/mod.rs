//! The edge daemon: utterance assembly (`assembly`), the inference thread (`inference`), its
//! bounded job queue (`queue`) and batch sizing under a latency budget (`batching`), the
//! throughput driver of `gsdnet bench-throughput` (`throughput`), connection limits and rate buckets (`limits`), counters (`stats`),
//! service-manager notifications (`notify`), per-stream handling (`connection`), the serve loop
//! (`server`), serial ports served with reopening (`serial`), the served model's description
//! (`model_info`: modalities, classes), the production runner over the core pipeline
//! (`pipeline_runner`) and recording/replay (`replay`).

pub mod assembly;
pub mod batching;
pub mod connection;
pub mod inference;
pub mod limits;
pub mod model_info;
pub mod notify;
pub mod pipeline_runner;
pub mod queue;
pub mod replay;
pub mod serial;
pub mod server;
pub mod stats;
pub mod throughput;
