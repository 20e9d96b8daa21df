//! Validated settings types shared by the board profile (`config`) and the daemon that consumes
//! them: the assembly's parameters and the socket clients' connection limits. They live here so
//! that `config` depends on nothing in `daemon`; `daemon::assembly` and `daemon::limits`
//! re-export them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the daemon's windows follow a conversation longer than W (`[assembly] windowing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Windowing {
    /// Each window ends at the utterance just released and holds the W before it: every result
    /// has the most context (the default).
    #[default]
    Sliding,
    /// Windows are consecutive blocks of W utterances (positions 0..W, W..2W, ...), the one being
    /// filled ending at the utterance just released: a block's last window is exactly the
    /// window `gsdnet eval` runs for it, with the same sampler streams.
    Chunked,
}

/// Validated assembly parameters (the board profile's `[assembly]`, as `check-config` prints
/// them). Feature sizes are not here: they are the served model's (`Assembler::new`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AssemblySettings {
    /// Window length W.
    pub window: usize,
    /// How windows follow a conversation longer than W.
    pub windowing: Windowing,
    /// Per-modality wait after the utterance's base time, T, A, V (unused for a modality the
    /// model lacks).
    pub deadline_ms: [u64; 3],
    /// Fallback end of an utterance whose `UtteranceEnd` never came, counted from its opening.
    pub max_utterance_ms: u64,
    pub max_open_utterances: usize,
    pub max_conversations: usize,
    /// A conversation with nothing open and no accepted message for this long is forgotten.
    pub idle_conversation_ms: u64,
    /// A conversation that released something may be evicted for a new one after this long
    /// without accepted input (ones that released nothing may be evicted at any time).
    pub evict_idle_ms: u64,
}

/// Limits applied to socket clients (board profile `[inputs]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    /// A connection that has sent no valid frame after this long is closed.
    pub idle_timeout: Duration,
    /// Frames queued towards one client before it counts as not reading.
    pub outgoing_queue: usize,
    /// Longest a single write to a client may take before it counts as not reading.
    pub write_timeout: Duration,
    /// Frame rate and burst of all socket clients together.
    pub total_frames_per_second: u32,
    pub total_burst: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 64,
            max_connections_per_peer: 32,
            idle_timeout: Duration::from_secs(10),
            outgoing_queue: 64,
            write_timeout: Duration::from_secs(2),
            total_frames_per_second: 2000,
            total_burst: 2000,
        }
    }
}
