//! Batching across conversations in the inference thread: one result per job in job order with
//! a batching mock runner; an engine error fails its batch only; with the real CMU-MOSI model
//! (tract), bad windows in a batch fail alone while the others publish what a run of each alone
//! gives, and eight sensors sending concurrently get, with `max_batch = 8`, the same results as
//! with `max_batch = 1` for every window (probabilities and regression within 1e-6; the test
//! prints the largest difference, 0 when bitwise equal).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::replay::{mosi_val, replay_options, sent_masks, start_unix};
use crate::util::{repo, tract_pipeline};
use gsdnet_edge::client::replay::{self, ReplayOptions};
use gsdnet_edge::daemon::assembly::{ClosedUtterance, WindowJob};
use gsdnet_edge::daemon::inference::{
    InferencePolicy, InferenceThread, JobQueue, RunError, WatchdogPolicy, WindowRunner,
};
use gsdnet_edge::daemon::model_info::ServedModel;
use gsdnet_edge::daemon::notify::NoNotifier;
use gsdnet_edge::daemon::pipeline_runner::PipelineRunner;
use gsdnet_edge::daemon::server::ServeOptions;
use gsdnet_edge::daemon::stats::Stats;
use gsdnet_edge::pipeline::{Completion, Pipeline, PipelineOptions};
use gsdnet_edge::protocol::{conversation_id, FrameDecoder, Message, UtteranceResult};
use gsdnet_edge::recording::{Conversation, Recording};
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

const SEED: u64 = 0;
const STEPS: Option<usize> = Some(3);

fn job(conv: &str, utterances: Vec<ClosedUtterance>) -> WindowJob {
    WindowJob {
        conversation: conversation_id(conv).unwrap(),
        session: 1,
        first_position: 0,
        utterances,
    }
}

fn policy() -> InferencePolicy {
    InferencePolicy {
        watchdog: WatchdogPolicy {
            heartbeat: Duration::from_millis(50),
            max_consecutive_errors: 100,
        },
        batch_latency: Duration::from_secs(60),
    }
}

/// The values of `counters` (the daemon's `Stats`), in order.
fn loads<const N: usize>(counters: [&AtomicU64; N]) -> [u64; N] {
    counters.map(|c| c.load(Relaxed))
}

/// Pushes `jobs` before the thread starts (so its first batch takes as many as `max_batch`
/// allows), lets it drain the queue, and returns what it published and its counters.
fn run_thread(
    runner: Box<dyn WindowRunner>,
    jobs: Vec<WindowJob>,
) -> (Vec<Arc<gsdnet_edge::daemon::inference::Published>>, Arc<Stats>) {
    let queue = Arc::new(JobQueue::new(64));
    for j in jobs {
        queue.push(j);
    }
    let (tx, mut rx) = broadcast::channel(256);
    let stats = Arc::new(Stats::default());
    let thread = InferenceThread::spawn(runner, queue, tx, Arc::clone(&stats), Arc::new(NoNotifier), policy()).unwrap();
    thread.stop();
    let mut out = Vec::new();
    while let Ok(r) = rx.try_recv() {
        out.push(r);
    }
    (out, stats)
}

/// Answers each utterance with its id as the label; records batch sizes; fails every job of a
/// batch that holds a conversation named "boom" (an engine error).
struct BatchMock {
    max: usize,
    sizes: Arc<Mutex<Vec<usize>>>,
}

impl WindowRunner for BatchMock {
    fn describe(&self) -> String {
        "batch-mock".into()
    }
    fn completion(&self) -> String {
        "mock".into()
    }
    fn run(&mut self, job: &WindowJob) -> Result<Vec<UtteranceResult>, RunError> {
        let names = ["negative", "positive"];
        Ok(job
            .utterances
            .iter()
            .map(|u| daemon_result(u.utterance, &names))
            .collect())
    }
    fn max_batch(&self) -> usize {
        self.max
    }
    fn run_batch(&mut self, jobs: &[WindowJob]) -> Vec<Result<Vec<UtteranceResult>, RunError>> {
        self.sizes.lock().unwrap().push(jobs.len());
        if jobs.iter().any(|j| j.conversation.as_str() == "boom") {
            return jobs.iter().map(|_| Err("engine failed".into())).collect();
        }
        jobs.iter().map(|j| self.run(j)).collect()
    }
}

