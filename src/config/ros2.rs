//! The board profile's `[ros2]` table: the daemon as a ROS 2 node (domain, namespace, node name,
//! topics, QoS, DDS interfaces). Raw TOML (`RawRos2`) -> validated `Ros2Settings`; names follow
//! the ROS 2 naming rules here, so the node never starts with a name DDS would refuse. The
//! settings parse in every build; a build without the `ros2` cargo feature refuses a profile
//! that enables the table (`gsdnet serve` says so at start, exit 78).

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{check, check_range, ConfigError};

/// Environment variable ROS 2 tools read for the domain id; used when the profile sets none.
pub const ROS_DOMAIN_ID_ENV: &str = "ROS_DOMAIN_ID";
/// Highest domain id whose DDS ports stay below 65536 with the default port mapping.
pub const MAX_DOMAIN_ID: u16 = 232;
/// Deepest history a topic may keep (samples).
pub const MAX_DEPTH: u32 = 10_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRos2 {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Absent: `$ROS_DOMAIN_ID`, else 0.
    pub domain_id: Option<u16>,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default = "default_node_name")]
    pub node_name: String,
    #[serde(default = "default_node_name")]
    pub frame_id: String,
    /// Local addresses DDS announces and joins multicast on (absent or empty: every
    /// interface). Not a listening restriction: RustDDS binds its UDP ports on 0.0.0.0, so a
    /// firewall, not this list, keeps other hosts out.
    #[serde(default)]
    pub interfaces: Vec<IpAddr>,
    #[serde(default)]
    pub topics: RawTopics,
    #[serde(default = "default_diagnostics_period_ms")]
    pub diagnostics_period_ms: u64,
    #[serde(default)]
    pub qos: RawQosTable,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopics {
    #[serde(default = "default_input_topic")]
    pub input: String,
    #[serde(default = "default_emotions_topic")]
    pub emotions: String,
    #[serde(default = "default_notices_topic")]
    pub notices: String,
    #[serde(default = "default_diagnostics_topic")]
    pub diagnostics: String,
}

impl Default for RawTopics {
    fn default() -> Self {
        RawTopics {
            input: default_input_topic(),
            emotions: default_emotions_topic(),
            notices: default_notices_topic(),
            diagnostics: default_diagnostics_topic(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQosTable {
    #[serde(default = "default_input_qos")]
    pub input: Qos,
    #[serde(default = "default_output_qos")]
    pub output: Qos,
}

impl Default for RawQosTable {
    fn default() -> Self {
        RawQosTable {
            input: default_input_qos(),
            output: default_output_qos(),
        }
    }
}

/// Reliability of a topic's readers and writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reliability {
    Reliable,
    BestEffort,
}

/// Durability of a topic's writers (a late subscriber gets the kept history or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    Volatile,
    TransientLocal,
}

/// The QoS of one side (input reader, or the writers of results, notices and diagnostics):
/// keep-last history of `depth` samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qos {
    pub reliability: Reliability,
    pub durability: Durability,
    pub depth: u32,
}

/// Fully qualified topic names (namespace applied), e.g. `/robot1/gsdnet/input`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ros2Topics {
    pub input: String,
    pub emotions: String,
    pub notices: String,
    pub diagnostics: String,
}

/// The validated `[ros2]` table of an enabled node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ros2Settings {
    pub domain_id: u16,
    pub namespace: String,
    pub node_name: String,
    pub frame_id: String,
    pub interfaces: Vec<IpAddr>,
    pub topics: Ros2Topics,
    pub diagnostics_period_ms: u64,
    pub input_qos: Qos,
    pub output_qos: Qos,
}

fn default_true() -> bool {
    true
}
fn default_namespace() -> String {
    "/".into()
}
fn default_node_name() -> String {
    "gsdnet".into()
}
fn default_input_topic() -> String {
    "gsdnet/input".into()
}
fn default_emotions_topic() -> String {
    "gsdnet/emotions".into()
}
fn default_notices_topic() -> String {
    "gsdnet/notices".into()
}
fn default_diagnostics_topic() -> String {
    "/diagnostics".into()
}
fn default_diagnostics_period_ms() -> u64 {
    1000
}
fn default_input_qos() -> Qos {
    Qos {
        reliability: Reliability::Reliable,
        durability: Durability::Volatile,
        depth: 256,
    }
}
fn default_output_qos() -> Qos {
    Qos {
        reliability: Reliability::Reliable,
        durability: Durability::Volatile,
        depth: 64,
    }
}

/// A ROS 2 name token: `[A-Za-z_][A-Za-z0-9_]*` without `__`.
fn is_token(t: &str) -> bool {
    let mut chars = t.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !t.contains("__")
}

/// A namespace: `/` or `/tok(/tok)*`.
fn is_namespace(ns: &str) -> bool {
    ns == "/" || ns.strip_prefix('/').is_some_and(|rest| rest.split('/').all(is_token))
}

/// Resolves a topic name against the namespace: absolute names stay, relative ones get the
/// namespace in front. `None` when a token breaks the naming rules.
pub fn resolve_topic(namespace: &str, name: &str) -> Option<String> {
    let (absolute, rest) = match name.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    if rest.is_empty() || !rest.split('/').all(is_token) {
        return None;
    }
    Some(match (absolute, namespace) {
        (true, _) | (false, "/") => format!("/{rest}"),
        (false, ns) => format!("{ns}/{rest}"),
    })
}

