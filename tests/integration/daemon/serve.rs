//! Serve-loop tests with a mock runner (deterministic from its input), on a paused tokio clock
//! except over the pty:
//! results published over a Unix socket and over a pty serial pair, deadlines firing without
//! sleeps, bad input counted while the stream goes on, queue overflow policy, clean shutdown.

use std::time::Duration;

use crate::util::daemon::{
    connect, end, feat, options, rejected, result, start, unix_daemon, unix_daemon_with, Client,
};
use gsdnet_edge::daemon::assembly::WindowJob;
use gsdnet_edge::daemon::inference::{JobQueue, Pushed};
use gsdnet_edge::daemon::server::Endpoints;
use gsdnet_edge::io::serial::SerialInput;
use gsdnet_edge::protocol::{conversation_id, encode_frame, Dropout, Message, Modality, RejectReason};

#[tokio::test(start_paused = true)]
async fn unix_socket_results_deadlines_and_bad_input() {
    let (_dir, path, daemon) = unix_daemon(options()).await;
    let mut sub = connect(&path).await;
    sub.send(&Message::Subscribe).await;
    let _ = sub.status().await; // subscription is active once this is answered
    let mut sensor = connect(&path).await;

    for m in Modality::ALL {
        sensor.send(&feat("conv", 0, m, 0.5)).await;
    }
    let r = sub.result().await;
    assert_eq!(
        (r.closed_utterance, r.utterances.len(), r.utterances[0].avail),
        (0, 1, 7)
    );
    assert_eq!(r.utterances[0].reg, Some(0.5));
    assert_eq!(r.utterances[0].label_name.as_str(), "positive");

    // Camera silent, mic reports a dropout: closes at the visual deadline (paused clock).
    sensor.send(&feat("conv", 1, Modality::Text, 1.5)).await;
    sensor
        .send(&Message::Dropout(Dropout {
            conversation: conversation_id("conv").unwrap(),
            utterance: 1,
            modality: Modality::Audio,
            timestamp_us: 0,
        }))
        .await;
    sensor.send(&end("conv", 1)).await;
    let before = tokio::time::Instant::now();
    let r = sub.result().await;
    assert!(
        before.elapsed() >= Duration::from_millis(300),
        "closed before the visual deadline"
    );
    assert_eq!(
        r.utterances.iter().map(|u| (u.utterance, u.avail)).collect::<Vec<_>>(),
        vec![(0, 7), (1, 1)]
    );

    // Bad input of every kind; the stream goes on.
    let mut corrupt = encode_frame(&feat("conv", 2, Modality::Text, 1.0));
    corrupt[30] = corrupt[30].wrapping_add(1).max(1);
    sensor.raw(&corrupt).await;
    sensor
        .raw(&vec![0x55; gsdnet_edge::protocol::MAX_FRAME_LEN + 100])
        .await;
    sensor.raw(&[0]).await;
    sensor.send(&feat("conv", 2, Modality::Text, f32::NAN)).await;
    let mut short = feat("conv", 2, Modality::Audio, 1.0);
    if let Message::Features(f) = &mut short {
        f.values.truncate(10);
    }
    sensor.send(&short).await;
    sensor.send(&Message::Result(r.clone())).await;
    sensor.send(&feat("conv", 0, Modality::Text, 1.0)).await; // late
    for m in Modality::ALL {
        sensor.send(&feat("conv", 2, m, 2.5)).await;
    }
    let r = sub.result().await;
    assert_eq!(r.closed_utterance, 2);
    assert_eq!(r.utterances[2].reg, Some(2.5));

    let s = sub.status().await;
    assert!(
        rejected(&s, RejectReason::Crc) + rejected(&s, RejectReason::Framing) >= 1,
        "{s:?}"
    );
    assert_eq!(rejected(&s, RejectReason::Oversized), 1);
    assert_eq!(rejected(&s, RejectReason::NonFinite), 1);
    assert_eq!(rejected(&s, RejectReason::WrongLength), 1);
    assert_eq!(rejected(&s, RejectReason::Unexpected), 1);
    assert_eq!(rejected(&s, RejectReason::Late), 1);
    assert_eq!(s.windows_run, 3);
    assert_eq!(s.engine, "mock");

    // A client vanishing mid-frame is counted.
    let mut quitter = connect(&path).await;
    let frame = encode_frame(&feat("conv", 3, Modality::Text, 1.0));
    quitter.raw(&frame[..frame.len() / 2]).await;
    drop(quitter);
    let mut truncated = 0;
    for _ in 0..100 {
        truncated = rejected(&sub.status().await, RejectReason::Truncated);
        if truncated == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(truncated, 1);

    let events = daemon.shutdown().await;
    assert_eq!(events.first().map(String::as_str), Some("READY"));
    assert!(events.contains(&"STOPPING".to_string()));
}

/// Utterances that close with no modality produce no window but are visible in the status.
#[tokio::test(start_paused = true)]
async fn empty_utterances_are_counted_in_status() {
    let (_dir, path, daemon) = unix_daemon(options()).await;
    let mut sub = connect(&path).await;
    sub.send(&Message::Subscribe).await;
    assert_eq!(sub.status().await.empty_utterances, 0);
    let mut sensor = connect(&path).await;
    let conv = conversation_id("conv").unwrap();

    // Utterance 0: every sensor reports a dropout. Utterance 1: an end, then silence until the
    // deadlines pass (paused clock). Utterance 2: complete; its window holds only itself.
    for modality in Modality::ALL {
        sensor
            .send(&Message::Dropout(Dropout {
                conversation: conv.clone(),
                utterance: 0,
                modality,
                timestamp_us: 0,
            }))
            .await;
    }
    sensor.send(&end("conv", 1)).await;
    let before = tokio::time::Instant::now();
    for m in Modality::ALL {
        sensor.send(&feat("conv", 2, m, 0.5)).await;
    }
    let r = sub.result().await;
    assert!(
        before.elapsed() >= Duration::from_millis(500),
        "utterance 1 closed before its deadlines"
    );
    assert_eq!(
        r.utterances.iter().map(|u| (u.utterance, u.avail)).collect::<Vec<_>>(),
        vec![(2, 7)]
    );

    let s = sub.status().await;
    assert_eq!(s.empty_utterances, 2, "{s:?}");
    assert_eq!(s.windows_run, 1);
    assert!(s.rejected.is_empty(), "{s:?}");
    daemon.shutdown().await;
}

/// Real clock (see `daemon::e2e`: a paused clock may fire a deadline while a frame is
/// still inside the pty); the only wait is utterance 1's 300 ms visual deadline.
#[tokio::test]
async fn serial_pty_pair_carries_frames_both_ways() {
    let (daemon_end, test_end) = tokio_serial::SerialStream::pair().expect("pty pair");
    let serial = SerialInput {
        name: "serial:pty".into(),
        stream: Some(daemon_end),
        reopen: None,
    };
    let daemon = start(
        Endpoints {
            serial: vec![serial],
            ..Default::default()
        },
        options(),
    )
    .await;
    let mut port = Client::new(test_end);
    port.send(&Message::Subscribe).await;
    let _ = port.status().await;
    port.raw(&[0, 0]).await; // resynchronisation bytes are harmless
    for utt in 0..3 {
        port.send(&feat("s", utt, Modality::Text, utt as f32)).await;
        port.send(&feat("s", utt, Modality::Audio, 1.0)).await;
        if utt != 1 {
            port.send(&feat("s", utt, Modality::Visual, 1.0)).await;
        }
        port.send(&end("s", utt)).await;
    }
    // Utterance 1 waits for the visual deadline, so 1 and 2 are released together and the
    // queue may replace window 1 by window 2 (same conversation): wait for the final window.
    let last = loop {
        let r = port.result().await;
        if r.closed_utterance == 2 {
            break r;
        }
    };
    let avail: Vec<u8> = last.utterances.iter().map(|u| u.avail).collect();
    assert_eq!(avail, vec![7, 3, 7]);
    let s = port.status().await;
    assert!(
        s.rejected.is_empty(),
        "boundaries after complete utterances are not errors: {s:?}"
    );
    assert_eq!(s.windows_run + s.windows_superseded, 3);
    daemon.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn flood_is_rate_limited_and_counted() {
    let mut opts = options();
    opts.max_frames_per_second = 10;
    opts.burst = 20;
    let (_dir, path, daemon) = unix_daemon(opts).await;
    let mut flooder = connect(&path).await;
    let mut burst = Vec::new();
    for i in 0..100 {
        burst.extend(encode_frame(&Message::Reset {
            conversation: conversation_id(&format!("x{i}")).unwrap(),
        }));
    }
    flooder.raw(&burst).await;
    let mut observer = connect(&path).await;
    let mut flood = 0;
    for _ in 0..100 {
        flood = rejected(&observer.status().await, RejectReason::Flood);
        if flood >= 80 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!((80..=81).contains(&flood), "flood rejections: {flood}");
    daemon.shutdown().await;
}

fn job(conv: &str) -> WindowJob {
    job_at(conv, 0)
}

fn job_at(conv: &str, first_position: u64) -> WindowJob {
    WindowJob {
        conversation: conversation_id(conv).unwrap(),
        session: 1,
        first_position,
        utterances: Vec::new(),
    }
}

#[test]
fn only_a_covering_window_supersedes() {
    let q = JobQueue::new(8);
    assert_eq!(q.push(job_at("a", 3)), Pushed::Queued);
    // A window that moved on (sliding past position 3, or the next chunked block) would drop
    // utterance 3's last result: it queues behind.
    assert_eq!(q.push(job_at("a", 4)), Pushed::Queued);
    // One that starts at or before a queued one holds all of its utterances: it replaces it.
    assert_eq!(q.push(job_at("a", 4)), Pushed::Superseded);
    assert_eq!(q.len(), 2);
    let firsts: Vec<u64> = std::iter::from_fn(|| q.pop(Duration::ZERO).ok().flatten())
        .map(|j| j.first_position)
        .collect();
    assert_eq!(firsts, vec![3, 4]);
}

#[test]
fn queue_supersedes_same_conversation_then_drops_oldest() {
    let q = JobQueue::new(2);
    assert_eq!(q.push(job("a")), Pushed::Queued);
    assert_eq!(q.push(job("b")), Pushed::Queued);
    assert_eq!(q.push(job("a")), Pushed::Superseded);
    assert_eq!(q.len(), 2);
    assert_eq!(q.push(job("c")), Pushed::DroppedOldest);
    let order: Vec<String> = std::iter::from_fn(|| q.pop(Duration::ZERO).ok().flatten())
        .map(|j| j.conversation.to_string())
        .collect();
    assert_eq!(order, vec!["b", "c"]);
    q.close();
    assert_eq!(q.push(job("d")), Pushed::Closed);
    assert!(q.pop(Duration::ZERO).is_err());
}

/// probs = [1 - p, p] with p = the first text value (0.5 without text).
struct ProbRunner;

impl gsdnet_edge::daemon::inference::WindowRunner for ProbRunner {
    fn describe(&self) -> String {
        "prob".into()
    }
    fn completion(&self) -> String {
        "mock".into()
    }
    fn run(
        &mut self,
        job: &WindowJob,
    ) -> Result<Vec<gsdnet_edge::protocol::UtteranceResult>, gsdnet_edge::daemon::inference::RunError> {
        Ok(job
            .utterances
            .iter()
            .map(|u| {
                let p = u.features[0].as_ref().map_or(0.5, |t| t[0]);
                result(
                    u.utterance,
                    u.avail_bits(),
                    u16::from(p >= 0.5),
                    &["negative", "positive"],
                    &[1.0 - p, p],
                    Some(p),
                )
            })
            .collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scored_subscribers_get_confidence_and_the_uncertain_flag_plain_subscribers_do_not() {
    let mut opts = options();
    opts.abstain_below = 0.8;
    let (_dir, path, daemon) = unix_daemon_with(Box::new(ProbRunner), opts).await;
    let (mut scored, mut plain) = (connect(&path).await, connect(&path).await);
    scored.send(&Message::SubscribeScored).await;
    plain.send(&Message::Subscribe).await;
    let _ = (scored.status().await, plain.status().await);
    let mut sensor = connect(&path).await;
    for m in Modality::ALL {
        sensor.send(&feat("c", 0, m, 0.9)).await;
    }
    let want = |p: f32| (p.max(1.0 - p), p.max(1.0 - p) < 0.8);
    match scored.next().await {
        Message::Scored(r) => {
            assert_eq!((r.closed_utterance, r.abstain_below), (0, 0.8));
            let u = &r.utterances[0];
            assert_eq!(
                (u.avail, u.label, u.label_name.as_str(), u.probs.to_vec()),
                (7, 1, "positive", vec![1.0 - 0.9f32, 0.9])
            );
            assert_eq!((u.confidence, u.uncertain), want(0.9));
        }
        other => panic!("expected Scored, got {other:?}"),
    }
    assert!(
        matches!(plain.next().await, Message::Result(_)),
        "a Subscribe subscriber still gets Result"
    );
    for m in Modality::ALL {
        sensor.send(&feat("c", 1, m, 0.3)).await;
    }
    match scored.next().await {
        Message::Scored(r) => {
            let u = r.utterances.last().unwrap();
            assert!((u.confidence - 0.7).abs() < 1e-6 && u.uncertain, "{u:?}");
        }
        other => panic!("expected Scored, got {other:?}"),
    }
    daemon.shutdown().await;
}
