//! The ROS 2 node (feature `ros2`): `Ros2Node::start` joins the DDS domain with `ros2-client`
//! (RustDDS, no ROS installation) and creates the input subscription and the three publishers;
//! `serve_ros2` is the async bridge the serve loop runs beside its listeners.
//!
//! Input is one more sender for the assembly task: every `SensorInput` passes the ROS 2 side's
//! token bucket (the profile's per-sender `max_frames_per_second`/`burst`), is converted
//! (`convert::to_message`) and handed over with the node's `NoticeBox`, so refusals (here or in
//! the assembler) are counted like a socket client's and come back as `Notice`s at most every
//! `NOTICE_INTERVAL`. Output: every published window, the notices, and the diagnostics every
//! `diagnostics_period_ms`. Nothing waits on a subscriber: writers never block (a full
//! reliable send window is a counted publish error).
//!
//! Shutdown follows the daemon's phases: reading stops with the input phase (dropping its sender
//! lets the assembly task finish); at the output phase the results published meanwhile, the
//! pending notices and a last diagnostics message go out, then the node is dropped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use ros2_client::dds::rustdds::{DomainParticipantBuilder, Topic};
use ros2_client::dds::{Context, Node, Publisher, Subscription};
use ros2_client::qos::{Durability as RDurability, History, QosProfile, Reliability as RReliability, WhenFull};
use ros2_client::{MessageTypeName, Name, NodeName, NodeOptions};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::convert::{diagnostics, emotion_window, notice, to_message, NodeCounts};
use super::msgs::{types, DiagnosticArray, EmotionWindow, Header, Notice, SensorInput, Time};
use super::Ros2Error;
use crate::config::ros2::{Durability, Qos, Reliability};
use crate::config::Ros2Settings;
use crate::daemon::limits::TokenBucket;
use crate::daemon::notices::{NoticeBox, NOTICE_INTERVAL};
use crate::daemon::shared::{stopped, Input, Phases, Shared};
use crate::daemon::stats::{bump, is_loud};
use crate::protocol::RejectReason;

/// The joined node: its context (the DDS participant), input and the three outputs.
pub struct Ros2Node {
    settings: Ros2Settings,
    hardware_id: String,
    fq_name: String,
    // Dropped in this order: the entities, then their node, then the participant.
    input: Subscription<SensorInput>,
    emotions: Publisher<EmotionWindow>,
    notices: Publisher<Notice>,
    diagnostics: Publisher<DiagnosticArray>,
    _node: Node,
    _context: Context,
}

fn entity(what: &'static str, name: &str, e: impl std::fmt::Display) -> Ros2Error {
    Ros2Error::Entity {
        what,
        name: name.to_string(),
        detail: e.to_string(),
    }
}

/// The ROS 2 QoS profile of one side. Writers never wait for a full send window.
fn qos(q: &Qos) -> QosProfile {
    let reliability = match q.reliability {
        Reliability::Reliable => RReliability::Reliable {
            when_full: WhenFull::Fail,
        },
        Reliability::BestEffort => RReliability::BestEffort,
    };
    let durability = match q.durability {
        Durability::Volatile => RDurability::Volatile,
        Durability::TransientLocal => RDurability::TransientLocal,
    };
    QosProfile {
        reliability,
        durability,
        history: History::KeepLast {
            depth: q.depth as usize,
        },
        ..QosProfile::subscription_default()
    }
}

/// Every configured interface address must be this machine's: RustDDS would otherwise join
/// with no locator at all and never hear anyone.
fn check_interfaces(s: &Ros2Settings) -> Result<(), Ros2Error> {
    for ip in &s.interfaces {
        if let Err(e) = std::net::UdpSocket::bind((*ip, 0)) {
            return Err(Ros2Error::Domain {
                domain: s.domain_id,
                detail: format!("interface address {ip} is not usable on this machine ({e})"),
            });
        }
    }
    Ok(())
}

/// The DDS topic of ROS 2 topic `name` (fully qualified) with message type `ty`.
fn topic(node: &Node, name: &str, ty: (&str, &str), q: &QosProfile) -> Result<Topic, Ros2Error> {
    let n = Name::parse(name).map_err(|e| entity("topic", name, e))?;
    node.create_topic(&n, MessageTypeName::new(ty.0, ty.1), q)
        .map_err(|e| entity("topic", name, e))
}

