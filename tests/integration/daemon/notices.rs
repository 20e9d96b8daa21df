//! Sender notices and limits through the serve loop (docs/PROTOCOL.md, "Notices and limits"):
//! a subscribed sender learns every refusal of its own input, aggregated and rate-limited (the
//! counts add up to the daemon's counters), before the answer to its next request; a sender that
//! never subscribed is sent nothing; `Limits` states the serve options; `ConversationEnd` frees
//! a conversation's place at once.

use std::time::Duration;

use gsdnet_edge::protocol::{conversation_id, Message, Modality, NoticeReport, RejectReason};

use crate::util::daemon::{connect, end, feat, options, rejected, unix_daemon, Client};

/// Every message up to the `Limits` answer of a `LimitsRequest` sent now: the notices first.
async fn until_limits<S>(c: &mut Client<S>) -> Vec<Message>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    c.send(&Message::LimitsRequest).await;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("no Limits answer")
        {
            Message::Limits(_) => return seen,
            m => seen.push(m),
        }
    }
}

fn notices(msgs: &[Message]) -> Vec<NoticeReport> {
    msgs.iter()
        .filter_map(|m| {
            if let Message::Notice(n) = m {
                Some((**n).clone())
            } else {
                None
            }
        })
        .collect()
}

#[tokio::test]
async fn a_flood_is_noticed_aggregated_and_every_refusal_counted() {
    let mut opts = options();
    (opts.max_frames_per_second, opts.burst) = (20, 10);
    let (_dir, path, daemon) = unix_daemon(opts).await;
    let mut sensor = connect(&path).await;
    sensor.send(&Message::SubscribeNotices).await;
    for utt in 0..300 {
        sensor.send(&feat("flood", utt, Modality::Text, 1.0)).await;
    }
    // Room in the bucket for the request that closes the account.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = notices(&until_limits(&mut sensor).await);
    let status = connect(&path).await.status().await;
    let flood: u64 = got
        .iter()
        .filter(|n| n.reason == RejectReason::Flood)
        .map(|n| n.count)
        .sum();
    assert!(flood >= 280, "{got:?}");
    assert_eq!(
        flood,
        rejected(&status, RejectReason::Flood),
        "the notices add up to the daemon's counter"
    );
    let first = got.iter().find(|n| n.reason == RejectReason::Flood).unwrap();
    assert_eq!(
        (first.conversation.as_str(), first.utterance.is_some()),
        ("flood", true)
    );
    // One flush at the first refusal, at most one per 100 ms after it, one before the answer.
    let flood_notices = got.iter().filter(|n| n.reason == RejectReason::Flood).count();
    assert!(flood_notices <= 6, "aggregated, not one notice per frame: {got:?}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn assembly_refusals_reach_their_sender_only() {
    let (_dir, path, daemon) = unix_daemon(options()).await;
    let mut quiet = connect(&path).await;
    let mut sensor = connect(&path).await;
    sensor.send(&Message::SubscribeNotices).await;
    for m in Modality::ALL {
        sensor.send(&feat("c", 0, m, 1.0)).await;
    }
    // The utterance closed: the same again is Late, twice; a wrong length is WrongLength.
    sensor.send(&feat("c", 0, Modality::Text, 1.0)).await;
    quiet.send(&feat("c", 0, Modality::Audio, 1.0)).await;
    let mut short = feat("c", 1, Modality::Visual, 1.0);
    if let Message::Features(f) = &mut short {
        f.values = gsdnet_edge::protocol::values(&[1.0; 3]).unwrap();
    }
    sensor.send(&short).await;
    let got = notices(&until_limits(&mut sensor).await);
    let late = got
        .iter()
        .find(|n| n.reason == RejectReason::Late)
        .expect("Late noticed");
    assert_eq!(
        (late.conversation.as_str(), late.utterance, late.count),
        ("c", Some(0), 1),
        "only the sensor's own Late"
    );
    let wrong = got
        .iter()
        .find(|n| n.reason == RejectReason::WrongLength)
        .expect("WrongLength noticed");
    assert_eq!((wrong.utterance, wrong.count), (Some(1), 1));
    // The connection that never subscribed gets its answer and nothing else.
    let quiet_got = until_limits(&mut quiet).await;
    assert!(quiet_got.is_empty(), "{quiet_got:?}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn limits_state_the_serve_options() {
    let opts = options();
    let (_dir, path, daemon) = unix_daemon(opts.clone()).await;
    let mut c = connect(&path).await;
    c.send(&Message::LimitsRequest).await;
    let Message::Limits(l) = c.next().await else {
        panic!("expected Limits")
    };
    assert_eq!(
        (l.max_frames_per_second, l.burst),
        (opts.max_frames_per_second, opts.burst)
    );
    assert_eq!(
        (l.total_frames_per_second, l.total_burst),
        (opts.limits.total_frames_per_second, opts.limits.total_burst)
    );
    let a = &opts.assembly;
    assert_eq!(
        (
            l.max_conversations as usize,
            l.max_open_utterances as usize,
            l.window as usize
        ),
        (a.max_conversations, a.max_open_utterances, a.window)
    );
    assert_eq!(
        (l.evict_idle_ms, l.idle_conversation_ms, l.max_utterance_ms),
        (a.evict_idle_ms, a.idle_conversation_ms, a.max_utterance_ms)
    );
    let deadlines: Vec<(Modality, u32)> = l.deadlines.iter().map(|d| (d.modality, d.deadline_ms)).collect();
    assert_eq!(
        deadlines,
        vec![(Modality::Text, 500), (Modality::Audio, 300), (Modality::Visual, 300)]
    );
    assert_eq!(
        (l.queue_capacity as usize, l.outgoing_queue as usize),
        (opts.queue_capacity, opts.limits.outgoing_queue)
    );
    assert_eq!(l.notice_interval_ms, 100);
    daemon.shutdown().await;
}

#[tokio::test]
async fn conversation_end_frees_a_place_at_once() {
    // max_conversations 4: four active conversations, then a fifth is refused until one ends.
    let (_dir, path, daemon) = unix_daemon(options()).await;
    let mut sensor = connect(&path).await;
    sensor.send(&Message::SubscribeNotices).await;
    let complete = |conv: &'static str| {
        [
            feat(conv, 0, Modality::Text, 1.0),
            feat(conv, 0, Modality::Audio, 1.0),
            feat(conv, 0, Modality::Visual, 1.0),
            end(conv, 0),
        ]
    };
    for conv in ["a", "b", "c", "d"] {
        for m in complete(conv) {
            sensor.send(&m).await;
        }
    }
    sensor.send(&feat("e", 0, Modality::Text, 1.0)).await;
    let got = notices(&until_limits(&mut sensor).await);
    assert_eq!(
        got.iter()
            .map(|n| (n.reason, n.conversation.as_str()))
            .collect::<Vec<_>>(),
        vec![(RejectReason::Capacity, "e")]
    );
    sensor
        .send(&Message::ConversationEnd {
            conversation: conversation_id("a").unwrap(),
        })
        .await;
    for m in complete("e") {
        sensor.send(&m).await;
    }
    let got = notices(&until_limits(&mut sensor).await);
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(sensor.health().await.conversations_evicted, 0);
    daemon.shutdown().await;
}