/// Validates the table; `Ok(None)` when it is disabled. `env_domain` is `$ROS_DOMAIN_ID`.
pub fn validate_ros2(raw: RawRos2, env_domain: Option<&str>, path: &Path) -> Result<Option<Ros2Settings>, ConfigError> {
    if !raw.enabled {
        return Ok(None);
    }
    let domain_id = match (raw.domain_id, env_domain) {
        (Some(d), _) => d,
        (None, Some(v)) => v.trim().parse::<u16>().map_err(|_| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: "ros2.domain_id",
            detail: format!("is absent and ${ROS_DOMAIN_ID_ENV} = {v:?} is not a number"),
        })?,
        (None, None) => 0,
    };
    check(domain_id <= MAX_DOMAIN_ID, path, "ros2.domain_id", || {
        format!("is {domain_id}; must be 0..={MAX_DOMAIN_ID}")
    })?;
    check(is_namespace(&raw.namespace), path, "ros2.namespace", || {
        format!("{:?} is not a ROS 2 namespace (\"/\" or \"/name/...\")", raw.namespace)
    })?;
    check(is_token(&raw.node_name), path, "ros2.node_name", || {
        format!("{:?} is not a ROS 2 node name", raw.node_name)
    })?;
    check(
        !raw.frame_id.chars().any(char::is_control),
        path,
        "ros2.frame_id",
        || "holds a control character".into(),
    )?;
    check_range(
        raw.diagnostics_period_ms,
        100..=60_000,
        path,
        "ros2.diagnostics_period_ms",
    )?;
    for (field, q) in [
        ("ros2.qos.input.depth", raw.qos.input),
        ("ros2.qos.output.depth", raw.qos.output),
    ] {
        check_range(q.depth, 1..=MAX_DEPTH, path, field)?;
    }
    let topics = resolve_topics(&raw.namespace, &raw.topics, path)?;
    Ok(Some(Ros2Settings {
        domain_id,
        namespace: raw.namespace,
        node_name: raw.node_name,
        frame_id: raw.frame_id,
        interfaces: raw.interfaces,
        topics,
        diagnostics_period_ms: raw.diagnostics_period_ms,
        input_qos: raw.qos.input,
        output_qos: raw.qos.output,
    }))
}

fn resolve_topics(ns: &str, t: &RawTopics, path: &Path) -> Result<Ros2Topics, ConfigError> {
    let one = |field: &'static str, name: &str| {
        resolve_topic(ns, name).ok_or_else(|| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            detail: format!("{name:?} is not a ROS 2 topic name"),
        })
    };
    let topics = Ros2Topics {
        input: one("ros2.topics.input", &t.input)?,
        emotions: one("ros2.topics.emotions", &t.emotions)?,
        notices: one("ros2.topics.notices", &t.notices)?,
        diagnostics: one("ros2.topics.diagnostics", &t.diagnostics)?,
    };
    let names = [&topics.input, &topics.emotions, &topics.notices, &topics.diagnostics];
    let distinct = names.iter().enumerate().all(|(i, a)| names[..i].iter().all(|b| a != b));
    check(distinct, path, "ros2.topics", || {
        format!("{names:?} must be four different topics")
    })?;
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml_text: &str) -> RawRos2 {
        toml::from_str(toml_text).expect("parses")
    }

    #[test]
    fn defaults_resolve_under_the_namespace_and_the_env_domain_applies_when_the_profile_sets_none() {
        let s = validate_ros2(raw("namespace = \"/robot1\""), Some("42"), Path::new("p"))
            .unwrap()
            .unwrap();
        assert_eq!(s.domain_id, 42);
        assert_eq!(s.topics.input, "/robot1/gsdnet/input");
        assert_eq!(s.topics.emotions, "/robot1/gsdnet/emotions");
        assert_eq!(s.topics.diagnostics, "/diagnostics");
        let s = validate_ros2(raw("domain_id = 3"), Some("42"), Path::new("p"))
            .unwrap()
            .unwrap();
        assert_eq!((s.domain_id, s.topics.notices.as_str()), (3, "/gsdnet/notices"));
        assert!(validate_ros2(raw("enabled = false"), None, Path::new("p"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn bad_names_domains_and_depths_are_refused_naming_the_field() {
        let field = |text: &str, env: Option<&str>| match validate_ros2(raw(text), env, Path::new("p")) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(field("domain_id = 233", None), "ros2.domain_id");
        assert_eq!(field("", Some("x")), "ros2.domain_id");
        assert_eq!(field("namespace = \"robot\"", None), "ros2.namespace");
        assert_eq!(field("namespace = \"/a//b\"", None), "ros2.namespace");
        assert_eq!(field("node_name = \"9lives\"", None), "ros2.node_name");
        assert_eq!(field("[topics]\ninput = \"in put\"", None), "ros2.topics.input");
        assert_eq!(field("[topics]\nnotices = \"gsdnet/emotions\"", None), "ros2.topics");
        assert_eq!(
            field(
                "[qos.input]\nreliability = \"reliable\"\ndurability = \"volatile\"\ndepth = 0",
                None
            ),
            "ros2.qos.input.depth"
        );
        assert_eq!(field("diagnostics_period_ms = 5", None), "ros2.diagnostics_period_ms");
    }
}
