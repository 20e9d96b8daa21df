//! Unit tests of the assembly state machine with explicit clock values (milliseconds).

use super::{Assembler, AssemblySettings, WindowJob};
use crate::modality::Modalities;
use crate::protocol::{conversation_id, values, Boundary, Dropout, Features, Message, Modality, RejectReason};

/// A three-modality model with small sizes.
fn mods() -> Modalities {
    Modalities::new([4, 3, 2]).unwrap()
}

/// Small limits shared by the assembly's unit tests (also `end_tests`).
pub(super) fn settings() -> AssemblySettings {
    AssemblySettings {
        window: 3,
        windowing: crate::config::Windowing::Sliding,
        deadline_ms: [100, 200, 300],
        max_utterance_ms: 10_000,
        max_open_utterances: 4,
        max_conversations: 2,
        idle_conversation_ms: 60_000,
        evict_idle_ms: 10_000,
    }
}

/// A `Features` message of speaker 1 at time 0 carrying `v`.
fn features(conv: &str, utt: u32, m: Modality, v: &[f32]) -> Message {
    Message::Features(Features {
        conversation: conversation_id(conv).unwrap(),
        utterance: utt,
        speaker: 1,
        modality: m,
        timestamp_us: 0,
        values: values(v).unwrap(),
    })
}

/// Features of `m`'s size in `mods()`, every value `v`.
fn feat(conv: &str, utt: u32, m: Modality, v: f32) -> Message {
    let dim = mods().size(m).unwrap_or(1);
    features(conv, utt, m, &vec![v; dim])
}

/// The boundary of an utterance of speaker 1 at time 0 (`end`, `start`).
fn boundary(conv: &str, utt: u32) -> Boundary {
    Boundary {
        conversation: conversation_id(conv).unwrap(),
        utterance: utt,
        speaker: 1,
        timestamp_us: 0,
    }
}

fn end(conv: &str, utt: u32) -> Message {
    Message::UtteranceEnd(boundary(conv, utt))
}

fn dropout(conv: &str, utt: u32, m: Modality) -> Message {
    Message::Dropout(Dropout {
        conversation: conversation_id(conv).unwrap(),
        utterance: utt,
        modality: m,
        timestamp_us: 0,
    })
}

fn all(a: &mut Assembler, conv: &str, utt: u32, t: u64) -> Vec<WindowJob> {
    let mut jobs = Vec::new();
    for m in Modality::ALL {
        jobs.extend(a.handle(&feat(conv, utt, m, utt as f32), t).unwrap());
    }
    jobs
}

#[test]
fn utterance_closes_as_soon_as_all_modalities_arrive() {
    let mut a = Assembler::new(settings(), mods());
    assert!(a.handle(&feat("c", 0, Modality::Text, 1.0), 0).unwrap().is_empty());
    assert!(a.handle(&feat("c", 0, Modality::Visual, 1.0), 5).unwrap().is_empty());
    let jobs = a.handle(&feat("c", 0, Modality::Audio, 1.0), 7).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].utterances.len(), 1);
    assert_eq!(jobs[0].utterances[0].avail_bits(), 7);
    assert_eq!(a.next_deadline(), None);
}

#[test]
fn per_modality_deadlines_count_from_utterance_end() {
    let mut a = Assembler::new(settings(), mods());
    a.handle(&feat("c", 0, Modality::Text, 1.0), 0).unwrap();
    a.handle(&end("c", 0), 1_000).unwrap();
    // Audio due at 1200, visual at 1300.
    assert_eq!(a.next_deadline(), Some(1_200));
    assert!(a.poll(1_199).is_empty());
    assert!(a.poll(1_200).is_empty(), "visual still awaited");
    assert_eq!(a.next_deadline(), Some(1_300));
    let jobs = a.poll(1_300);
    assert_eq!(jobs.len(), 1);
    let u = &jobs[0].utterances[0];
    assert_eq!(u.avail_bits(), 1);
    assert_eq!(u.features[0], Some(vec![1.0; 4]));
    assert_eq!(u.features[1], None);
}

