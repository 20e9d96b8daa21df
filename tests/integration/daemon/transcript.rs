//! `Transcript` through the daemon: with a text frontend the transcript becomes the utterance's
//! text vector (the frontend's own embedding of it, computed off the IO tasks) and the window
//! runs with text available; a model without a frontend refuses it as `TranscriptRefused` and
//! keeps serving; invalid UTF-8 is `Malformed` and the frames after it still count. Needs the
//! set-up's encoder.onnx (skips without it).

use std::sync::{Arc, Mutex};

use crate::util::daemon::{connect, end, iemocap_like, options, rejected, result, unix_daemon_with, ClassRunner};
use crate::util::repo;
use gsdnet_edge::backend::{BackendKind, BackendOptions};
use gsdnet_edge::daemon::assembly::WindowJob;
use gsdnet_edge::daemon::inference::{RunError, WindowRunner};
use gsdnet_edge::daemon::model_info::ServedModel;
use gsdnet_edge::daemon::server::ServeOptions;
use gsdnet_edge::frontend::{FrontendError, TextFrontend};
use gsdnet_edge::modality::Modalities;
use gsdnet_edge::protocol::{
    conversation_id, transcript_text, values, Features, Message, Modality, RejectReason, Transcript, UtteranceResult,
};

const TEXT: &str = "I can't believe you did that again!";

/// Text vectors of every window the runner ran, by utterance.
type SeenText = Arc<Mutex<Vec<(u32, Option<Vec<f32>>)>>>;

/// Records the text vector of each utterance it runs and hands the daemon its frontend.
struct TextRunner {
    frontend: Option<TextFrontend>,
    seen: SeenText,
}

impl WindowRunner for TextRunner {
    fn describe(&self) -> String {
        "text-mock".into()
    }
    fn completion(&self) -> String {
        "mock".into()
    }
    fn run(&mut self, job: &WindowJob) -> Result<Vec<UtteranceResult>, RunError> {
        let mut seen = self.seen.lock().unwrap();
        Ok(job
            .utterances
            .iter()
            .map(|u| {
                seen.push((u.utterance, u.features[0].clone()));
                result(u.utterance, u.avail_bits(), 0, &["a", "b"], &[0.5, 0.5], None)
            })
            .collect())
    }
    fn take_text_frontend(&mut self) -> Option<TextFrontend> {
        self.frontend.take()
    }
}

fn frontend() -> Option<TextFrontend> {
    let dir = repo().join("models/frontends/all-minilm-l6-v2");
    match TextFrontend::load(&dir, BackendKind::Tract, &BackendOptions::default()) {
        Ok(f) => Some(f),
        Err(e @ FrontendError::Missing { .. }) => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn transcript(conv: &str, utt: u32, text: &str) -> Message {
    Message::Transcript(Transcript {
        conversation: conversation_id(conv).unwrap(),
        utterance: utt,
        speaker: 0,
        timestamp_us: 0,
        text: transcript_text(text).unwrap(),
    })
}

fn audio(conv: &str, utt: u32) -> Message {
    Message::Features(Features {
        conversation: conversation_id(conv).unwrap(),
        utterance: utt,
        speaker: 0,
        modality: Modality::Audio,
        timestamp_us: 0,
        values: values(&[0.5; 47]).unwrap(),
    })
}

fn minilm_options() -> ServeOptions {
    let model = ServedModel::new(
        "mock-minilm",
        Modalities::new([384, 47, 0]).unwrap(),
        &["a", "b"],
        false,
    )
    .unwrap();
    ServeOptions { model, ..options() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcript_becomes_the_text_vector() {
    let Some(mut reference) = frontend() else { return };
    let Some(served) = frontend() else { return };
    let want = reference.embed(&[TEXT, ""]).unwrap();
    let seen = SeenText::default();
    let runner = TextRunner {
        frontend: Some(served),
        seen: Arc::clone(&seen),
    };
    let (_dir, path, daemon) = unix_daemon_with(Box::new(runner), minilm_options()).await;
    let mut c = connect(&path).await;
    c.send(&Message::Subscribe).await;
    for (utt, text) in [(0, TEXT), (1, "")] {
        c.send(&transcript("talk", utt, text)).await;
        c.send(&audio("talk", utt)).await;
        c.send(&end("talk", utt)).await;
    }
    // Utterance 0's window may be superseded by utterance 1's, which covers it (a queued window
    // gives way to a covering one): read results until utterance 1's, which must show both
    // utterances with text and audio.
    let last = loop {
        let r = c.result().await;
        assert_eq!(r.utterances.last().unwrap().avail, 0b11, "text and audio available");
        if r.closed_utterance == 1 {
            break r;
        }
        assert_eq!(r.closed_utterance, 0);
    };
    let avail: Vec<(u32, u8)> = last.utterances.iter().map(|u| (u.utterance, u.avail)).collect();
    assert_eq!(avail, [(0, 0b11), (1, 0b11)]);
    let status = c.status().await;
    assert_eq!(rejected(&status, RejectReason::TranscriptRefused), 0);
    daemon.shutdown().await;
    let seen = seen.lock().unwrap();
    for (utt, want) in [(0u32, &want[0]), (1, &want[1])] {
        // The last window naming it (the warm-up window before READY has an utterance 0 too).
        let got = seen
            .iter()
            .rev()
            .find(|(u, _)| *u == utt)
            .and_then(|(_, t)| t.clone())
            .expect("text vector");
        assert_eq!(got.len(), 384);
        let diff = got
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff < 1e-5,
            "utterance {utt}: the daemon's text vector differs from the frontend's by {diff}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_a_frontend_refuses_transcripts_and_keeps_serving() {
    let opts = ServeOptions {
        model: iemocap_like(),
        ..options()
    };
    let runner = ClassRunner::new(iemocap_like(), Default::default());
    let (_dir, path, daemon) = unix_daemon_with(Box::new(runner), opts).await;
    let mut c = connect(&path).await;
    c.send(&Message::Subscribe).await;
    c.send(&transcript("talk", 0, TEXT)).await;
    // Invalid UTF-8 in the text: Malformed, and the frame after it is still read.
    let good = gsdnet_edge::protocol::encode_frame(&transcript("talk", 0, "ok"));
    let bad: Vec<u8> = {
        let mut body = vec![2u8, 16, 4, b't', b'a', b'l', b'k', 0, 0, 0, 2, 0xc3, 0x28];
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        let mut f = cobs::encode_vec(&body);
        f.push(0);
        f
    };
    c.raw(&bad).await;
    c.raw(&good).await;
    c.send(&audio("talk", 0)).await;
    c.send(&end("talk", 0)).await;
    let r = c.result().await;
    assert_eq!(r.utterances[0].avail, 0b10, "audio only: the transcripts were refused");
    let status = c.status().await;
    assert_eq!(rejected(&status, RejectReason::TranscriptRefused), 2);
    assert_eq!(rejected(&status, RejectReason::Malformed), 1);
    daemon.shutdown().await;
}
