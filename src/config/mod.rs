//! Board profiles: the raw TOML of `boards/*.toml` (`RawProfile`, unknown keys refused) and the
//! one validated `Settings` type the daemon runs with. Every range check lives in `validate`
//! (the `[engine]` table's in `engine`, `[ros2]`'s in `ros2`), with one message rule for ranges
//! and lower bounds (`check_range`, `check_min`); code holding a `Settings` may rely on it. A profile
//! says nothing about feature sizes or classes: those are the model's (its manifest), read when
//! the daemon starts.

mod engine;
pub mod ros2;
mod settings;

pub use engine::{EngineSettings, RawEngine, DEFAULT_BATCH_LATENCY_MS, DEFAULT_MAX_BATCH, MAX_BATCH_LATENCY_MS};
pub use ros2::{Ros2Settings, Ros2Topics};
pub use settings::{AssemblySettings, ConnectionLimits, Windowing};

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The x86 development profile, used when no board is named.
pub const DEFAULT_PROFILE: &str = include_str!("../../boards/x86-dev.toml");

/// Upper bound of `inputs.max_connections` (each costs a file descriptor and a small buffer).
pub const MAX_CONNECTIONS: usize = 4096;
const BAUDS: [u32; 9] = [
    9_600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600, 3_000_000,
];

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read board profile {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("board profile {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("board profile {path}: `{field}` {detail}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        detail: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub board: RawBoard,
    pub engine: RawEngine,
    pub assembly: RawAssembly,
    pub inputs: RawInputs,
    /// Absent: the daemon is not a ROS 2 node.
    pub ros2: Option<ros2::RawRos2>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBoard {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeadlines {
    /// Absent: `DEFAULT_DEADLINE_MS` (a profile for a model without that modality may omit it).
    #[serde(default = "defaults::deadline_ms")]
    pub text: u64,
    #[serde(default = "defaults::deadline_ms")]
    pub audio: u64,
    #[serde(default = "defaults::deadline_ms")]
    pub visual: u64,
}

/// Deadline of a modality the profile does not list.
pub const DEFAULT_DEADLINE_MS: u64 = 300;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssembly {
    pub window: usize,
    /// `sliding` (default) or `chunked` (`Windowing`).
    #[serde(default)]
    pub windowing: Windowing,
    pub deadline_ms: RawDeadlines,
    pub max_utterance_ms: u64,
    pub max_open_utterances: usize,
    pub max_conversations: usize,
    pub idle_conversation_ms: u64,
    /// A conversation that released something may be evicted for a new one after this long
    /// without accepted input; absent = 10 s (at most `idle_conversation_ms`).
    pub evict_idle_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SerialPort {
    pub path: PathBuf,
    pub baud: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInputs {
    #[serde(default)]
    pub tcp: Vec<String>,
    #[serde(default)]
    pub unix: Vec<PathBuf>,
    #[serde(default)]
    pub serial: Vec<SerialPort>,
    /// TCP on a non-loopback address must be asked for explicitly.
    #[serde(default)]
    pub allow_remote: bool,
    pub max_frames_per_second: u32,
    pub burst: u32,
    /// Socket clients at once, and per peer (IP address or local user); serial ports not counted.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    #[serde(default = "defaults::max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// A socket client that sent no valid frame after this long is closed.
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// All socket clients together; absent = 4 x the per-connection rate and burst.
    pub max_total_frames_per_second: Option<u32>,
    pub total_burst: Option<u32>,
    /// Mode and group of Unix sockets the daemon creates (not socket-activated ones).
    #[serde(default = "defaults::unix_mode")]
    pub unix_mode: u32,
    pub unix_group: Option<String>,
}

mod defaults {
    pub fn deadline_ms() -> u64 {
        super::DEFAULT_DEADLINE_MS
    }
    pub fn max_connections() -> usize {
        64
    }
    pub fn max_connections_per_peer() -> usize {
        32
    }
    pub fn idle_timeout_ms() -> u64 {
        10_000
    }
    pub fn unix_mode() -> u32 {
        0o660
    }
}

/// Listening endpoints and input limits after validation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InputSettings {
    pub tcp: Vec<SocketAddr>,
    pub unix: Vec<PathBuf>,
    pub serial: Vec<SerialPort>,
    pub allow_remote: bool,
    pub max_frames_per_second: u32,
    pub burst: u32,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub idle_timeout_ms: u64,
    pub max_total_frames_per_second: u32,
    pub total_burst: u32,
    pub unix_mode: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_group: Option<String>,
}

impl InputSettings {
    /// What the serve loop enforces on socket clients.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            idle_timeout: std::time::Duration::from_millis(self.idle_timeout_ms),
            total_frames_per_second: self.max_total_frames_per_second,
            total_burst: self.total_burst,
            ..ConnectionLimits::default()
        }
    }
}

/// The one validated settings type of the daemon.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Settings {
    pub board: String,
    pub source: String,
    pub engine: EngineSettings,
    pub assembly: AssemblySettings,
    pub inputs: InputSettings,
    /// `Some` when the profile enables `[ros2]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ros2: Option<Ros2Settings>,
}

impl Settings {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Settings::parse(&text, path)
    }

    /// Parses and validates profile text; `path` only names it in errors. A relative `models`
    /// directory stays relative to the working directory (the unit file sets one).
    pub fn parse(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        validate(raw, path)
    }

    /// The default (x86 development) profile.
    pub fn default_profile() -> Result<Settings, ConfigError> {
        Settings::parse(DEFAULT_PROFILE, Path::new("<built-in boards/x86-dev.toml>"))
    }

    pub fn assembly_settings(&self) -> AssemblySettings {
        self.assembly.clone()
    }

    /// Resolved settings as TOML, for `gsdnet check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render settings: {e}\n{self:#?}"))
    }
}