fn daemon_result(utterance: u32, names: &[&str]) -> UtteranceResult {
    UtteranceResult {
        utterance,
        avail: 1,
        label: (utterance % 2) as u16,
        label_name: gsdnet_edge::protocol::class_name(names[(utterance % 2) as usize]).unwrap(),
        probs: gsdnet_edge::protocol::Probs::from_slice(&[0.5, 0.5]).unwrap(),
        reg: None,
    }
}

/// Utterance `id`, spoken by speaker `id % 2`.
fn utt(id: u32) -> ClosedUtterance {
    ClosedUtterance {
        utterance: id,
        speaker: (id % 2) as u16,
        features: [Some(vec![0.0]), None, None],
    }
}

#[test]
fn a_batch_publishes_one_result_per_job_in_job_order() {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let jobs: Vec<WindowJob> = (0..5).map(|i| job(&format!("c{i}"), vec![utt(i)])).collect();
    let (out, stats) = run_thread(
        Box::new(BatchMock {
            max: 8,
            sizes: Arc::clone(&sizes),
        }),
        jobs,
    );
    assert_eq!(*sizes.lock().unwrap(), [5]);
    let order: Vec<(String, u32)> = out
        .iter()
        .map(|r| (r.conversation.to_string(), r.closed_utterance))
        .collect();
    assert_eq!(order, (0..5).map(|i| (format!("c{i}"), i)).collect::<Vec<_>>());
    // Each result carries its window's speakers (the ROS 2 result publishes them).
    let speakers: Vec<Vec<u16>> = out.iter().map(|r| r.speakers.clone()).collect();
    assert_eq!(speakers, (0..5u16).map(|i| vec![i % 2]).collect::<Vec<_>>());
    assert!(
        out.iter().all(|r| r.latency_us == out[0].latency_us),
        "one batch: one run time"
    );
    assert_eq!(
        loads([&stats.batches_run, &stats.windows_batched, &stats.windows_run]),
        [1, 5, 5]
    );
}

#[test]
fn an_engine_error_fails_only_its_batch() {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let names = ["a", "boom", "b", "c", "d"];
    let jobs: Vec<WindowJob> = names
        .iter()
        .enumerate()
        .map(|(i, c)| job(c, vec![utt(i as u32)]))
        .collect();
    let (out, stats) = run_thread(
        Box::new(BatchMock {
            max: 3,
            sizes: Arc::clone(&sizes),
        }),
        jobs,
    );
    assert_eq!(*sizes.lock().unwrap(), [3, 2]);
    let published: Vec<String> = out.iter().map(|r| r.conversation.to_string()).collect();
    assert_eq!(published, ["c", "d"]);
    assert_eq!(
        loads([&stats.inference_errors, &stats.windows_run, &stats.batches_run]),
        [3, 2, 2]
    );
}

#[test]
fn a_runner_without_batching_still_gets_one_window_at_a_time() {
    struct Single(Arc<Mutex<Vec<usize>>>);
    impl WindowRunner for Single {
        fn describe(&self) -> String {
            "single".into()
        }
        fn completion(&self) -> String {
            "mock".into()
        }
        fn run(&mut self, job: &WindowJob) -> Result<Vec<UtteranceResult>, RunError> {
            self.0.lock().unwrap().push(job.utterances.len());
            Ok(job
                .utterances
                .iter()
                .map(|u| daemon_result(u.utterance, &["negative", "positive"]))
                .collect())
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let jobs: Vec<WindowJob> = (0..4).map(|i| job(&format!("c{i}"), vec![utt(i)])).collect();
    let (out, stats) = run_thread(Box::new(Single(Arc::clone(&seen))), jobs);
    assert_eq!(
        (out.len(), loads([&stats.batches_run, &stats.windows_batched])),
        (4, [4, 0])
    );
    assert_eq!(seen.lock().unwrap().len(), 4, "through `run`, one job each");
}

fn pipeline(max_batch: usize) -> Pipeline {
    let opts = PipelineOptions {
        steps: STEPS,
        max_batch,
        ..Default::default()
    };
    tract_pipeline(&repo().join("models/gsdnet-mosi"), &opts)
}

fn runner(max_batch: usize) -> PipelineRunner {
    PipelineRunner::new(pipeline(max_batch), Completion::Gsdnet, SEED, 0).unwrap()
}

/// The window of `conv` whose last utterance is `closed`, with exactly the modalities `avail`
/// says (bits by `Modality::index`, per utterance), as the assembler builds it.
fn window_of(conv: &Conversation, closed: u32, avail: &dyn Fn(u32) -> u8) -> WindowJob {
    let utterances = conv
        .utterances
        .iter()
        .filter(|u| u.position <= closed)
        .map(|u| {
            let bits = avail(u.position);
            let features = std::array::from_fn(|m| u.features[m].clone().filter(|_| bits & (1 << m) != 0));
            ClosedUtterance {
                utterance: u.position,
                speaker: u.speaker as u16,
                features,
            }
        })
        .collect();
    job(&conv.id, utterances)
}

/// Largest difference of probabilities and regression; panics when labels or avail differ.
fn max_diff(a: &[UtteranceResult], b: &[UtteranceResult], what: &str) -> f32 {
    assert_eq!(a.len(), b.len(), "{what}");
    let mut d = 0f32;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            (x.utterance, x.avail, x.label, &x.label_name),
            (y.utterance, y.avail, y.label, &y.label_name),
            "{what}"
        );
        for (p, q) in x.probs.iter().zip(y.probs.iter()) {
            d = d.max((p - q).abs());
        }
        d = d.max((x.reg.unwrap_or(0.0) - y.reg.unwrap_or(0.0)).abs());
    }
    d
}