#[test]
fn without_end_the_fallback_base_is_open_plus_max_utterance() {
    let mut a = Assembler::new(settings(), mods());
    a.handle(&feat("c", 0, Modality::Audio, 1.0), 50).unwrap();
    assert_eq!(a.next_deadline(), Some(50 + 10_000 + 100));
    assert!(a.poll(10_349).is_empty());
    assert_eq!(a.poll(10_350).len(), 1);
}

#[test]
fn dropout_marks_missing_without_waiting() {
    let mut a = Assembler::new(settings(), mods());
    a.handle(&feat("c", 0, Modality::Text, 1.0), 0).unwrap();
    a.handle(&feat("c", 0, Modality::Audio, 1.0), 0).unwrap();
    let jobs = a.handle(&dropout("c", 0, Modality::Visual), 1).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].utterances[0].avail_bits(), 3);
}

#[test]
fn data_after_a_dropout_report_still_counts() {
    let mut a = Assembler::new(settings(), mods());
    a.handle(&dropout("c", 0, Modality::Visual), 0).unwrap();
    a.handle(&feat("c", 0, Modality::Visual, 2.0), 1).unwrap();
    a.handle(&feat("c", 0, Modality::Text, 2.0), 1).unwrap();
    let jobs = a.handle(&feat("c", 0, Modality::Audio, 2.0), 2).unwrap();
    assert_eq!(jobs[0].utterances[0].avail_bits(), 7);
}

#[test]
fn release_keeps_spoken_order_and_window_slides() {
    let mut a = Assembler::new(settings(), mods());
    a.handle(&feat("c", 0, Modality::Text, 0.0), 0).unwrap();
    a.handle(&end("c", 0), 0).unwrap();
    // Utterance 1 completes first but must wait for 0.
    assert!(all(&mut a, "c", 1, 10).is_empty());
    let jobs = a.poll(300);
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].closed_utterance(), 0);
    assert_eq!(jobs[1].closed_utterance(), 1);
    assert_eq!(
        jobs[1].utterances.iter().map(|u| u.utterance).collect::<Vec<_>>(),
        vec![0, 1]
    );
    let mut last = Vec::new();
    for utt in 2..6 {
        last = all(&mut a, "c", utt, 400);
    }
    assert_eq!(last.len(), 1);
    let ids: Vec<u32> = last[0].utterances.iter().map(|u| u.utterance).collect();
    assert_eq!(ids, vec![3, 4, 5], "window W = 3 keeps the last three");
    assert_eq!(last[0].first_position, 3);
}

#[test]
fn chunked_windows_are_consecutive_blocks_of_w() {
    let chunked = AssemblySettings {
        windowing: crate::config::Windowing::Chunked,
        ..settings()
    };
    let mut a = Assembler::new(chunked, mods());
    let mut seen = Vec::new();
    for utt in 0..7 {
        for job in all(&mut a, "c", utt, 10 * u64::from(utt)) {
            let ids: Vec<u32> = job.utterances.iter().map(|u| u.utterance).collect();
            seen.push((job.first_position, ids));
        }
    }
    let want: Vec<(u64, Vec<u32>)> = vec![
        (0, vec![0]),
        (0, vec![0, 1]),
        (0, vec![0, 1, 2]),
        (3, vec![3]),
        (3, vec![3, 4]),
        (3, vec![3, 4, 5]),
        (6, vec![6]),
    ];
    assert_eq!(
        seen, want,
        "W = 3: blocks 0-2, 3-5, 6-; first_position / W is the block index"
    );
}