fn check(ok: bool, path: &Path, field: &'static str, detail: impl FnOnce() -> String) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            detail: detail(),
        })
    }
}

/// The one range rule of every numeric key: `value` in `range`, else "is V; must be LO..=HI".
fn check_range<T>(value: T, range: RangeInclusive<T>, path: &Path, field: &'static str) -> Result<(), ConfigError>
where
    T: PartialOrd + Display,
{
    check(range.contains(&value), path, field, || {
        format!("is {value}; must be {}..={}", range.start(), range.end())
    })
}

/// The one lower-bound rule: `value` at least `min`, else "is V; must be at least MIN".
fn check_min<T: PartialOrd + Display>(value: T, min: T, path: &Path, field: &'static str) -> Result<(), ConfigError> {
    check(value >= min, path, field, || {
        format!("is {value}; must be at least {min}")
    })
}

fn validate(raw: RawProfile, path: &Path) -> Result<Settings, ConfigError> {
    let engine = engine::validate_engine(raw.engine, path)?;
    let assembly = validate_assembly(raw.assembly, path)?;
    let inputs = validate_inputs(raw.inputs, path)?;
    let env_domain = std::env::var(ros2::ROS_DOMAIN_ID_ENV).ok();
    let ros2 = match raw.ros2 {
        Some(r) => ros2::validate_ros2(r, env_domain.as_deref(), path)?,
        None => None,
    };
    check(!raw.board.name.trim().is_empty(), path, "board.name", || {
        "is empty".into()
    })?;
    Ok(Settings {
        board: raw.board.name,
        source: path.display().to_string(),
        engine,
        assembly,
        inputs,
        ros2,
    })
}

fn validate_assembly(a: RawAssembly, path: &Path) -> Result<AssemblySettings, ConfigError> {
    check_range(a.window, 1..=1024, path, "assembly.window")?;
    let d = [a.deadline_ms.text, a.deadline_ms.audio, a.deadline_ms.visual];
    check(d.iter().all(|&ms| ms <= 60_000), path, "assembly.deadline_ms", || {
        format!("{d:?}: each at most 60000")
    })?;
    check_range(a.max_utterance_ms, 1..=600_000, path, "assembly.max_utterance_ms")?;
    check_range(a.max_open_utterances, 1..=4096, path, "assembly.max_open_utterances")?;
    check_range(a.max_conversations, 1..=4096, path, "assembly.max_conversations")?;
    check_min(a.idle_conversation_ms, 1_000, path, "assembly.idle_conversation_ms")?;
    let evict_idle_ms = a.evict_idle_ms.unwrap_or(a.idle_conversation_ms.min(10_000));
    check(
        evict_idle_ms <= a.idle_conversation_ms,
        path,
        "assembly.evict_idle_ms",
        || {
            format!(
                "is {evict_idle_ms}; at most idle_conversation_ms ({})",
                a.idle_conversation_ms
            )
        },
    )?;
    Ok(AssemblySettings {
        window: a.window,
        windowing: a.windowing,
        deadline_ms: d,
        max_utterance_ms: a.max_utterance_ms,
        max_open_utterances: a.max_open_utterances,
        max_conversations: a.max_conversations,
        idle_conversation_ms: a.idle_conversation_ms,
        evict_idle_ms,
    })
}

fn validate_inputs(i: RawInputs, path: &Path) -> Result<InputSettings, ConfigError> {
    let tcp = validate_endpoints(&i, path)?;
    let (total_rate, total_burst) = validate_rates(&i, path)?;
    check_range(i.max_connections, 1..=MAX_CONNECTIONS, path, "inputs.max_connections")?;
    check(
        (1..=i.max_connections).contains(&i.max_connections_per_peer),
        path,
        "inputs.max_connections_per_peer",
        || {
            format!(
                "is {}; must be 1..=max_connections ({})",
                i.max_connections_per_peer, i.max_connections
            )
        },
    )?;
    check_range(i.idle_timeout_ms, 100..=3_600_000, path, "inputs.idle_timeout_ms")?;
    check(
        i.unix_mode & !0o777 == 0 && i.unix_mode & 0o600 == 0o600,
        path,
        "inputs.unix_mode",
        || format!("is {:o}; permission bits only, owner read/write required", i.unix_mode),
    )?;
    check(
        i.unix_group.as_deref().is_none_or(|g| !g.is_empty()),
        path,
        "inputs.unix_group",
        || "is empty".into(),
    )?;
    Ok(InputSettings {
        tcp,
        unix: i.unix,
        serial: i.serial,
        allow_remote: i.allow_remote,
        max_frames_per_second: i.max_frames_per_second,
        burst: i.burst,
        max_connections: i.max_connections,
        max_connections_per_peer: i.max_connections_per_peer,
        idle_timeout_ms: i.idle_timeout_ms,
        max_total_frames_per_second: total_rate,
        total_burst,
        unix_mode: i.unix_mode,
        unix_group: i.unix_group,
    })
}

/// The listeners: TCP addresses parsed and loopback unless `allow_remote`, serial bauds from
/// `BAUDS`, Unix socket paths absolute.
fn validate_endpoints(i: &RawInputs, path: &Path) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut tcp = Vec::new();
    for s in &i.tcp {
        let addr: SocketAddr = s.parse().map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: "inputs.tcp",
            detail: format!("{s:?}: {e}"),
        })?;
        check(i.allow_remote || addr.ip().is_loopback(), path, "inputs.tcp", || {
            format!("{addr} is not loopback; set inputs.allow_remote = true to expose it")
        })?;
        tcp.push(addr);
    }
    for p in &i.serial {
        check(BAUDS.contains(&p.baud), path, "inputs.serial.baud", || {
            format!("{} not in {BAUDS:?}", p.baud)
        })?;
    }
    for u in &i.unix {
        check(u.is_absolute(), path, "inputs.unix", || {
            format!("{} must be absolute", u.display())
        })?;
    }
    Ok(tcp)
}

