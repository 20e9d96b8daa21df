//! The edge daemon: frames in, results out.
//!
//! - Input side: per-stream handling (`connection`), serial ports served with reopening
//!   (`serial`), connection limits and rate buckets (`limits`), the state every stream shares
//!   and the shutdown phases (`shared`), sender notices and the limits answer (`notices`).
//! - Assembly and inference: utterance assembly (`assembly`), the text frontend worker
//!   (`frontend`), the inference thread (`inference`), its bounded job queue (`queue`) and batch
//!   sizing under a latency budget (`batching`).
//! - Runners: the production runner over the core pipeline (`pipeline_runner`) and the recorder
//!   of `gsdnet record` (`recorder`); the served model's description (`model_info`:
//!   modalities, classes).
//! - The serve loop (`server`), counters (`stats`), service-manager notifications (`notify`).
//! - The ROS 2 node (`ros2`, cargo feature `ros2`): topics in and out beside the sockets.
//!
//! Dependencies inside point one way: `server` over `serial` over `connection` over `shared`
//! (and the leaves `limits`, `stats`, `notices`); `inference` over `queue`, `batching`,
//! `assembly`. Senders (replay) live in `client`, the throughput bench in `bench`.

pub mod assembly;
pub mod batching;
pub mod connection;
pub mod frontend;
pub mod inference;
pub mod limits;
pub mod model_info;
pub mod notices;
pub mod notify;
pub mod pipeline_runner;
pub mod queue;
pub mod recorder;
pub mod ros2;
pub mod serial;
pub mod server;
pub mod shared;
pub mod stats;