#[test]
fn bad_vectors_are_rejected_with_reasons() {
    let mut a = Assembler::new(settings(), mods());
    let mut short = feat("c", 0, Modality::Text, 1.0);
    if let Message::Features(f) = &mut short {
        f.values.pop();
    }
    assert_eq!(a.handle(&short, 0).unwrap_err().reason, RejectReason::WrongLength);
    let nan = feat("c", 0, Modality::Text, f32::NAN);
    assert_eq!(a.handle(&nan, 0).unwrap_err().reason, RejectReason::NonFinite);
    let inf = feat("c", 0, Modality::Audio, f32::INFINITY);
    assert_eq!(a.handle(&inf, 0).unwrap_err().reason, RejectReason::NonFinite);
    a.handle(&feat("c", 0, Modality::Text, 1.0), 0).unwrap();
    let dup = a.handle(&feat("c", 0, Modality::Text, 1.0), 0).unwrap_err();
    assert_eq!(dup.reason, RejectReason::Duplicate);
    assert_eq!(
        a.handle(&Message::Subscribe, 0).unwrap_err().reason,
        RejectReason::Unexpected
    );
}

#[test]
fn late_input_for_a_closed_utterance_is_rejected() {
    let mut a = Assembler::new(settings(), mods());
    all(&mut a, "c", 5, 0);
    let late = a.handle(&feat("c", 3, Modality::Text, 1.0), 1).unwrap_err();
    assert_eq!(late.reason, RejectReason::Late);
    let again = a.handle(&dropout("c", 5, Modality::Text), 1).unwrap_err();
    assert_eq!(again.reason, RejectReason::Late);
    // The segmenter's end may come after all features: accepted, changes nothing.
    assert!(a.handle(&end("c", 5), 2).unwrap().is_empty());
    assert_eq!(a.next_deadline(), None);
}

#[test]
fn capacity_limits_bound_memory() {
    let mut a = Assembler::new(settings(), mods());
    for utt in 0..4 {
        a.handle(&feat("c", utt, Modality::Text, 1.0), 0).unwrap();
    }
    let err = a.handle(&feat("c", 9, Modality::Text, 1.0), 0).unwrap_err();
    assert_eq!(err.reason, RejectReason::Capacity);
    // Conversations that have released something and are active are never evicted.
    all(&mut a, "d", 0, 5);
    a.handle(&feat("c", 0, Modality::Audio, 1.0), 6).unwrap();
    assert_eq!(a.handle(&feat("c", 0, Modality::Visual, 1.0), 6).unwrap().len(), 1);
    let err = a.handle(&feat("e", 0, Modality::Text, 1.0), 7).unwrap_err();
    assert_eq!(err.reason, RejectReason::Capacity);
    assert_eq!(a.open_conversations(), 2);
}

#[test]
fn reset_forgets_the_conversation_and_idle_ones_expire() {
    let mut a = Assembler::new(settings(), mods());
    all(&mut a, "c", 0, 0);
    a.handle(
        &Message::Reset {
            conversation: conversation_id("c").unwrap(),
        },
        1,
    )
    .unwrap();
    // After a reset, utterance ids start afresh.
    let jobs = all(&mut a, "c", 0, 2);
    assert_eq!(jobs[0].utterances.len(), 1);
    assert_eq!(a.open_conversations(), 1);
    assert!(a.poll(60_001).is_empty());
    assert_eq!(a.open_conversations(), 1, "idle for 59999 ms: kept");
    assert!(a.poll(60_002).is_empty());
    assert_eq!(a.open_conversations(), 0);
}

#[test]
fn utterance_with_nothing_is_skipped() {
    let mut a = Assembler::new(settings(), mods());
    a.handle(&end("c", 0), 0).unwrap();
    assert!(a.poll(300).is_empty());
    assert_eq!(a.counters().empty_utterances, 1);
    let jobs = all(&mut a, "c", 1, 301);
    assert_eq!(jobs[0].utterances.len(), 1);
    assert_eq!(jobs[0].first_position, 0);
}

/// Everything the assembler still holds, released: (conversation, session, utterance ids).
fn ids(jobs: &[WindowJob]) -> Vec<(String, u64, u32)> {
    jobs.iter()
        .map(|j| (j.conversation.to_string(), j.session, j.closed_utterance()))
        .collect()
}

fn start(conv: &str, utt: u32) -> Message {
    Message::UtteranceStart(boundary(conv, utt))
}

