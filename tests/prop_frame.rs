//! Property tests of the wire framing (`src/protocol/frame.rs`): random messages of every
//! `Message` variant, random byte streams and mutated valid frames, fed to `FrameDecoder` in
//! random chunk sizes.
//!
//! Properties:
//! - every generated message round-trips through `encode_frame` / `decode_frame` and through the
//!   streaming decoder, and its frame is at most `MAX_FRAME_LEN` bytes, zero-free but for the
//!   final delimiter;
//! - a stream of valid frames split at arbitrary points decodes to exactly the same messages, in
//!   order, with nothing pending at the end (a trailing partial frame is reported by `pending()`
//!   and forgotten by `clear()`);
//! - arbitrary bytes never panic the decoder, `pending()` never exceeds its maximum frame length,
//!   every item it yields uses up a delimiter (at most one more item than there are 0x00 bytes),
//!   and the result does not depend on how the stream was chunked;
//! - in a stream of valid and corrupted frames (bit flips, truncation, inserted bytes, inserted
//!   delimiters, oversized runs, garbage), every valid frame that is preceded by a delimiter (or
//!   starts the stream) is decoded exactly: one bad frame never costs the next good one;
//! - a frame of exactly the decoder's maximum length decodes, one byte more is `Oversized` once,
//!   and the frames after an oversized run still decode.
//!
//! Budget: about 5 s in `cargo test --release --test prop_frame` on 2 cores. The cases are
//! generated from a fixed seed so CI is reproducible; `PROPTEST_RNG_SEED=<u64>` explores other
//! streams and `PROPTEST_CASES=<n>` overrides every test's case count.
//!
//! Conversation ids and other strings are generated from printable characters only (ASCII and a
//! few multi-byte letters): ids with control characters are rejected on decoding (`Malformed`).

mod prop_common;

use proptest::collection::vec as pvec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{TestCaseError, TestRunner};

use gsdnet_edge::protocol::{
    decode_frame, encode_frame, Boundary, ConversationId, DecodeError, Dropout, Features, FrameDecoder,
    HealthReport, Message, Modality, RejectCount, RejectReason, ScoredResult, ScoredUtterance, StatusReport, UtteranceResult, Values,
    WindowResult, MAX_CONVERSATION_ID, MAX_FRAME_LEN, MAX_VALUES,
};

/// Seed used when `PROPTEST_RNG_SEED` is not set.
const DEFAULT_SEED: u64 = 0x6773_646e_6574_0012;


fn run<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(prop_common::config(cases, DEFAULT_SEED));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

// ---- generators -------------------------------------------------------------------------------

/// Printable characters: mostly ASCII, some 2-, 3- and 4-byte UTF-8 letters.
fn printable_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => (0x20u8..=0x7e).prop_map(char::from),
        1 => prop::sample::select(vec!['é', 'ß', 'Ω', 'ж', 'ñ', '€', '→', '日', '本', '😀']),
    ]
}

/// Printable text of at most `max_bytes` UTF-8 bytes (often exactly full, to hit the bound).
fn text(max_bytes: usize) -> impl Strategy<Value = String> {
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

fn conversation() -> impl Strategy<Value = ConversationId> {
    text(MAX_CONVERSATION_ID).prop_map(|s| ConversationId::try_from(s.as_str()).expect("fits by construction"))
}

/// Every f32 bit pattern (NaN, infinities, subnormals) as well as ordinary feature values.
fn float() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => -1000.0f32..1000.0,
        1 => any::<u32>().prop_map(f32::from_bits),
        1 => prop::sample::select(vec![0.0, -0.0, f32::MIN, f32::MAX, f32::EPSILON, f32::INFINITY, f32::NAN]),
    ]
}

fn feature_values() -> impl Strategy<Value = Values> {
    let len = prop_oneof![
        Just(0usize),
        Just(73usize),
        Just(100usize),
        Just(MAX_VALUES),
        0..=MAX_VALUES,
    ];
    len.prop_flat_map(|n| pvec(float(), n))
        .prop_map(|v| Values::from_slice(&v).expect("at most MAX_VALUES by construction"))
}

fn modality() -> impl Strategy<Value = Modality> {
    prop::sample::select(Modality::ALL.to_vec())
}

fn reason() -> impl Strategy<Value = RejectReason> {
    prop::sample::select(RejectReason::ALL.to_vec())
}