/// The frame-rate buckets: per connection at least 1, the daemon-wide ones (default 4x the
/// per-connection values) at least the per-connection ones. Returns (total rate, total burst).
fn validate_rates(i: &RawInputs, path: &Path) -> Result<(u32, u32), ConfigError> {
    check_min(i.max_frames_per_second, 1, path, "inputs.max_frames_per_second")?;
    check_min(i.burst, 1, path, "inputs.burst")?;
    let total_rate = i
        .max_total_frames_per_second
        .unwrap_or(i.max_frames_per_second.saturating_mul(4));
    let total_burst = i.total_burst.unwrap_or(i.burst.saturating_mul(4));
    check(
        total_rate >= i.max_frames_per_second,
        path,
        "inputs.max_total_frames_per_second",
        || "must be at least max_frames_per_second".into(),
    )?;
    check(total_burst >= i.burst, path, "inputs.total_burst", || {
        "must be at least burst".into()
    })?;
    Ok((total_rate, total_burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_keys_name_their_value_and_range() {
        let cases = [
            (
                "queue_capacity = 8",
                "queue_capacity = 0",
                "`engine.queue_capacity` is 0; must be 1..=1024",
            ),
            (
                "window = 64",
                "window = 2000",
                "`assembly.window` is 2000; must be 1..=1024",
            ),
            ("burst = 400", "burst = 0", "`inputs.burst` is 0; must be at least 1"),
        ];
        for (from, to, want) in cases {
            let text = DEFAULT_PROFILE.replacen(from, to, 1);
            assert_ne!(text, DEFAULT_PROFILE, "the default profile's line {from:?}");
            let err = Settings::parse(&text, Path::new("p.toml")).unwrap_err().to_string();
            assert!(err.ends_with(want), "{to}: {err}");
        }
    }

    #[test]
    fn a_profile_for_a_model_without_visual_may_omit_its_deadline() {
        let text = DEFAULT_PROFILE.replace(
            "deadline_ms = { text = 600, audio = 300, visual = 300 }",
            "deadline_ms = { text = 600, audio = 250 }",
        );
        assert_ne!(text, DEFAULT_PROFILE, "the default profile's deadline line");
        let s = Settings::parse(&text, Path::new("ta.toml")).unwrap();
        assert_eq!(s.assembly.deadline_ms, [600, 250, DEFAULT_DEADLINE_MS]);
    }
}
