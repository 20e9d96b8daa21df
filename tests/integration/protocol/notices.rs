//! Notices and limits (tags 17-21): the byte layouts of the worked examples in docs/PROTOCOL.md
//! ("Notices and limits"; tests/python/test_protocol_notices.py checks the same bytes), round
//! trips, and that a sender cannot send the daemon's own messages.

use gsdnet_edge::protocol::{
    conversation_id, decode_frame, encode_frame, LimitsReport, Message, Modality, ModalityDeadline, NoticeReport,
    RejectReason, MAX_REJECT_DETAIL,
};

use super::frames::assert_doc_frame;

fn x86_iemocap_limits() -> LimitsReport {
    let mut deadlines = heapless::Vec::new();
    deadlines
        .push(ModalityDeadline {
            modality: Modality::Text,
            deadline_ms: 600,
        })
        .unwrap();
    deadlines
        .push(ModalityDeadline {
            modality: Modality::Audio,
            deadline_ms: 300,
        })
        .unwrap();
    LimitsReport {
        max_frames_per_second: 1000,
        burst: 400,
        total_frames_per_second: 2000,
        total_burst: 1600,
        max_conversations: 8,
        max_open_utterances: 16,
        evict_idle_ms: 10_000,
        idle_conversation_ms: 600_000,
        max_utterance_ms: 30_000,
        deadlines,
        window: 64,
        queue_capacity: 8,
        idle_timeout_ms: 10_000,
        outgoing_queue: 64,
        notice_interval_ms: 100,
    }
}

#[test]
fn conversation_end_and_requests_match_protocol_doc() {
    let end = Message::ConversationEnd {
        conversation: conversation_id("s1").unwrap(),
    };
    assert_doc_frame(&end, "0a 02 11 02 73 31 e6 6a 0f 02 00", 0x020f_6ae6);
    assert_doc_frame(&Message::SubscribeNotices, "07 02 12 35 01 56 80 00", 0x8056_0135);
    assert_doc_frame(&Message::LimitsRequest, "03 02 14 04 a4 35 69 00", 0x6935_a400);
}

#[test]
fn notice_matches_protocol_doc() {
    let n = NoticeReport::new(
        RejectReason::Flood,
        conversation_id("s1").unwrap(),
        Some(7),
        412,
        "Features over the frame rate",
    );
    let frame = "2c 02 13 0b 02 73 31 01 07 9c 03 1c 46 65 61 74 75 72 65 73 20 6f 76 65 72 20 74 68 65
        20 66 72 61 6d 65 20 72 61 74 65 1e d1 6e 4d 00";
    assert_doc_frame(&Message::Notice(Box::new(n)), frame, 0x4d6e_d11e);
}

#[test]
fn limits_match_protocol_doc() {
    let frame = "16 02 15 e8 07 90 03 d0 0f c0 0c 08 10 90 4e c0 cf 24 b0 ea 01 02 10 d8 04 01 ac 02 40
        08 90 4e 40 64 50 d7 d3 59 00";
    assert_doc_frame(&Message::Limits(x86_iemocap_limits()), frame, 0x59d3_d750);
}

#[test]
fn a_notice_without_conversation_and_a_long_detail_round_trips_cut() {
    let long = "é".repeat(100); // 200 bytes: cut to 128 at a character boundary
    let n = NoticeReport::new(RejectReason::Crc, conversation_id("").unwrap(), None, u64::MAX, &long);
    assert_eq!(n.detail.len(), MAX_REJECT_DETAIL);
    let msg = Message::Notice(Box::new(n));
    let mut frame = encode_frame(&msg);
    frame.pop();
    assert_eq!(decode_frame(&mut frame).unwrap(), msg);
}

#[test]
fn notices_and_limits_are_daemon_only_and_requests_are_not() {
    assert!(Message::Notice(Box::new(NoticeReport::new(
        RejectReason::Late,
        conversation_id("c").unwrap(),
        None,
        1,
        "x"
    )))
    .is_daemon_only());
    assert!(Message::Limits(x86_iemocap_limits()).is_daemon_only());
    for m in [
        Message::SubscribeNotices,
        Message::LimitsRequest,
        Message::ConversationEnd {
            conversation: conversation_id("c").unwrap(),
        },
    ] {
        assert!(!m.is_daemon_only(), "{m:?}");
    }
    let end = Message::ConversationEnd {
        conversation: conversation_id("c").unwrap(),
    };
    assert_eq!(end.conversation().map(|c| c.as_str()), Some("c"));
}