/// Small ids most of the time (the daemon's usual range), any value sometimes (varint edges).
fn id32() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0u32..300, 1 => any::<u32>()]
}

fn int64() -> impl Strategy<Value = u64> {
    prop_oneof![2 => 0u64..100_000, 1 => any::<u64>()]
}

fn boundary() -> impl Strategy<Value = Boundary> {
    (conversation(), id32(), any::<u16>(), int64()).prop_map(|(conversation, utterance, speaker, timestamp_us)| {
        Boundary { conversation, utterance, speaker, timestamp_us }
    })
}

fn features() -> impl Strategy<Value = Features> {
    (conversation(), id32(), any::<u16>(), modality(), int64(), feature_values()).prop_map(
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

fn dropout() -> impl Strategy<Value = Dropout> {
    (conversation(), id32(), modality(), int64()).prop_map(|(conversation, utterance, modality, timestamp_us)| Dropout {
        conversation,
        utterance,
        modality,
        timestamp_us,
    })
}

fn status_report() -> impl Strategy<Value = StatusReport> {
    let counters = (int64(), int64(), int64(), int64(), int64(), int64());
    let gauges = (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>());
    let rejected = pvec((reason(), int64()).prop_map(|(reason, count)| RejectCount { reason, count }), 0..=13);
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

fn health_report() -> impl Strategy<Value = HealthReport> {
    let counters = (int64(), int64(), int64(), int64(), int64(), int64(), int64(), int64(), int64());
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

fn utterance_result() -> impl Strategy<Value = UtteranceResult> {
    (id32(), any::<u8>(), any::<u8>(), float(), float(), float()).prop_map(|(utterance, avail, label, p0, p1, reg)| {
        UtteranceResult { utterance, avail, label, probs: [p0, p1], reg }
    })
}

fn window_result() -> impl Strategy<Value = WindowResult> {
    let completion = prop_oneof![
        prop::sample::select(vec!["gsdnet", "meanfill", "zero"]).prop_map(String::from),
        text(24),
    ];
    (conversation(), id32(), completion, any::<u32>(), pvec(utterance_result(), 0..=64)).prop_map(
        |(conversation, closed_utterance, completion, latency_us, utterances)| WindowResult {
            conversation,
            closed_utterance,
            completion,
            latency_us,
            utterances,
        },
    )
}

fn scored_result() -> impl Strategy<Value = ScoredResult> {
    let utterance = (id32(), any::<u8>(), any::<u8>(), pvec(float(), 0..=8), float(), float(), any::<bool>()).prop_map(
        |(utterance, avail, label, probs, reg, confidence, uncertain)| ScoredUtterance { utterance, avail, label, probs, reg, confidence, uncertain },
    );
    (conversation(), id32(), text(24), any::<u32>(), float(), pvec(utterance, 0..=64)).prop_map(
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

/// A random message of any variant (every variant has a fair share).
fn message() -> impl Strategy<Value = Message> {
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
    ]
}

/// Chunk sizes a stream is cut into (cycled): single bytes, small reads, socket-sized reads.
fn chunking() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        1 => Just(vec![1usize]),
        2 => pvec(1usize..=16, 1..8),
        2 => pvec(1usize..=700, 1..8),
        1 => pvec(1usize..=8192, 1..4),
    ]
}

/// How one valid frame is damaged.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one bit anywhere (the delimiter included: the frame then runs into the next one).
    FlipBit(Index, u8),
    /// Keep only a prefix: the delimiter is lost.
    Truncate(Index),
    /// Insert random bytes (zeros included) at a position.
    Insert(Index, Vec<u8>),
    /// Insert a delimiter inside the frame, splitting it in two.
    InsertDelimiter(Index),
    /// Replace the frame by a run of non-zero bytes at least `max_len` long, with or without a
    /// delimiter after it.
    Oversize(usize, bool),
    /// Replace the frame by random bytes.
    Garbage(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), pvec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<Index>().prop_map(Mutation::InsertDelimiter),
        1 => (0usize..2 * MAX_FRAME_LEN, any::<bool>()).prop_map(|(extra, d)| Mutation::Oversize(extra, d)),
        1 => pvec(any::<u8>(), 0..64).prop_map(Mutation::Garbage),
    ]
}

/// Applies mutations to a complete frame (delimiter included).
fn mutate(frame: &[u8], mutations: &[Mutation], max_len: usize, seed: u8) -> Vec<u8> {
    let mut f = frame.to_vec();
    for m in mutations {
        match m {
            Mutation::FlipBit(i, b) if !f.is_empty() => {
                let at = i.index(f.len());
                f[at] ^= 1 << b;
            }
            Mutation::Truncate(i) => {
                let keep = if f.is_empty() { 0 } else { i.index(f.len()) };
                f.truncate(keep);
            }
            Mutation::Insert(i, bytes) => {
                let at = i.index(f.len() + 1);
                f.splice(at..at, bytes.iter().copied());
            }
            Mutation::InsertDelimiter(i) => {
                let at = i.index(f.len() + 1);
                f.insert(at, 0);
            }
            Mutation::Oversize(extra, delimited) => {
                let n = max_len + extra;
                f = (0..n).map(|k| ((k as u8).wrapping_mul(31).wrapping_add(seed) % 255) + 1).collect();
                if *delimited {
                    f.push(0);
                }
            }
            Mutation::Garbage(bytes) => f = bytes.clone(),
            Mutation::FlipBit(..) => {}
        }
    }
    f
}

// ---- helpers ----------------------------------------------------------------------------------

/// Messages are compared by their encoding: equal values encode equally, and NaN payloads
/// (which `PartialEq` cannot compare) are compared bit for bit.
fn same(a: &Message, b: &Message) -> bool {
    encode_frame(a) == encode_frame(b)
}

/// Comparable form of a decoder output.
#[derive(Debug, PartialEq)]
enum Item {
    Msg(Vec<u8>),
    Err(DecodeError),
}

fn item(r: &Result<Message, DecodeError>) -> Item {
    match r {
        Ok(m) => Item::Msg(encode_frame(m)),
        Err(e) => Item::Err(e.clone()),
    }
}

/// Feeds `stream` cut into `chunks` (cycled), draining the decoder after each chunk and checking
/// that `pending()` stays within the decoder's maximum frame length.
fn feed_chunked(
    dec: &mut FrameDecoder,
    max_len: usize,
    stream: &[u8],
    chunks: &[usize],
) -> Result<Vec<Result<Message, DecodeError>>, TestCaseError> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < stream.len() {
        let n = chunks[k % chunks.len()].max(1).min(stream.len() - at);
        k += 1;
        out.extend(dec.feed(&stream[at..at + n]));
        at += n;
        prop_assert!(dec.pending() <= max_len, "pending {} > max_len {max_len} after {at} bytes", dec.pending());
    }
    Ok(out)
}

