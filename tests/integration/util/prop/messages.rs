//! Generators of random protocol messages for `protocol::props`: every `Message` variant
//! within the protocol's bounds (feature vectors up to 2048 values, results of models with
//! random K and class names, with or without a regression, model descriptions, rejections).
//! Strings are printable (ids with control characters are refused on decoding).

use proptest::collection::vec as pvec;
use proptest::prelude::*;

use gsdnet_edge::capacity::{MAX_CLASSES, MAX_CLASS_NAME, MAX_FEATURE_SIZE};
use gsdnet_edge::protocol::{
    Boundary, BoundedVec, ClassName, ConversationId, Dropout, Features, HealthReport, Message, Modality, ModalityInfo,
    ModelInfoReport, Probs, RejectCount, RejectNotice, RejectReason, ScoredResult, ScoredUtterance, StatusReport,
    UtteranceResult, Values, WindowResult, MAX_CONVERSATION_ID, MAX_REJECT_DETAIL,
};

/// Printable characters: mostly ASCII, some 2-, 3- and 4-byte UTF-8 letters.
pub fn printable_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => (0x20u8..=0x7e).prop_map(char::from),
        1 => prop::sample::select(vec!['é', 'ß', 'Ω', 'ж', 'ñ', '€', '→', '日', '本', '😀']),
    ]
}

/// Printable text of at most `max_bytes` UTF-8 bytes (often exactly full, to hit the bound).
pub fn text(max_bytes: usize) -> impl Strategy<Value = String> {
    pvec(printable_char(), 0..=max_bytes + 8).prop_map(move |chars| {
        let mut s = String::new();
        for c in chars {
            if s.len() + c.len_utf8() > max_bytes {
                break;
            }
            s.push(c);
        }
        s
    })
}

pub fn conversation() -> impl Strategy<Value = ConversationId> {
    text(MAX_CONVERSATION_ID).prop_map(|s| ConversationId::try_from(s.as_str()).expect("fits by construction"))
}

/// Every f32 bit pattern (NaN, infinities, subnormals) as well as ordinary feature values.
pub fn float() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => -1000.0f32..1000.0,
        1 => any::<u32>().prop_map(f32::from_bits),
        1 => prop::sample::select(vec![0.0, -0.0, f32::MIN, f32::MAX, f32::EPSILON, f32::INFINITY, f32::NAN]),
    ]
}

/// Sizes of real models (CMU-MOSI 100 / 73, IEMOCAP 384 / 47, the former LSA text 300, 1024),
/// the bounds, and any size; long vectors are a minority so that streams of many messages stay
/// quick to check.
pub fn feature_values() -> impl Strategy<Value = Values> {
    let len = prop_oneof![
        2 => Just(0usize),
        4 => prop::sample::select(vec![47usize, 73, 100, 128]),
        4 => 0usize..=128,
        1 => prop::sample::select(vec![300usize, 384, 1024, MAX_FEATURE_SIZE]),
        1 => 0..=MAX_FEATURE_SIZE,
    ];
    len.prop_flat_map(|n| pvec(float(), n))
        .prop_map(|v| Values::from_slice(&v).expect("at most MAX_FEATURE_SIZE by construction"))
}

pub fn modality() -> impl Strategy<Value = Modality> {
    prop::sample::select(Modality::ALL.to_vec())
}

pub fn reason() -> impl Strategy<Value = RejectReason> {
    prop::sample::select(RejectReason::ALL.to_vec())
}

/// Small ids most of the time (the daemon's usual range), any value sometimes (varint edges).
pub fn id32() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0u32..300, 1 => any::<u32>()]
}

pub fn int64() -> impl Strategy<Value = u64> {
    prop_oneof![2 => 0u64..100_000, 1 => any::<u64>()]
}

pub fn boundary() -> impl Strategy<Value = Boundary> {
    (conversation(), id32(), any::<u16>(), int64()).prop_map(|(conversation, utterance, speaker, timestamp_us)| {
        Boundary {
            conversation,
            utterance,
            speaker,
            timestamp_us,
        }
    })
}

pub fn features() -> impl Strategy<Value = Features> {
    (
        conversation(),
        id32(),
        any::<u16>(),
        modality(),
        int64(),
        feature_values(),
    )
        .prop_map(
            |(conversation, utterance, speaker, modality, timestamp_us, values)| Features {
                conversation,
                utterance,
                speaker,
                modality,
                timestamp_us,
                values,
            },
        )
}

pub fn dropout() -> impl Strategy<Value = Dropout> {
    (conversation(), id32(), modality(), int64()).prop_map(|(conversation, utterance, modality, timestamp_us)| {
        Dropout {
            conversation,
            utterance,
            modality,
            timestamp_us,
        }
    })
}

pub fn status_report() -> impl Strategy<Value = StatusReport> {
    let counters = (int64(), int64(), int64(), int64(), int64(), int64());
    let gauges = (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>());
    let rejected = pvec(
        (reason(), int64()).prop_map(|(reason, count)| RejectCount { reason, count }),
        0..=RejectReason::ALL.len(),
    );
    (int64(), text(200), counters, gauges, rejected, int64()).prop_map(
        |(uptime_ms, engine, c, g, rejected, empty_utterances)| StatusReport {
            uptime_ms,
            engine,
            frames_accepted: c.0,
            windows_run: c.1,
            windows_superseded: c.2,
            windows_dropped: c.3,
            inference_errors: c.4,
            results_published: c.5,
            queue_len: g.0,
            queue_capacity: g.1,
            open_conversations: g.2,
            clients: g.3,
            rejected,
            empty_utterances,
        },
    )
}

