//! `Ros2Node` of a build without the `ros2` feature: it cannot be made, so a profile that
//! enables `[ros2]` fails at start with `Ros2Error::NotBuilt`.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Ros2Error;
use crate::config::Ros2Settings;
use crate::daemon::shared::{Input, Phases, Shared};

/// Uninhabited: no node exists without the feature.
pub enum Ros2Node {}

impl Ros2Node {
    pub fn start(_settings: &Ros2Settings, _hardware_id: &str) -> Result<Ros2Node, Ros2Error> {
        Err(Ros2Error::NotBuilt)
    }
}

pub async fn serve_ros2(node: Ros2Node, _shared: Arc<Shared>, _input: mpsc::Sender<Input>, _phases: Phases, _bits: u8) {
    match node {}
}
