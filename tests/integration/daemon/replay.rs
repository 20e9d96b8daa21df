//! Replay planning (drop spans, masks, boundaries) and the recorder writing what the daemon
//! assembled back into the core's recording format.

use gsdnet_edge::client::replay::{plan, DropSpan, ReplayOptions};
use gsdnet_edge::daemon::assembly::{ClosedUtterance, WindowJob};
use gsdnet_edge::daemon::inference::WindowRunner;
use gsdnet_edge::daemon::recorder::RecorderRunner;
use gsdnet_edge::protocol::{conversation_id, Message, Modality};
use gsdnet_edge::recording::{Conversation, Recording, RecordingWriter, UtteranceRecord};

fn rec() -> Recording {
    let utt = |i: u32| UtteranceRecord {
        conversation: "c".into(),
        id: format!("c_{i}"),
        speaker: 0,
        position: i,
        timestamp_ms: None,
        label: None,
        label_cont: None,
        features: [Some(vec![i as f32; 100]), Some(vec![1.0; 73]), Some(vec![2.0; 100])],
    };
    Recording {
        conversations: vec![Conversation {
            id: "c".into(),
            utterances: (0..4).map(utt).collect(),
        }],
    }
}

#[test]
fn drop_spans_parse_and_reject_garbage() {
    let d: DropSpan = "camera:10-25.5".parse().unwrap();
    assert_eq!(
        d,
        DropSpan {
            modality: Modality::Visual,
            from_s: 10.0,
            to_s: 25.5
        }
    );
    for bad in ["visual", "nose:1-2", "audio:5-1", "audio:x-2", "audio:1-inf"] {
        assert!(bad.parse::<DropSpan>().is_err(), "{bad}");
    }
}

#[test]
fn plan_drops_over_the_timeline() {
    let opts = ReplayOptions {
        interval_ms: 1000,
        drops: vec!["audio:1-3".parse().unwrap()],
        ..Default::default()
    };
    let steps = plan(&rec(), &opts).unwrap();
    assert!(matches!(steps[0].msg, Message::Reset { .. }));
    let dropped: Vec<(u32, u64)> = steps
        .iter()
        .filter_map(|s| match &s.msg {
            Message::Dropout(d) => Some((d.utterance, s.at_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, vec![(1, 1000), (2, 2000)]);
    let ends = steps
        .iter()
        .filter(|s| matches!(s.msg, Message::UtteranceEnd(_)))
        .count();
    assert_eq!(ends, 4);
}

#[test]
fn plan_with_mask_keeps_one_modality_per_utterance() {
    let opts = ReplayOptions {
        interval_ms: 0,
        mask: Some((0.7, 3, tav())),
        ..Default::default()
    };
    let steps = plan(&rec(), &opts).unwrap();
    for u in 0..4 {
        let sent = steps
            .iter()
            .filter(|s| matches!(&s.msg, Message::Features(f) if f.utterance == u))
            .count();
        assert!((1..=3).contains(&sent), "utterance {u}: {sent}");
    }
    assert!(plan(
        &rec(),
        &ReplayOptions {
            mask: Some((1.5, 0, tav())),
            ..Default::default()
        }
    )
    .is_err());
}

#[test]
fn recorder_writes_each_utterance_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.gsdrec");
    let mut runner = RecorderRunner::new(RecordingWriter::create(&path).unwrap());
    let u = |i: u32, text: bool| ClosedUtterance {
        utterance: i,
        speaker: 2,
        features: [text.then(|| vec![i as f32; 100]), Some(vec![0.5; 73]), None],
    };
    let job = |first: u64, us: Vec<ClosedUtterance>| WindowJob {
        conversation: conversation_id("live").unwrap(),
        session: 1,
        first_position: first,
        utterances: us,
    };
    runner.run(&job(0, vec![u(0, true)])).unwrap();
    // Window 1 was superseded in the queue: window 2 carries utterances 1 and 2.
    runner.run(&job(0, vec![u(0, true), u(1, false), u(2, true)])).unwrap();
    drop(runner);
    let back = Recording::read(&path).unwrap();
    assert_eq!(back.conversations.len(), 1);
    let utts = &back.conversations[0].utterances;
    assert_eq!(utts.iter().map(|u| u.position).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(utts[1].features[0], None);
    assert_eq!(utts[2].features[0], Some(vec![2.0; 100]));
    assert_eq!(utts[0].speaker, 2);
}

fn tav() -> gsdnet_edge::modality::Modalities {
    gsdnet_edge::modality::Modalities::new([100, 73, 100]).unwrap()
}

/// Modalities named in `steps` (as Features or Dropout).
fn named(steps: &[gsdnet_edge::client::replay::Step]) -> [usize; 3] {
    let mut n = [0; 3];
    for s in steps {
        match &s.msg {
            Message::Features(f) => n[f.modality.index()] += 1,
            Message::Dropout(d) => n[d.modality.index()] += 1,
            _ => {}
        }
    }
    n
}

#[test]
fn plan_sends_only_the_served_models_modalities() {
    use gsdnet_edge::client::replay::modalities_of;
    use gsdnet_edge::modality::Modalities;
    // A text + audio recording (IEMOCAP-like): nothing is said about visual.
    let mut ta = rec();
    for u in &mut ta.conversations[0].utterances {
        u.features[2] = None;
    }
    assert_eq!(modalities_of(&ta), Modalities::new([100, 73, 0]));
    assert_eq!(named(&plan(&ta, &ReplayOptions::default()).unwrap()), [4, 4, 0]);
    // Served by a model with visual: visual is reported missing, not left to its deadline.
    let steps = plan(
        &ta,
        &ReplayOptions {
            modalities: Some(tav()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(named(&steps), [4, 4, 4]);
    assert!(steps
        .iter()
        .all(|s| !matches!(&s.msg, Message::Features(f) if f.modality == Modality::Visual)));
    // A full recording served by a model without visual: visual is never named.
    let opts = ReplayOptions {
        modalities: Modalities::new([100, 73, 0]),
        mask: Some((0.5, 1, Modalities::new([100, 73, 0]).unwrap())),
        ..Default::default()
    };
    let steps = plan(&rec(), &opts).unwrap();
    assert_eq!(named(&steps)[2], 0);
    for u in 0..4 {
        let sent = steps
            .iter()
            .filter(|s| matches!(&s.msg, Message::Features(f) if f.utterance == u))
            .count();
        assert!(
            (1..=2).contains(&sent),
            "the M = 2 mask keeps one of two: utterance {u}: {sent}"
        );
    }
}

#[test]
fn plan_carries_speakers_and_long_vectors() {
    let mut r = rec();
    for (i, u) in r.conversations[0].utterances.iter_mut().enumerate() {
        u.speaker = (i % 2) as u32;
        u.features[1] = Some(vec![0.25; 1024]);
    }
    let steps = plan(&r, &ReplayOptions::default()).unwrap();
    let speakers: Vec<u16> = steps
        .iter()
        .filter_map(|s| match &s.msg {
            Message::UtteranceStart(b) => Some(b.speaker),
            _ => None,
        })
        .collect();
    assert_eq!(speakers, vec![0, 1, 0, 1]);
    assert!(steps
        .iter()
        .any(|s| matches!(&s.msg, Message::Features(f) if f.values.len() == 1024)));
}