pub fn health_report() -> impl Strategy<Value = HealthReport> {
    let counters = (
        int64(),
        int64(),
        int64(),
        int64(),
        int64(),
        int64(),
        int64(),
        int64(),
        int64(),
    );
    (counters, any::<u32>(), any::<u32>(), any::<bool>()).prop_map(|(c, connections_open, errors, watchdog_stopped)| {
        HealthReport {
            conversation_restarts: c.0,
            late_replayed: c.1,
            conversations_evicted: c.2,
            utterances_flushed: c.3,
            connections_open,
            connections_refused: c.4,
            connections_evicted: c.5,
            connections_idle_closed: c.6,
            slow_clients_disconnected: c.7,
            results_lost: c.8,
            consecutive_inference_errors: errors,
            watchdog_stopped,
        }
    })
}

pub fn class() -> impl Strategy<Value = ClassName> {
    text(MAX_CLASS_NAME).prop_map(|s| ClassName::try_from(s.as_str()).expect("fits by construction"))
}

/// A model's classes: K of 1..=`MAX_CLASSES` names (the wire does not require them distinct).
pub fn classes() -> impl Strategy<Value = Vec<ClassName>> {
    prop_oneof![2 => pvec(class(), 2..=6), 1 => pvec(class(), 1..=MAX_CLASSES)]
}

pub fn probs(k: usize) -> impl Strategy<Value = Probs> {
    pvec(float(), k).prop_map(|v| Probs::from_vec(v).expect("at most MAX_CLASSES"))
}

/// Utterances of one window of a model with `names` (labels index them, K probabilities each).
pub fn utterance_results(names: Vec<ClassName>, max: usize) -> impl Strategy<Value = Vec<UtteranceResult>> {
    let k = names.len();
    let one = (id32(), any::<u8>(), 0..k, probs(k), proptest::option::of(float())).prop_map(
        move |(utterance, avail, label, probs, reg)| UtteranceResult {
            utterance,
            avail,
            label: label as u16,
            label_name: names[label].clone(),
            probs,
            reg,
        },
    );
    pvec(one, 0..=max)
}

pub fn completion() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["gsdnet", "meanfill", "zero"]).prop_map(String::from),
        text(24),
    ]
}

/// At most 40 utterances: with 64 classes of 32-byte names that still fits `MAX_FRAME_LEN`.
pub fn window_result() -> impl Strategy<Value = WindowResult> {
    let utterances = classes().prop_flat_map(|names| utterance_results(names, 40));
    (conversation(), id32(), completion(), any::<u32>(), utterances).prop_map(
        |(conversation, closed_utterance, completion, latency_us, utterances)| WindowResult {
            conversation,
            closed_utterance,
            completion,
            latency_us,
            utterances,
        },
    )
}

pub fn scored_result() -> impl Strategy<Value = ScoredResult> {
    let scored = |u: UtteranceResult, (confidence, uncertain): (f32, bool)| ScoredUtterance {
        utterance: u.utterance,
        avail: u.avail,
        label: u.label,
        label_name: u.label_name,
        probs: u.probs,
        reg: u.reg,
        confidence,
        uncertain,
    };
    let utterances = classes()
        .prop_flat_map(|names| utterance_results(names, 40))
        .prop_flat_map(move |us| {
            let n = us.len();
            (Just(us), pvec((float(), any::<bool>()), n))
        })
        .prop_map(move |(us, extra)| us.into_iter().zip(extra).map(|(u, e)| scored(u, e)).collect::<Vec<_>>());
    (conversation(), id32(), text(24), any::<u32>(), float(), utterances).prop_map(
        |(conversation, closed_utterance, completion, latency_us, abstain_below, utterances)| ScoredResult {
            conversation,
            closed_utterance,
            completion,
            latency_us,
            abstain_below,
            utterances,
        },
    )
}

pub fn model_info() -> impl Strategy<Value = ModelInfoReport> {
    let modality =
        (modality(), 0u32..=MAX_FEATURE_SIZE as u32).prop_map(|(modality, size)| ModalityInfo { modality, size });
    let mods = pvec(modality, 0..=3).prop_map(|v| heapless::Vec::from_slice(&v).expect("at most 3"));
    let classes = pvec(class(), 0..=MAX_CLASSES).prop_map(|v| BoundedVec::from_vec(v).expect("at most MAX_CLASSES"));
    (text(40), text(16), mods, classes, any::<bool>(), any::<u32>()).prop_map(
        |(name, version, modalities, classes, has_regression, window)| ModelInfoReport {
            name,
            version,
            modalities,
            classes,
            has_regression,
            window,
        },
    )
}

pub fn reject_notice() -> impl Strategy<Value = RejectNotice> {
    (reason(), text(MAX_REJECT_DETAIL + 16)).prop_map(|(reason, detail)| RejectNotice::new(reason, &detail))
}

/// A random message of any variant (every variant has a fair share).
pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        3 => features().prop_map(Message::Features),
        1 => boundary().prop_map(Message::UtteranceStart),
        1 => boundary().prop_map(Message::UtteranceEnd),
        1 => dropout().prop_map(Message::Dropout),
        1 => conversation().prop_map(|conversation| Message::Reset { conversation }),
        1 => Just(Message::Subscribe),
        1 => Just(Message::StatusRequest),
        1 => status_report().prop_map(Message::Status),
        1 => window_result().prop_map(Message::Result),
        1 => Just(Message::HealthRequest),
        1 => health_report().prop_map(Message::Health),
        1 => Just(Message::SubscribeScored),
        1 => scored_result().prop_map(Message::Scored),
        1 => Just(Message::ModelInfoRequest),
        1 => model_info().prop_map(Message::ModelInfo),
        1 => reject_notice().prop_map(Message::Reject),
    ]
}