/// A publisher of `T` on topic `name`.
fn publisher<T: serde::Serialize>(
    node: &mut Node,
    name: &str,
    ty: (&str, &str),
    q: &QosProfile,
) -> Result<Publisher<T>, Ros2Error> {
    let t = topic(node, name, ty, q)?;
    node.create_publisher(&t, None)
        .map_err(|e| entity("publisher", name, e))
}

impl Ros2Node {
    /// Joins the domain and creates the topics. Blocking (binds sockets): call it off the
    /// async workers, bounded in time (`service`).
    pub fn start(s: &Ros2Settings, hardware_id: &str) -> Result<Ros2Node, Ros2Error> {
        let domain = s.domain_id;
        check_interfaces(s)?;
        let mut builder = DomainParticipantBuilder::new(domain);
        if !s.interfaces.is_empty() {
            builder = builder.with_only_networks(s.interfaces.iter().copied());
        }
        let participant = builder.build().map_err(|e| Ros2Error::Domain {
            domain,
            detail: e.to_string(),
        })?;
        let context = Context::from_domain_participant(participant).map_err(|e| Ros2Error::Domain {
            domain,
            detail: e.to_string(),
        })?;
        let node_name = NodeName::new(&s.namespace, &s.node_name).map_err(|e| entity("node", &s.node_name, e))?;
        let fq_name = node_name.fully_qualified_name();
        let mut node = context
            .new_node(node_name, NodeOptions::new().enable_rosout(false))
            .map_err(|e| entity("node", &fq_name, e))?;
        let t = &s.topics;
        let input_topic = topic(&node, &t.input, types::SENSOR_INPUT, &qos(&s.input_qos))?;
        let input = node
            .create_subscription(&input_topic, None)
            .map_err(|e| entity("subscription", &t.input, e))?;
        let out_qos = qos(&s.output_qos);
        let emotions = publisher(&mut node, &t.emotions, types::EMOTION_WINDOW, &out_qos)?;
        let notices = publisher(&mut node, &t.notices, types::NOTICE, &out_qos)?;
        let diagnostics = publisher(&mut node, &t.diagnostics, types::DIAGNOSTIC_ARRAY, &out_qos)?;
        Ok(Ros2Node {
            settings: s.clone(),
            hardware_id: hardware_id.to_string(),
            fq_name,
            input,
            emotions,
            notices,
            diagnostics,
            _node: node,
            _context: context,
        })
    }
}

/// What the two halves of the bridge share.
struct Bridge {
    node: Ros2Node,
    shared: Arc<Shared>,
    book: Arc<NoticeBox>,
    source: Arc<str>,
    model_bits: u8,
    counts: std::sync::Mutex<NodeCounts>,
}

impl Bridge {
    fn header(&self) -> Header {
        Header {
            stamp: Time::from_system(SystemTime::now()),
            frame_id: self.node.settings.frame_id.clone(),
        }
    }

