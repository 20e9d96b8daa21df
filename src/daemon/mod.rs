//! The edge daemon: utterance assembly (`assembly`), the inference thread and its bounded queue
//! (`inference`), counters (`stats`), service-manager notifications (`notify`), per-stream
//! handling (`connection`) and the serve loop (`server`).

pub mod assembly;
pub mod connection;
pub mod inference;
pub mod notify;
pub mod server;
pub mod stats;