#[test]
fn bad_windows_in_a_batch_fail_alone_and_the_rest_equal_single_runs() {
    let rec = mosi_val();
    let all = |_: u32| 0b111;
    let text_only = |_: u32| 0b001;
    let good: Vec<WindowJob> = vec![
        window_of(&rec.conversations[0], 5, &all),
        window_of(&rec.conversations[1], 9, &text_only),
        window_of(&rec.conversations[2], 3, &|p| if p % 2 == 0 { 0b011 } else { 0b100 }),
        window_of(&rec.conversations[3], 0, &text_only),
    ];
    let mut nan = window_of(&rec.conversations[4], 4, &all);
    nan.conversation = conversation_id("nan").unwrap();
    nan.utterances[2].features[1].as_mut().unwrap()[7] = f32::NAN;
    let mut short = window_of(&rec.conversations[5], 2, &all);
    short.conversation = conversation_id("short").unwrap();
    short.utterances[0].features[0].as_mut().unwrap().pop();
    let mut long = window_of(&rec.conversations[6], 0, &all);
    long.conversation = conversation_id("long").unwrap();
    long.utterances = (0..65)
        .map(|i| ClosedUtterance {
            utterance: i,
            ..long.utterances[0].clone()
        })
        .collect();
    let jobs = vec![
        good[0].clone(),
        nan,
        good[1].clone(),
        short,
        long,
        good[2].clone(),
        good[3].clone(),
    ];

    let mut single = runner(1);
    let want: Vec<Vec<UtteranceResult>> = good.iter().map(|j| single.run(j).unwrap()).collect();
    let direct = runner(8).run_batch(&jobs);
    assert_eq!(
        direct.iter().map(Result::is_ok).collect::<Vec<_>>(),
        [true, false, true, false, false, true, true]
    );

    let (out, stats) = run_thread(Box::new(runner(8)), jobs);
    assert_eq!(
        loads([&stats.batches_run, &stats.windows_batched]),
        [1, 7],
        "one batch of seven"
    );
    assert_eq!(loads([&stats.inference_errors, &stats.windows_run]), [3, 4]);
    let published: Vec<String> = out.iter().map(|r| r.conversation.to_string()).collect();
    assert_eq!(
        published,
        good.iter().map(|j| j.conversation.to_string()).collect::<Vec<_>>(),
        "job order, bad ones left out"
    );
    let mut worst = 0f32;
    for (r, w) in out.iter().zip(&want) {
        worst = worst.max(max_diff(&r.utterances, w, &r.conversation));
    }
    eprintln!("batch of 7 (3 invalid) vs single runs: largest difference {worst:e}");
    assert!(worst <= 1e-6, "{worst}");
}

fn options(model: ServedModel) -> ServeOptions {
    let base = replay_options(model, 64, 60_000);
    ServeOptions {
        limits: gsdnet_edge::daemon::limits::ConnectionLimits {
            total_frames_per_second: 10_000_000,
            total_burst: 10_000_000,
            ..Default::default()
        },
        ..base
    }
}

type Published = HashMap<(String, u32), Vec<UtteranceResult>>;