    fn count(&self, f: impl FnOnce(&mut NodeCounts)) {
        f(&mut self.counts.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn refuse(
        &self,
        reason: RejectReason,
        conversation: Option<&crate::protocol::ConversationId>,
        utterance: Option<u32>,
        detail: &dyn std::fmt::Display,
    ) {
        self.shared.stats.reject(reason, &self.source, detail);
        self.book.record(reason, conversation, utterance, detail);
        self.count(|c| c.inputs_refused += 1);
    }
}

/// Runs the bridge until the output phase; `model_bits` are the served model's modalities.
pub async fn serve_ros2(
    node: Ros2Node,
    shared: Arc<Shared>,
    input: mpsc::Sender<Input>,
    phases: Phases,
    model_bits: u8,
) {
    let source: Arc<str> = format!("ros2:{}", node.settings.topics.input).into();
    log::info!(
        "ROS 2 node {} on domain {}: input {}, emotions {}, notices {}, diagnostics {}",
        node.fq_name,
        node.settings.domain_id,
        node.settings.topics.input,
        node.settings.topics.emotions,
        node.settings.topics.notices,
        node.settings.topics.diagnostics
    );
    let bridge = Bridge {
        node,
        shared,
        book: Arc::new(NoticeBox::default()),
        source,
        model_bits,
        counts: std::sync::Mutex::new(NodeCounts::default()),
    };
    let results = bridge.shared.results.subscribe();
    tokio::join!(
        read_input(&bridge, input, phases.input.clone()),
        write_output(&bridge, results, phases.output)
    );
}

/// Reads `SensorInput` until the input phase; the sender is dropped when it returns.
async fn read_input(b: &Bridge, input: mpsc::Sender<Input>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let shared = &b.shared;
    let mut bucket = TokenBucket::new(shared.max_frames_per_second, shared.burst, Instant::now());
    let stream = b.node.input.async_stream();
    futures::pin_mut!(stream);
    loop {
        let sample = tokio::select! {
            s = stream.next() => s,
            _ = stopped(&mut stop) => break,
        };
        let Some(sample) = sample else { break };
        b.count(|c| c.inputs_received += 1);
        let msg = match sample {
            Ok((msg, _info)) => msg,
            Err(e) => {
                b.refuse(
                    RejectReason::Malformed,
                    None,
                    None,
                    &format_args!("undecodable sample: {e}"),
                );
                continue;
            }
        };
        if !bucket.take(Instant::now()) {
            let conversation = crate::protocol::conversation_id(&msg.conversation);
            let detail = "ROS 2 input over the frame rate";
            b.refuse(RejectReason::Flood, conversation.as_ref(), Some(msg.utterance), &detail);
            continue;
        }
        match to_message(&msg) {
            Ok(msg) => {
                let input_msg = Input {
                    msg,
                    source: Arc::clone(&b.source),
                    notices: Arc::clone(&b.book),
                };
                if input.send(input_msg).await.is_err() {
                    break;
                }
            }
            Err(r) => b.refuse(r.reason, r.conversation.as_ref(), r.utterance, &r.detail),
        }
    }
}

/// Publishes results, notices and diagnostics until the output phase, then what is left.
async fn write_output(
    b: &Bridge,
    mut results: broadcast::Receiver<Arc<crate::daemon::inference::Published>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let period = Duration::from_millis(b.node.settings.diagnostics_period_ms);
    let mut diag = tokio::time::interval(period);
    let mut notice_tick = tokio::time::interval(NOTICE_INTERVAL);
    loop {
        tokio::select! {
            r = results.recv() => match r {
                Ok(p) => publish_result(b, &p),
                Err(broadcast::error::RecvError::Lagged(n)) => lagged(b, n),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = notice_tick.tick() => publish_notices(b),
            _ = diag.tick() => publish_diagnostics(b),
            _ = stopped(&mut stop) => break,
        }
    }
    while let Ok(p) = results.try_recv() {
        publish_result(b, &p);
    }
    publish_notices(b);
    publish_diagnostics(b);
}

fn lagged(b: &Bridge, n: u64) {
    log::warn!("ROS 2 publisher too slow: {n} results skipped");
    let s = &b.shared.stats;
    s.results_lagged.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    s.results_lost.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

fn publish_failed(b: &Bridge, what: &str, e: &dyn std::fmt::Display) {
    let mut n = 0;
    b.count(|c| {
        c.publish_errors += 1;
        n = c.publish_errors;
    });
    if is_loud(n) {
        log::warn!("ROS 2 {what} not published: {e} ({n} publish errors so far)");
    }
}

fn publish_result(b: &Bridge, p: &crate::daemon::inference::Published) {
    let msg = emotion_window(p, b.model_bits, b.shared.abstain_below, b.header());
    match b.node.emotions.publish(msg) {
        Ok(()) => b.count(|c| c.results_published += 1),
        Err(e) => {
            bump(&b.shared.stats.results_lost);
            publish_failed(b, "result", &format_args!("{e:?}"));
        }
    }
}

fn publish_notices(b: &Bridge) {
    for n in b.book.take() {
        match b.node.notices.publish(notice(&n, b.header())) {
            Ok(()) => b.count(|c| c.notices_published += 1),
            Err(e) => {
                b.book.put_back(n);
                publish_failed(b, "notice", &format_args!("{e:?}"));
                return;
            }
        }
    }
}

fn publish_diagnostics(b: &Bridge) {
    let shared = &b.shared;
    let status = shared.status_report();
    let mut health = shared.stats.health();
    health.connections_open = u32::try_from(shared.registry.len()).unwrap_or(u32::MAX);
    let counts = *b.counts.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("gsdnet: {}", b.node.fq_name);
    let msg = diagnostics(&name, &b.node.hardware_id, &status, &health, counts, b.header());
    if let Err(e) = b.node.diagnostics.publish(msg) {
        publish_failed(b, "diagnostics", &format_args!("{e:?}"));
    }
}