/// True when `expected` occurs, in order, among the successfully decoded messages of `out`.
fn is_subsequence(expected: &[Message], out: &[Result<Message, DecodeError>]) -> Option<usize> {
    let mut it = out.iter().filter_map(|r| r.as_ref().ok());
    for (i, e) in expected.iter().enumerate() {
        if !it.by_ref().any(|m| same(m, e)) {
            return Some(i);
        }
    }
    None
}

// ---- properties -------------------------------------------------------------------------------

#[test]
fn every_message_variant_round_trips() {
    run(10000, message(), |msg| {
        let frame = encode_frame(&msg);
        prop_assert!(frame.len() <= MAX_FRAME_LEN, "frame of {} bytes", frame.len());
        prop_assert_eq!(frame.last(), Some(&0u8));
        prop_assert!(!frame[..frame.len() - 1].contains(&0), "COBS output must be zero-free");
        let mut body = frame[..frame.len() - 1].to_vec();
        let decoded = decode_frame(&mut body).map_err(|e| TestCaseError::fail(format!("decode_frame: {e}")))?;
        prop_assert!(same(&decoded, &msg), "decoded {decoded:?}");
        if !format!("{msg:?}").contains("NaN") {
            prop_assert_eq!(&decoded, &msg);
        }
        // The streaming decoder, with and without resynchronisation delimiters in front.
        let mut dec = FrameDecoder::default();
        let mut stream = vec![0u8, 0];
        stream.extend_from_slice(&frame);
        let out: Vec<_> = dec.feed(&stream).collect();
        prop_assert_eq!(out.len(), 1);
        prop_assert!(matches!(&out[0], Ok(m) if same(m, &msg)), "streamed {:?}", out[0]);
        prop_assert_eq!(dec.pending(), 0);
        Ok(())
    });
}