/// Serves the real model with `max_batch`; eight sensors replay a share of the val videos each
/// (eval's mask at rate 0.3) at once; returns every published window and the final counters.
async fn serve_concurrently(rec: &Recording, max_batch: usize) -> (Published, Arc<Stats>) {
    let mods = pipeline(1).model().manifest.modalities;
    let model = ServedModel::from_manifest(&pipeline(1).model().manifest).unwrap();
    let mut d = start_unix(pipeline(max_batch), SEED, 0, options(model)).await;
    // One utterance per sensor every 25 ms: about the thread's capacity with eight sensors, so
    // batches of every size form and most windows are published rather than superseded.
    let opts = ReplayOptions {
        interval_ms: 25,
        drops: Vec::new(),
        mask: Some((0.3, SEED, mods)),
        modalities: Some(mods),
    };
    let mut writers = Vec::new();
    for s in 0..8 {
        let share = Recording {
            conversations: rec.conversations.iter().skip(s).step_by(8).cloned().collect(),
        };
        let steps = replay::plan(&share, &opts).unwrap();
        let mut sensor = d.connect().await;
        writers.push(tokio::spawn(async move {
            replay::send(&mut sensor, &steps, true).await.unwrap();
            sensor
        }));
    }
    let last: HashMap<String, u32> = rec
        .conversations
        .iter()
        .map(|c| (c.id.clone(), c.utterances.last().unwrap().position))
        .collect();
    let (mut dec, mut buf, mut got, mut finals) = (FrameDecoder::default(), vec![0u8; 65536], Published::new(), 0usize);
    while finals < last.len() {
        let n = tokio::time::timeout(Duration::from_secs(120), d.sub.read(&mut buf))
            .await
            .expect("results stopped")
            .unwrap();
        assert!(n > 0, "daemon closed the subscriber stream");
        for m in dec.feed(&buf[..n]) {
            if let Message::Result(r) = m.unwrap() {
                finals += usize::from(last.get(r.conversation.as_str()) == Some(&r.closed_utterance));
                got.insert((r.conversation.to_string(), r.closed_utterance), r.utterances);
            }
        }
    }
    let _sensors: Vec<_> = futures_join(writers).await;
    (got, d.stop().await)
}

async fn futures_join<T>(hs: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in hs {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conversations_batched_equal_one_window_at_a_time() {
    let rec = mosi_val();
    assert!(
        rec.conversations.iter().all(|c| c.utterances.len() <= 64),
        "each val video fits one window"
    );
    let (batched, stats8) = serve_concurrently(&rec, 8).await;
    let (single, stats1) = serve_concurrently(&rec, 1).await;
    assert!(
        stats8.windows_batched.load(Relaxed) > 0,
        "eight sensors at full speed: some windows ran in batches"
    );
    assert!(
        stats8.batches_run.load(Relaxed) < stats8.windows_run.load(Relaxed) + stats8.inference_errors.load(Relaxed)
    );
    assert_eq!(loads([&stats1.windows_batched, &stats8.inference_errors]), [0, 0]);
    // Every window the batched daemon published equals one run of it alone...
    let by_id: HashMap<&str, &Conversation> = rec.conversations.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut alone = runner(1);
    let (mut worst, mut common) = (0f32, 0usize);
    for ((conv, closed), utts) in &batched {
        let avail: HashMap<u32, u8> = utts.iter().map(|u| (u.utterance, u.avail)).collect();
        let want = alone
            .run(&window_of(by_id[conv.as_str()], *closed, &|p| avail[&p]))
            .unwrap();
        worst = worst.max(max_diff(utts, &want, conv));
        // ...and what the max_batch = 1 daemon published for the same window.
        if let Some(other) = single.get(&(conv.clone(), *closed)) {
            worst = worst.max(max_diff(utts, other, conv));
            common += 1;
        }
    }
    let masks = sent_masks(
        &replay::plan(
            &rec,
            &ReplayOptions {
                mask: Some((0.3, SEED, pipeline(1).model().manifest.modalities)),
                ..Default::default()
            },
        )
        .unwrap(),
    );
    for ((conv, _), utts) in &batched {
        for u in utts {
            let sent = masks[&(conv.clone(), u.utterance)];
            assert_eq!(
                u.avail,
                sent.iter().enumerate().map(|(m, &x)| u8::from(x) << m).sum::<u8>(),
                "{conv}: published what was sent"
            );
        }
    }
    eprintln!(
        "max_batch 8: {} windows published ({} batched in {} batches), {common} also published by max_batch 1; largest difference {worst:e}",
        batched.len(),
        stats8.windows_batched.load(Relaxed),
        stats8.batches_run.load(Relaxed)
    );
    assert!(
        common >= rec.conversations.len(),
        "at least every final window is in both"
    );
    assert!(worst <= 1e-6, "{worst}");
}
