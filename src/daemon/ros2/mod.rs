//! The daemon as a ROS 2 node (board profile `[ros2]`, cargo feature `ros2`): sensor input from a
//! `gsdnet_msgs/SensorInput` topic into the same assembly channel as socket clients, every
//! result out as a `gsdnet_msgs/EmotionWindow`, refusals as `gsdnet_msgs/Notice`, health as
//! `diagnostic_msgs/DiagnosticArray`.
//!
//! - `msgs`: the messages as serde types in CDR field order (every build).
//! - `convert`: pure conversions between them and the daemon's own types (every build, unit
//!   tested without DDS).
//! - `node` (feature `ros2`): joining the DDS domain (`ros2-client` on RustDDS, no ROS
//!   installation) and the async bridge task `serve_ros2`, which `daemon::server` runs beside
//!   its listeners. Without the feature `Ros2Node::start` says the build lacks it; this module
//!   is the only place that looks at the feature.

pub mod convert;
pub mod msgs;

#[cfg(feature = "ros2")]
mod node;
#[cfg(feature = "ros2")]
pub use node::{serve_ros2, Ros2Node};

#[cfg(not(feature = "ros2"))]
mod disabled;
#[cfg(not(feature = "ros2"))]
pub use disabled::{serve_ros2, Ros2Node};

use thiserror::Error;

/// Whether this build can be a ROS 2 node.
pub const BUILT: bool = cfg!(feature = "ros2");

#[derive(Debug, Error)]
pub enum Ros2Error {
    #[error("the board profile enables [ros2] but this gsdnet was built without it: rebuild with `cargo build --release --features ros2`")]
    NotBuilt,
    #[error("cannot join ROS 2 domain {domain}: {detail}")]
    Domain { domain: u16, detail: String },
    #[error("ROS 2 {what} {name:?}: {detail}")]
    Entity {
        what: &'static str,
        name: String,
        detail: String,
    },
    #[error("joining ROS 2 domain {domain} took longer than {seconds} s")]
    Timeout { domain: u16, seconds: u64 },
}

#[cfg(test)]
mod tests;