#[test]
fn valid_stream_split_anywhere_decodes_exactly() {
    let strategy = (pvec(message(), 1..24), chunking(), pvec(0usize..3, 24), 0usize..64);
    run(3000, strategy, |(msgs, chunks, resync, partial)| {
        let mut stream = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            stream.extend(std::iter::repeat_n(0u8, resync[i % resync.len()]));
            stream.extend(encode_frame(m));
        }
        let mut dec = FrameDecoder::default();
        let out = feed_chunked(&mut dec, MAX_FRAME_LEN, &stream, &chunks)?;
        prop_assert_eq!(out.len(), msgs.len(), "outputs {:?}", out.iter().map(item).collect::<Vec<_>>());
        for (got, want) in out.iter().zip(&msgs) {
            prop_assert!(matches!(got, Ok(m) if same(m, want)), "got {got:?}, want {want:?}");
        }
        prop_assert_eq!(dec.pending(), 0);

        // A trailing partial frame is pending (the sender vanished mid-frame), and after
        // `clear()` the next frame decodes as if nothing happened.
        let next = encode_frame(&msgs[0]);
        let cut = 1 + partial % (next.len() - 1);
        let _ = feed_chunked(&mut dec, MAX_FRAME_LEN, &next[..cut], &chunks)?;
        prop_assert_eq!(dec.pending(), cut);
        dec.clear();
        prop_assert_eq!(dec.pending(), 0);
        let out: Vec<_> = dec.feed(&next).collect();
        prop_assert!(out.len() == 1 && matches!(&out[0], Ok(m) if same(m, &msgs[0])), "after clear: {out:?}");
        Ok(())
    });
}

/// Streams of arbitrary bytes: uniform, sparse delimiters, long delimiter-free runs, mostly zeros.
fn random_stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => pvec(any::<u8>(), 0..8192),
        2 => pvec(prop_oneof![40 => 1u8..=255, 1 => Just(0u8)], 0..16384),
        1 => pvec(1u8..=255, MAX_FRAME_LEN - 8..3 * MAX_FRAME_LEN),
        1 => pvec(prop_oneof![1 => any::<u8>(), 3 => Just(0u8)], 0..2048),
    ]
}

#[test]
fn random_bytes_never_panic_and_stay_bounded() {
    let max_lens = prop_oneof![3 => Just(MAX_FRAME_LEN), 1 => 2usize..300];
    run(3000, (random_stream(), chunking(), max_lens), |(stream, chunks, max_len)| {
        let mut dec = FrameDecoder::new(max_len);
        let out = feed_chunked(&mut dec, max_len, &stream, &chunks)?;
        for r in &out {
            if let Err(e) = r {
                let _ = e.reason(); // every error maps to a counter
                let _ = e.to_string();
            }
        }
        let zeros = stream.iter().filter(|&&b| b == 0).count();
        prop_assert!(out.len() <= zeros + 1, "{} items from {zeros} delimiters", out.len());
        // Chunking must not change anything: compare with the whole stream fed at once.
        let mut whole = FrameDecoder::new(max_len);
        let at_once: Vec<_> = whole.feed(&stream).collect();
        prop_assert_eq!(out.iter().map(item).collect::<Vec<_>>(), at_once.iter().map(item).collect::<Vec<_>>());
        prop_assert_eq!(dec.pending(), whole.pending());
        // After the noise, a resynchronising delimiter and a valid frame (that fits) decode.
        let good = Message::StatusRequest;
        let mut tail = vec![0u8];
        tail.extend(encode_frame(&good));
        if tail.len() - 1 <= max_len {
            let out: Vec<_> = dec.feed(&tail).collect();
            prop_assert!(matches!(out.last(), Some(Ok(m)) if same(m, &good)), "after noise: {out:?}");
            prop_assert_eq!(dec.pending(), 0);
        }
        Ok(())
    });
}

/// One element of a mixed stream: a valid message, possibly damaged.
#[derive(Debug, Clone)]
struct Piece {
    msg: Message,
    damage: Vec<Mutation>,
}

fn piece() -> impl Strategy<Value = Piece> {
    let damage = prop_oneof![3 => Just(Vec::new()), 2 => pvec(mutation(), 1..3)];
    (message(), damage).prop_map(|(msg, damage)| Piece { msg, damage })
}