#[test]
fn a_sender_restarting_its_ids_is_recognised_and_nothing_is_lost() {
    let mut a = Assembler::new(settings(), mods());
    for utt in 0..3 {
        all(&mut a, "c", utt, u64::from(utt));
    }
    let old = all(&mut a, "c", 3, 3)[0].session;
    // The sensor restarts at 0 without Reset: start, text and audio of utterance 0.
    assert!(
        a.handle(&start("c", 0), 10).unwrap().is_empty(),
        "boundaries behind are held, not refused"
    );
    assert_eq!(
        a.handle(&feat("c", 0, Modality::Text, 7.0), 11).unwrap_err().reason,
        RejectReason::Late
    );
    let jobs = a.handle(&feat("c", 0, Modality::Audio, 7.0), 12).unwrap();
    assert!(jobs.is_empty(), "utterance 0 of the new session still awaits visual");
    assert_eq!(a.counters().restarts, 1);
    assert_eq!(a.counters().late_replayed, 1, "the refused text was applied after all");
    let jobs = a.handle(&feat("c", 0, Modality::Visual, 7.0), 13).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_ne!(jobs[0].session, old, "a new session");
    assert_eq!(
        (
            jobs[0].first_position,
            jobs[0].utterances.len(),
            jobs[0].utterances[0].avail_bits()
        ),
        (0, 1, 7)
    );
    assert_eq!(jobs[0].utterances[0].features[0], Some(vec![7.0; 4]));
}

#[test]
fn an_id_far_behind_restarts_at_once_and_open_utterances_are_flushed() {
    let mut a = Assembler::new(settings(), mods());
    for utt in 0..10 {
        all(&mut a, "c", utt, 0);
    }
    a.handle(&feat("c", 10, Modality::Text, 1.0), 1).unwrap();
    // More than max_open_utterances (4) behind: the first frame suffices.
    let jobs = a.handle(&feat("c", 0, Modality::Text, 2.0), 2).unwrap();
    assert_eq!(a.counters().restarts, 1);
    assert_eq!(ids(&jobs).len(), 1, "open utterance 10 of the old session released");
    assert_eq!(
        (
            jobs[0].closed_utterance(),
            jobs[0].utterances.last().unwrap().avail_bits()
        ),
        (10, 1)
    );
    assert_eq!(a.counters().utterances_flushed, 1);
}

#[test]
fn late_input_does_not_count_as_activity() {
    let mut a = Assembler::new(settings(), mods());
    all(&mut a, "c", 0, 0);
    a.handle(&feat("c", 1, Modality::Text, 1.0), 1).unwrap();
    a.handle(&dropout("c", 1, Modality::Audio), 1).unwrap();
    a.handle(&dropout("c", 1, Modality::Visual), 1).unwrap();
    for t in 1..100 {
        // Features for a modality the last closed utterance lacks: refused as Late, and no
        // activity, however long they keep coming.
        assert_eq!(
            a.handle(&feat("c", 1, Modality::Audio, 1.0), t * 500)
                .unwrap_err()
                .reason,
            RejectReason::Late
        );
    }
    assert_eq!(a.counters().restarts, 0);
    // Whatever the late traffic, with nothing open the conversation expires on its own clock.
    a.poll(60_002);
    assert_eq!(a.open_conversations(), 0);
}

