//! Property tests of the wire framing (`src/protocol/frame.rs`, protocol v2): random messages of
//! every `Message` variant (feature vectors of any size up to 2048, results of models with random
//! K, class names and regression or not, model descriptions, rejections), random byte streams and
//! mutated valid frames, fed to `FrameDecoder` in random chunk sizes.
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
//!   and the frames after an oversized run still decode;
//! - every `Features` frame is within `MAX_FEATURES_FRAME_LEN`, every result frame within
//!   `max_result_frame_len` of its window, classes and completion name.
//!
//! Budget: about 5-7 s in `cargo test --release --test integration protocol::props` on 2 cores. The cases are
//! generated from a fixed seed so CI is reproducible; `PROPTEST_RNG_SEED=<u64>` explores other
//! streams and `PROPTEST_CASES=<n>` overrides every test's case count.
//!
//! Conversation ids and other strings are generated from printable characters only (ASCII and a
//! few multi-byte letters): ids with control characters are rejected on decoding (`Malformed`).

use proptest::collection::vec as pvec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{TestCaseError, TestRunner};

use crate::util::prop::messages::{classes, completion, conversation, features, message, utterance_results};
use gsdnet_edge::protocol::{
    decode_frame, encode_frame, max_result_frame_len, DecodeError, FrameDecoder, Message, ScoredResult, WindowResult,
    MAX_FEATURES_FRAME_LEN, MAX_FRAME_LEN,
};

/// Seed used when `PROPTEST_RNG_SEED` is not set.
const DEFAULT_SEED: u64 = 0x6773_646e_6574_0012;

fn run<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(crate::util::prop::config(cases, DEFAULT_SEED));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
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
                f = (0..n)
                    .map(|k| ((k as u8).wrapping_mul(31).wrapping_add(seed) % 255) + 1)
                    .collect();
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
        prop_assert!(
            dec.pending() <= max_len,
            "pending {} > max_len {max_len} after {at} bytes",
            dec.pending()
        );
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
        prop_assert_eq!(
            out.len(),
            msgs.len(),
            "outputs {:?}",
            out.iter().map(item).collect::<Vec<_>>()
        );
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
        prop_assert!(
            out.len() == 1 && matches!(&out[0], Ok(m) if same(m, &msgs[0])),
            "after clear: {out:?}"
        );
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
    run(
        3000,
        (random_stream(), chunking(), max_lens),
        |(stream, chunks, max_len)| {
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
            prop_assert_eq!(
                out.iter().map(item).collect::<Vec<_>>(),
                at_once.iter().map(item).collect::<Vec<_>>()
            );
            prop_assert_eq!(dec.pending(), whole.pending());
            // After the noise, a resynchronising delimiter and a valid frame (that fits) decode.
            let good = Message::StatusRequest;
            let mut tail = vec![0u8];
            tail.extend(encode_frame(&good));
            if tail.len() - 1 <= max_len {
                let out: Vec<_> = dec.feed(&tail).collect();
                prop_assert!(
                    matches!(out.last(), Some(Ok(m)) if same(m, &good)),
                    "after noise: {out:?}"
                );
                prop_assert_eq!(dec.pending(), 0);
            }
            Ok(())
        },
    );
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
        let max_len = if tight {
            frames.iter().map(Vec::len).max().unwrap_or(2)
        } else {
            MAX_FRAME_LEN
        };
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
                out.iter()
                    .map(|r| r.as_ref().map(|_| "ok").map_err(Clone::clone))
                    .collect::<Vec<_>>()
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
        prop_assert!(
            out.len() == 1 && matches!(&out[0], Ok(m) if same(m, &msg)),
            "at the limit: {out:?}"
        );
        // One byte over: reported once as Oversized; the frames after it decode.
        if n > 2 {
            let mut stream = frame.clone();
            for m in &after {
                stream.extend(encode_frame(m));
            }
            let mut dec = FrameDecoder::new(n - 1);
            let max_after = after.iter().map(|m| encode_frame(m).len()).max().unwrap_or(0);
            let out = feed_chunked(&mut dec, n - 1, &stream, &chunks)?;
            prop_assert!(
                matches!(out.first(), Some(Err(DecodeError::Oversized { .. }))),
                "over the limit: {out:?}"
            );
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
        prop_assert_eq!(
            out.len(),
            2 + after.len(),
            "outputs {:?}",
            out.iter().map(item).collect::<Vec<_>>()
        );
        prop_assert!(matches!(&out[0], Ok(m) if same(m, &after[0])));
        prop_assert!(
            matches!(&out[1], Err(DecodeError::Oversized { .. })),
            "run: {:?}",
            out[1]
        );
        for (got, want) in out[2..].iter().zip(&after) {
            prop_assert!(matches!(got, Ok(m) if same(m, want)), "after run: {got:?}");
        }
        prop_assert_eq!(dec.pending(), 0);
        Ok(())
    });
}

#[test]
fn results_of_any_model_stay_within_the_result_bound() {
    // Random K, class names, window lengths and completion names: what the daemon checks at
    // start-up (`max_result_frame_len` <= `MAX_FRAME_LEN`) bounds every result it can publish.
    let case = classes().prop_flat_map(|names| {
        (
            Just(names.clone()),
            utterance_results(names, 24),
            completion(),
            conversation(),
        )
    });
    run(2000, case, |(names, utterances, completion, conversation)| {
        let bound = max_result_frame_len(utterances.len(), &names, &completion);
        let r = WindowResult {
            conversation,
            closed_utterance: u32::MAX,
            completion,
            latency_us: u32::MAX,
            utterances,
        };
        let scored = ScoredResult::from_result(&r, 0.5);
        for msg in [Message::Result(r), Message::Scored(scored)] {
            let n = encode_frame(&msg).len();
            prop_assert!(n <= bound, "{n} > {bound}");
        }
        Ok(())
    });
}

#[test]
fn features_of_any_size_stay_within_the_features_bound() {
    run(500, features(), |f| {
        let n = encode_frame(&Message::Features(f)).len();
        prop_assert!(n <= MAX_FEATURES_FRAME_LEN, "{n} > {MAX_FEATURES_FRAME_LEN}");
        Ok(())
    });
}