#[test]
fn a_bad_frame_never_costs_the_next_good_one() {
    let strategy = (pvec(piece(), 1..20), chunking(), any::<bool>(), any::<u8>());
    run(3000, strategy, |(pieces, chunks, tight, seed)| {
        let frames: Vec<Vec<u8>> = pieces.iter().map(|p| encode_frame(&p.msg)).collect();
        // Either the protocol's limit or exactly the longest valid frame (the boundary case).
        let max_len = if tight { frames.iter().map(Vec::len).max().unwrap_or(2) } else { MAX_FRAME_LEN };
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (p, frame) in pieces.iter().zip(&frames) {
            if p.damage.is_empty() {
                if stream.last().is_none_or(|&b| b == 0) {
                    expected.push(p.msg.clone());
                }
                stream.extend_from_slice(frame);
            } else {
                stream.extend(mutate(frame, &p.damage, max_len, seed));
            }
        }
        let mut dec = FrameDecoder::new(max_len);
        let out = feed_chunked(&mut dec, max_len, &stream, &chunks)?;
        if let Some(i) = is_subsequence(&expected, &out) {
            return Err(TestCaseError::fail(format!(
                "valid frame {i} of {} lost: {:?}\noutputs: {:?}",
                expected.len(),
                expected[i],
                out.iter().map(|r| r.as_ref().map(|_| "ok").map_err(Clone::clone)).collect::<Vec<_>>()
            )));
        }
        let oks = out.iter().filter(|r| r.is_ok()).count();
        prop_assert!(oks <= pieces.len() * 3, "{oks} messages from {} pieces", pieces.len());
        Ok(())
    });
}

#[test]
fn frame_length_limit_is_exact_and_oversize_is_reported_once() {
    let strategy = (message(), pvec(message(), 1..4), 0usize..2 * MAX_FRAME_LEN, chunking());
    run(2000, strategy, |(msg, after, extra, chunks)| {
        let frame = encode_frame(&msg);
        let n = frame.len();
        // Exactly at the limit (delimiter included): decodes.
        let mut dec = FrameDecoder::new(n);
        let out = feed_chunked(&mut dec, n, &frame, &chunks)?;
        prop_assert!(out.len() == 1 && matches!(&out[0], Ok(m) if same(m, &msg)), "at the limit: {out:?}");
        // One byte over: reported once as Oversized; the frames after it decode.
        if n > 2 {
            let mut stream = frame.clone();
            for m in &after {
                stream.extend(encode_frame(m));
            }
            let mut dec = FrameDecoder::new(n - 1);
            let max_after = after.iter().map(|m| encode_frame(m).len()).max().unwrap_or(0);
            let out = feed_chunked(&mut dec, n - 1, &stream, &chunks)?;
            prop_assert!(matches!(out.first(), Some(Err(DecodeError::Oversized { .. }))), "over the limit: {out:?}");
            if max_after < n {
                prop_assert_eq!(out.len(), 1 + after.len());
                for (got, want) in out[1..].iter().zip(&after) {
                    prop_assert!(matches!(got, Ok(m) if same(m, want)), "after oversize: {got:?}");
                }
            }
        }
        // An oversized run of non-zero bytes in a valid stream: exactly one error, nothing lost.
        let mut stream = Vec::new();
        stream.extend(encode_frame(&after[0]));
        stream.extend((0..MAX_FRAME_LEN + extra).map(|k| (k % 251) as u8 + 1));
        stream.push(0);
        for m in &after {
            stream.extend(encode_frame(m));
        }
        let mut dec = FrameDecoder::default();
        let out = feed_chunked(&mut dec, MAX_FRAME_LEN, &stream, &chunks)?;
        prop_assert_eq!(out.len(), 2 + after.len(), "outputs {:?}", out.iter().map(item).collect::<Vec<_>>());
        prop_assert!(matches!(&out[0], Ok(m) if same(m, &after[0])));
        prop_assert!(matches!(&out[1], Err(DecodeError::Oversized { .. })), "run: {:?}", out[1]);
        for (got, want) in out[2..].iter().zip(&after) {
            prop_assert!(matches!(got, Ok(m) if same(m, want)), "after run: {got:?}");
        }
        prop_assert_eq!(dec.pending(), 0);
        Ok(())
    });
}