#[test]
fn eviction_order_and_flush_of_the_victim() {
    let mut s = settings();
    s.max_conversations = 3;
    s.evict_idle_ms = 1_000;
    let mut a = Assembler::new(s, mods());
    all(&mut a, "real", 0, 0);
    a.handle(&feat("partial", 0, Modality::Text, 1.0), 10).unwrap();
    a.handle(&start("fake", 0), 20).unwrap();
    // Holds no data and released nothing: evicted first.
    assert!(a.handle(&start("n1", 0), 30).unwrap().is_empty());
    assert_eq!(a.counters().evicted, 1);
    a.handle(&feat("n1", 0, Modality::Text, 1.0), 35).unwrap();
    // No conversation without data left: the least recently active one that released nothing.
    let jobs = a.handle(&start("n2", 0), 40).unwrap();
    assert_eq!(
        ids(&jobs).iter().map(|j| (j.0.as_str(), j.2)).collect::<Vec<_>>(),
        vec![("partial", 0)],
        "partial's text released, not lost"
    );
    assert_eq!(
        a.counters().utterances_flushed,
        2,
        "fake's empty utterance and partial's"
    );
    assert!(a.handle(&start("n3", 0), 50).unwrap().is_empty());
    assert_eq!(a.counters().evicted, 3);
    assert_eq!(a.open_conversations(), 3);
    let jobs = a.handle(&feat("real", 1, Modality::Text, 1.0), 90).unwrap();
    assert!(
        jobs.is_empty() && a.counters().restarts == 0,
        "real was never evicted: same session, utterance 1 open"
    );
}

#[test]
fn an_idle_released_conversation_is_evicted_after_evict_idle_ms() {
    let mut s = settings();
    s.evict_idle_ms = 1_000;
    let mut a = Assembler::new(s, mods());
    all(&mut a, "a", 0, 0);
    all(&mut a, "b", 0, 500);
    assert_eq!(
        a.handle(&feat("c", 0, Modality::Text, 1.0), 999).unwrap_err().reason,
        RejectReason::Capacity
    );
    a.handle(&feat("c", 0, Modality::Text, 1.0), 1_000).unwrap();
    assert_eq!(a.counters().evicted, 1);
    // "a" was the least recently active: a new session if it comes back.
    let jobs = all(&mut a, "b", 1, 1_001);
    assert_eq!(jobs[0].utterances.len(), 2, "b kept its window");
}

#[test]
fn reset_and_flush_all_release_open_utterances_in_new_sessions() {
    let mut a = Assembler::new(settings(), mods());
    let s1 = all(&mut a, "c", 0, 0)[0].session;
    a.handle(&feat("c", 1, Modality::Text, 1.0), 1).unwrap();
    let jobs = a
        .handle(
            &Message::Reset {
                conversation: conversation_id("c").unwrap(),
            },
            2,
        )
        .unwrap();
    assert_eq!(
        ids(&jobs),
        vec![("c".to_string(), s1, 1)],
        "reset releases the open utterance first"
    );
    a.handle(&feat("c", 0, Modality::Audio, 1.0), 3).unwrap();
    let jobs = a.flush_all();
    assert_eq!(jobs.len(), 1);
    assert_ne!(jobs[0].session, s1);
    assert_eq!(jobs[0].utterances[0].avail_bits(), 2);
    assert_eq!(a.open_utterances(), 0);
}

#[test]
fn an_expired_conversation_is_new_to_the_next_message_whenever_poll_last_ran() {
    let mut a = Assembler::new(settings(), mods());
    for utt in 0..6 {
        all(&mut a, "c", utt, 0);
    }
    // No poll since; 60 s later a restarted sensor starts at 0: a new conversation, not late.
    let jobs = all(&mut a, "c", 0, 60_000);
    assert_eq!(jobs.len(), 1);
    assert_eq!(a.counters().restarts, 0);
}

#[test]
fn windows_released_by_deadlines_survive_a_rejected_message() {
    let mut a = Assembler::new(settings(), mods());
    a.handle(&feat("c", 0, Modality::Text, 1.0), 0).unwrap();
    a.handle(&end("c", 0), 0).unwrap();
    // At 300 ms every deadline has passed; the message itself is refused.
    let err = a.handle(&feat("c", 0, Modality::Text, 1.0), 300).unwrap_err();
    assert_eq!(err.reason, RejectReason::Late);
    assert_eq!(a.next_deadline(), Some(0), "deferred windows are due now");
    let jobs = a.poll(300);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].utterances[0].avail_bits(), 1);
}

