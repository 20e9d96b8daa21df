//! Unit tests of `ConversationEnd`: the ended conversation's place is free at once, open
//! utterances still get their deadlines, and nothing accepted is lost.

use super::tests::settings;
use super::Assembler;
use crate::modality::Modalities;
use crate::protocol::{conversation_id, values, Boundary, Features, Message, Modality, RejectReason};

fn mods() -> Modalities {
    Modalities::new([4, 3, 0]).unwrap()
}

fn feat(conv: &str, utt: u32, m: Modality) -> Message {
    let dim = mods().size(m).unwrap_or(1);
    let values = values(&vec![1.0; dim]).unwrap();
    Message::Features(Features {
        conversation: conversation_id(conv).unwrap(),
        utterance: utt,
        speaker: 0,
        modality: m,
        timestamp_us: 0,
        values,
    })
}

fn end_conv(conv: &str) -> Message {
    Message::ConversationEnd {
        conversation: conversation_id(conv).unwrap(),
    }
}

fn complete(a: &mut Assembler, conv: &str, utt: u32, t: u64) -> usize {
    a.handle(&feat(conv, utt, Modality::Text), t).unwrap().len()
        + a.handle(&feat(conv, utt, Modality::Audio), t).unwrap().len()
}

#[test]
fn an_ended_conversation_frees_its_place_at_once() {
    let mut a = Assembler::new(settings(), mods());
    assert_eq!(complete(&mut a, "a", 0, 0), 1);
    assert_eq!(complete(&mut a, "b", 0, 0), 1);
    // Both released something and are active: a third is refused.
    let refused = a.handle(&feat("c", 0, Modality::Text), 1).unwrap_err();
    assert_eq!(refused.reason, RejectReason::Capacity);
    assert!(a.handle(&end_conv("a"), 2).unwrap().is_empty());
    assert_eq!(a.open_conversations(), 1);
    assert_eq!(complete(&mut a, "c", 0, 3), 1);
    assert_eq!(a.counters().evicted, 0, "nothing was evicted");
}

#[test]
fn open_utterances_still_get_their_deadlines() {
    let mut a = Assembler::new(settings(), mods());
    a.handle(&feat("a", 0, Modality::Text), 0).unwrap();
    a.handle(&end_conv("a"), 50).unwrap();
    assert_eq!(a.open_conversations(), 1, "kept while an utterance is open");
    // The audio beats its deadline (end at 50 + 200): it still counts.
    let jobs = a.handle(&feat("a", 0, Modality::Audio), 120).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].utterances[0].avail_bits(), 3);
    assert_eq!(a.open_conversations(), 0, "forgotten once nothing is open");
    // An utterance whose audio never comes closes on the deadline counted from the end.
    a.handle(&feat("b", 0, Modality::Text), 1_000).unwrap();
    a.handle(&end_conv("b"), 1_000).unwrap();
    assert_eq!(a.next_deadline(), Some(1_200));
    let jobs = a.poll(1_200);
    assert_eq!((jobs.len(), jobs[0].utterances[0].avail_bits()), (1, 1));
    assert_eq!(a.open_conversations(), 0);
    assert_eq!(a.counters().utterances_flushed, 0, "ended, not flushed");
}

#[test]
fn an_utterance_end_that_came_first_keeps_its_time() {
    let mut a = Assembler::new(settings(), mods());
    a.handle(&feat("a", 0, Modality::Text), 0).unwrap();
    let b = Boundary {
        conversation: conversation_id("a").unwrap(),
        utterance: 0,
        speaker: 0,
        timestamp_us: 0,
    };
    a.handle(&Message::UtteranceEnd(b), 10).unwrap();
    a.handle(&end_conv("a"), 150).unwrap();
    assert_eq!(a.next_deadline(), Some(210));
}

#[test]
fn ending_an_unknown_conversation_changes_nothing_and_the_id_can_start_again() {
    let mut a = Assembler::new(settings(), mods());
    assert!(a.handle(&end_conv("nobody"), 0).unwrap().is_empty());
    assert_eq!(a.open_conversations(), 0);
    assert_eq!(complete(&mut a, "a", 5, 0), 1);
    a.handle(&end_conv("a"), 1).unwrap();
    // Ids may start again: a new session, not late input.
    let jobs: usize = complete(&mut a, "a", 0, 2);
    assert_eq!(jobs, 1);
}