#[test]
fn a_restart_trigger_refused_on_replay_is_answered_with_its_refusal() {
    let mut a = Assembler::new(settings(), mods());
    for utt in 0..4 {
        all(&mut a, "c", utt, 0);
    }
    for v in [1.0, 2.0] {
        assert_eq!(
            a.handle(&feat("c", 1, Modality::Text, v), 1).unwrap_err().reason,
            RejectReason::Late
        );
    }
    // The third repeat triggers the restart, then is a duplicate of the first in the new session.
    assert_eq!(
        a.handle(&feat("c", 1, Modality::Text, 3.0), 2).unwrap_err().reason,
        RejectReason::Duplicate
    );
    assert_eq!((a.counters().restarts, a.counters().late_replayed), (1, 1));
    let jobs = a.flush_all();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].utterances[0].features[0], Some(vec![1.0; 4]));
}

/// Features of `n` values (any size the protocol carries).
fn feat_n(conv: &str, utt: u32, m: Modality, n: usize) -> Message {
    features(conv, utt, m, &(0..n).map(|i| i as f32 / 8.0).collect::<Vec<_>>())
}

#[test]
fn a_two_modality_model_waits_only_for_its_modalities() {
    // Text 300 + audio 47, no visual (IEMOCAP): complete without visual, no visual deadline.
    let ta = Modalities::new([300, 47, 0]).unwrap();
    let mut a = Assembler::new(settings(), ta);
    assert!(a.handle(&feat_n("c", 0, Modality::Text, 300), 0).unwrap().is_empty());
    let jobs = a.handle(&feat_n("c", 0, Modality::Audio, 47), 1).unwrap();
    assert_eq!(jobs.len(), 1, "closed by its two modalities");
    let u = &jobs[0].utterances[0];
    assert_eq!((u.avail_bits(), u.features[2].is_none()), (3, true));
    // Deadlines: only text and audio are awaited (audio's 200 ms after the end is the last).
    a.handle(&feat_n("c", 1, Modality::Text, 300), 10).unwrap();
    a.handle(&end("c", 1), 10).unwrap();
    assert_eq!(a.next_deadline(), Some(210));
    assert_eq!(a.poll(210).len(), 1);
}

#[test]
fn a_modality_the_model_lacks_is_refused_as_such() {
    let ta = Modalities::new([300, 47, 0]).unwrap();
    let mut a = Assembler::new(settings(), ta);
    for msg in [feat_n("c", 0, Modality::Visual, 300), dropout("c", 0, Modality::Visual)] {
        let err = a.handle(&msg, 0).unwrap_err();
        assert_eq!(err.reason, RejectReason::NoSuchModality, "{msg:?}");
        assert!(err.detail.contains("TA"), "{}", err.detail);
    }
    assert_eq!(a.open_conversations(), 0, "refused input opens nothing");
    // Its own sizes decide the length: 100 values were CMU-MOSI's text, not this model's.
    let err = a.handle(&feat_n("c", 0, Modality::Text, 100), 0).unwrap_err();
    assert_eq!(err.reason, RejectReason::WrongLength);
    assert!(err.detail.contains("300"), "{}", err.detail);
}

#[test]
fn long_feature_vectors_are_accepted_at_the_models_size() {
    // 1024 values per modality: the protocol carries up to 2048.
    let big = Modalities::new([1024, 0, 2048]).unwrap();
    let mut a = Assembler::new(settings(), big);
    a.handle(&feat_n("c", 0, Modality::Text, 1024), 0).unwrap();
    let jobs = a.handle(&feat_n("c", 0, Modality::Visual, 2048), 0).unwrap();
    assert_eq!(jobs.len(), 1);
    let u = &jobs[0].utterances[0];
    assert_eq!(u.features[0].as_ref().map(Vec::len), Some(1024));
    assert_eq!(u.features[2].as_ref().map(Vec::len), Some(2048));
    assert_eq!(u.avail_bits(), 5);
    assert_eq!(
        a.handle(&feat_n("c", 1, Modality::Text, 1023), 0).unwrap_err().reason,
        RejectReason::WrongLength
    );
}
