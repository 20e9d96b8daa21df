//! The daemon against what a robot in the field meets (issue 12), through the real serve loop
//! on a Unix socket: a sensor that restarts its utterance ids, clients that never read, idle
//! connections, made-up conversations taking every slot, conversation ids that would forge log
//! lines, an engine that keeps failing, a flood spread over many connections next to a serial
//! sensor, and shutdown with work still open. Real clock throughout: a paused clock advances
//! while the inference thread works, so it would fire the tests' own time limits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::daemon::{
    connect, feat, options, rejected, serial_rig, start, unix_daemon, unix_daemon_with, Client, MockRunner,
};
use gsdnet_edge::daemon::assembly::WindowJob;
use gsdnet_edge::daemon::inference::{RunError, WindowRunner};
use gsdnet_edge::protocol::{
    encode_frame, Boundary, ConversationId, Features, Message, Modality, RejectReason, UtteranceResult, WindowResult,
};
use tokio::io::AsyncWriteExt;

async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not within {secs} s"),
    }
}

async fn utterance<S>(c: &mut Client<S>, conv: &str, utt: u32, v: f32)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for m in Modality::ALL {
        c.send(&feat(conv, utt, m, v)).await;
    }
}

/// Results until one closes `utt` (earlier windows of the conversation may be superseded).
async fn result_for<S>(c: &mut Client<S>, conv: &str, utt: u32) -> WindowResult
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let r = c.result().await;
        if r.conversation.as_str() == conv && r.closed_utterance == utt {
            return r;
        }
    }
}

/// `c` sends utterance `utt` of `conv` and reads results until its own, within `secs` s.
async fn round_trip<S>(c: &mut Client<S>, conv: &str, utt: u32, v: f32, secs: u64, what: &str) -> WindowResult
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    utterance(c, conv, utt, v).await;
    within(secs, what, result_for(c, conv, utt)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensor_that_restarts_its_ids_without_reset_is_served_again() {
    let (_dir, path, daemon) = unix_daemon(options()).await;
    let mut sub = connect(&path).await;
    sub.send(&Message::Subscribe).await;
    let _ = sub.status().await;
    let mut sensor = connect(&path).await;
    for utt in 0..6 {
        utterance(&mut sensor, "robot", utt, utt as f32).await;
        within(5, "first session", result_for(&mut sub, "robot", utt)).await;
    }
    drop(sensor);
    // The sensor process restarts: utterance ids from 0 again, no Reset.
    let mut sensor = connect(&path).await;
    for utt in 0..3 {
        utterance(&mut sensor, "robot", utt, 10.0 + utt as f32).await;
        let r = within(5, "after the restart", result_for(&mut sub, "robot", utt)).await;
        assert_eq!(
            r.utterances.len(),
            utt as usize + 1,
            "a new session: its window starts empty"
        );
        assert_eq!(
            r.utterances.last().map(|u| (u.avail, u.reg)),
            Some((7, Some(10.0 + utt as f32)))
        );
    }
    let h = sub.health().await;
    assert_eq!((h.conversation_restarts, h.late_replayed), (1, 2), "{h:?}");
    assert_eq!(
        rejected(&sub.status().await, RejectReason::Late),
        2,
        "refused at arrival, then replayed"
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_read_are_dropped_and_cannot_hang_shutdown() {
    let mut opts = options();
    (opts.max_frames_per_second, opts.burst) = (1_000_000, 1_000_000);
    opts.limits.total_frames_per_second = 1_000_000;
    opts.limits.total_burst = 1_000_000;
    let (_dir, path, daemon) = unix_daemon(opts).await;
    let mut sub = connect(&path).await;
    sub.send(&Message::Subscribe).await;
    let _ = sub.status().await;
    let burst: Vec<u8> = (0..20_000)
        .flat_map(|_| encode_frame(&Message::StatusRequest))
        .collect();
    let mut hogs = Vec::new();
    for _ in 0..6 {
        let mut hog = tokio::net::UnixStream::connect(&path).await.unwrap();
        let burst = burst.clone();
        hogs.push(tokio::spawn(async move {
            // Never reads; the write fails once the daemon hangs up on it.
            let _ = hog.write_all(&burst).await;
            hog
        }));
    }
    let mut sensor = connect(&path).await;
    for utt in 0..3 {
        utterance(&mut sensor, "talk", utt, 1.0).await;
        within(
            10,
            "results next to non-reading clients",
            result_for(&mut sub, "talk", utt),
        )
        .await;
    }
    let mut slow = 0;
    for _ in 0..100 {
        slow = sub.health().await.slow_clients_disconnected;
        if slow >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(slow, 6, "each non-reading client is disconnected");
    // An utterance still open at shutdown is released with what arrived and its result offered.
    sensor.send(&feat("talk", 3, Modality::Text, 3.0)).await;
    let _ = sensor.status().await; // the text has reached the assembler
    let stopping = tokio::spawn(daemon.shutdown());
    let r = within(5, "the flushed utterance's result", result_for(&mut sub, "talk", 3)).await;
    assert_eq!(r.utterances.last().map(|u| u.avail), Some(1));
    within(5, "shutdown", stopping).await.unwrap();
    for h in hogs {
        h.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_conversations_cannot_take_every_slot() {
    let mut opts = options();
    opts.assembly.max_conversations = 8;
    opts.assembly.idle_conversation_ms = 600_000;
    let (_dir, path, daemon) = unix_daemon(opts).await;
    let mut sub = connect(&path).await;
    sub.send(&Message::Subscribe).await;
    let mut squatter = connect(&path).await;
    for i in 0..8 {
        let b = Boundary {
            conversation: ConversationId::try_from(format!("fake{i}").as_str()).unwrap(),
            utterance: 0,
            speaker: 0,
            timestamp_us: 0,
        };
        squatter.send(&Message::UtteranceStart(b)).await;
    }
    let _ = squatter.status().await;
    let mut sensor = connect(&path).await;
    utterance(&mut sensor, "real", 0, 1.0).await;
    let r = within(5, "a real conversation admitted", result_for(&mut sub, "real", 0)).await;
    assert_eq!(r.utterances.len(), 1);
    let h = sub.health().await;
    assert_eq!(h.conversations_evicted, 1, "{h:?}");
    assert_eq!(rejected(&sub.status().await, RejectReason::Capacity), 0);
    daemon.shutdown().await;
}

/// Keeps every log line written while installed (the test binary's only logger).
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(format!("{}", r.args()));
        }
    }
    fn flush(&self) {}
}

static LOGS: Capture = Capture(Mutex::new(Vec::new()));

#[tokio::test(start_paused = true)]
async fn conversation_ids_with_control_characters_are_malformed_and_logs_stay_one_line() {
    let _ = log::set_logger(&LOGS);
    log::set_max_level(log::LevelFilter::Debug);
    let (_dir, path, daemon) = unix_daemon(options()).await;
    let mut c = connect(&path).await;
    let forged = ConversationId::try_from("x\n<0>emerg").unwrap();
    let mut f = feat("x", 0, Modality::Text, 1.0);
    if let Message::Features(Features { conversation, .. }) = &mut f {
        *conversation = forged;
    }
    c.send(&f).await;
    let s = c.status().await;
    assert_eq!(rejected(&s, RejectReason::Malformed), 1, "{s:?}");
    assert_eq!(s.frames_accepted, 0);
    daemon.shutdown().await;
    let lines = LOGS.0.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("control character")),
        "the rejection was logged: {lines:?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains('\n') && !l.contains('\r')),
        "{lines:?}"
    );
}

/// Fails every window of conversations named "bad...", runs the rest like `MockRunner`.
struct FlakyRunner;

impl WindowRunner for FlakyRunner {
    fn describe(&self) -> String {
        "flaky".into()
    }
    fn completion(&self) -> String {
        "mock".into()
    }
    fn run(&mut self, job: &WindowJob) -> Result<Vec<UtteranceResult>, RunError> {
        if job.conversation.starts_with("bad") {
            return Err("engine failure".into());
        }
        MockRunner.run(job)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_keeps_failing_stops_feeding_the_watchdog() {
    let mut opts = options();
    opts.heartbeat = Duration::from_millis(10);
    opts.max_consecutive_errors = 3;
    let (_dir, path, daemon) = unix_daemon_with(Box::new(FlakyRunner), opts).await;
    let notifier = Arc::clone(&daemon.notifier);
    let mut c = connect(&path).await;
    c.send(&Message::Subscribe).await;
    // Three conversations, so that no failing window supersedes another in the queue.
    for conv in ["bad0", "bad1", "bad2"] {
        utterance(&mut c, conv, 0, 1.0).await;
    }
    let mut h = c.health().await;
    for _ in 0..100 {
        if h.watchdog_stopped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        h = c.health().await;
    }
    assert!(h.watchdog_stopped && h.consecutive_inference_errors == 3, "{h:?}");
    let before = notifier.watchdog_pings();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(notifier.watchdog_pings(), before, "no ping while the engine fails");
    assert!(
        notifier.events().iter().any(|e| e.contains("watchdog stopped")),
        "{:?}",
        notifier.events()
    );
    // One good window and the pings resume.
    round_trip(&mut c, "good", 0, 1.0, 5, "good result").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(notifier.watchdog_pings() > before + 2);
    assert!(!c.health().await.watchdog_stopped);
    within(5, "shutdown", daemon.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_over_many_connections_is_limited_as_a_whole_and_serial_is_not_starved() {
    let rig = serial_rig();
    let mut opts = options();
    opts.limits.total_frames_per_second = 100;
    opts.limits.total_burst = 100;
    let daemon = start(rig.endpoints, opts).await;
    let (mut port, path) = (Client::new(rig.port), rig.path);
    port.send(&Message::Subscribe).await;
    let _ = port.status().await;
    // Eight connections, each well within its own rate, together far beyond the total.
    let frames: Vec<u8> = (0..200)
        .flat_map(|i| {
            encode_frame(&Message::Reset {
                conversation: ConversationId::try_from(format!("f{i}").as_str()).unwrap(),
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let mut flooders = Vec::new();
    for _ in 0..8 {
        let mut f = connect(&path).await;
        f.raw(&frames).await;
        flooders.push(f);
    }
    for utt in 0..3 {
        round_trip(
            &mut port,
            "serial",
            utt,
            1.0,
            10,
            "serial results during a socket flood",
        )
        .await;
    }
    // Until all 1600 socket frames are accounted for: rejected as Flood, or accepted (the serial
    // sensor's 9 Features are accepted too).
    let (flood, accepted) = within(20, "the flood processed", async {
        loop {
            let s = port.status().await;
            let (flood, accepted) = (rejected(&s, RejectReason::Flood), s.frames_accepted.saturating_sub(9));
            if flood + accepted >= 1_600 {
                return (flood, accepted);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // What the shared bucket allows: its burst plus its rate over the time it took, whatever the
    // machine's load.
    let allowed = 100.0 + 100.0 * started.elapsed().as_secs_f64();
    assert!(
        (accepted as f64) <= allowed + 1.0,
        "{accepted} socket frames accepted, {allowed:.0} allowed ({flood} Flood)"
    );
    assert_eq!(flood + accepted, 1_600);
    drop(flooders);
    within(5, "shutdown", daemon.shutdown()).await;
}

/// The setting: the release binary under systemd's default soft limit of 1024 open
/// files, 1100 connections that send nothing, then a real sensor.
#[test]
fn idle_connections_do_not_lock_a_sensor_out_under_the_default_file_limit() {
    use std::os::unix::process::CommandExt;
    raise_own_file_limit(4096);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let board = dir.path().join("board.toml");
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-model");
    std::fs::write(
        &board,
        format!(
            "[board]\nname = \"test\"\n[engine]\nbackend = \"tract\"\nmodels = {model:?}\nqueue_capacity = 8\n\
         [assembly]\nwindow = 8\ndeadline_ms = {{ text = 300, audio = 300, visual = 300 }}\nmax_utterance_ms = 10000\n\
         max_open_utterances = 8\nmax_conversations = 8\nidle_conversation_ms = 600000\n\
         [inputs]\nunix = [{sock:?}]\nmax_frames_per_second = 1000\nburst = 400\nidle_timeout_ms = 2000\n"
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gsdnet"));
    cmd.args(["serve", "--board"])
        .arg(&board)
        .env("RUST_LOG", "error")
        .stderr(std::process::Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut probe = within(60, "daemon up", async {
            loop {
                if let Ok(s) = tokio::net::UnixStream::connect(&sock).await {
                    return Client::new(s);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        let _ = within(10, "status", probe.status()).await;
        let mut idle = Vec::new();
        for _ in 0..1100 {
            match tokio::net::UnixStream::connect(&sock).await {
                Ok(s) => idle.push(s),
                Err(_) => break, // a full accept backlog only makes the point sharper
            }
        }
        assert!(idle.len() >= 1024, "opened {} idle connections", idle.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut sensor = within(10, "sensor connects", async {
            Client::new(tokio::net::UnixStream::connect(&sock).await.unwrap())
        })
        .await;
        sensor.send(&Message::Subscribe).await;
        for utt in 0..3 {
            round_trip(&mut sensor, "real", utt, 0.5, 20, "sensor result").await;
        }
        let h = within(10, "health", sensor.health()).await;
        assert!(
            h.connections_evicted + h.connections_idle_closed + h.connections_refused >= 1000,
            "{h:?}"
        );
        assert!(h.connections_open <= 64, "{h:?}");
        drop(idle);
    });
    let code = child.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "daemon exit after SIGTERM");
}

fn raise_own_file_limit(at_least: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < at_least {
            lim.rlim_cur = lim.rlim_max.min(at_least);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
}

/// A child process that is killed if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    /// SIGTERM, then the exit code if it exits within `grace`.
    fn terminate(&mut self, grace: Duration) -> Option<i32> {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let until = std::time::Instant::now() + grace;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `gsdnet record`'s runner in the serve loop: a conversation id reused after `Reset` becomes a
/// second recorded conversation, and an utterance still open at shutdown is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_keeps_sessions_apart_and_writes_what_is_open_at_shutdown() {
    use gsdnet_edge::daemon::recorder::RecorderRunner;
    use gsdnet_edge::recording::{Recording, RecordingWriter};
    let out = tempfile::tempdir().unwrap();
    let rec = out.path().join("r.gsdrec");
    let runner = Box::new(RecorderRunner::new(RecordingWriter::create(&rec).unwrap()));
    let mut opts = options();
    opts.warm_up = false;
    let (_dir, path, daemon) = unix_daemon_with(runner, opts).await;
    let mut c = connect(&path).await;
    utterance(&mut c, "live", 0, 1.0).await;
    c.send(&feat("live", 1, Modality::Audio, 2.0)).await;
    c.send(&Message::Reset {
        conversation: ConversationId::try_from("live").unwrap(),
    })
    .await;
    utterance(&mut c, "live", 0, 3.0).await;
    c.send(&feat("live", 1, Modality::Text, 4.0)).await;
    let _ = c.status().await;
    within(5, "shutdown", daemon.shutdown()).await;
    let back = Recording::read(&rec).unwrap();
    let convs: Vec<(&str, Vec<u32>)> = back
        .conversations
        .iter()
        .map(|c| (c.id.as_str(), c.utterances.iter().map(|u| u.position).collect()))
        .collect();
    assert_eq!(convs, vec![("live", vec![0, 1]), ("live#2", vec![0, 1])]);
    let second = &back.conversations[1].utterances;
    assert_eq!(
        (second[0].features[0].as_deref(), second[1].features[0].as_deref()),
        (Some(&[3.0f32; 100][..]), Some(&[4.0f32; 100][..]))
    );
    assert_eq!(
        back.conversations[0].utterances[1].features[1].as_deref(),
        Some(&[2.0f32; 73][..])
    );
}

/// A serial sensor's utterance still open at SIGTERM is released and its result published, and
/// the shutdown does not wait for the serial stream to end. The port subscribes too, as a robot's
/// controller on a UART does (its stream then lives until the output phase); the result is read
/// on a Unix socket, since closing a pty end may discard what the other end has not read yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_what_a_serial_sensor_left_open() {
    let rig = serial_rig();
    let daemon = start(rig.endpoints, options()).await;
    let mut sub = connect(&rig.path).await;
    sub.send(&Message::Subscribe).await;
    let _ = sub.status().await;
    let mut port = Client::new(rig.port);
    port.send(&Message::Subscribe).await;
    utterance(&mut port, "s", 0, 1.0).await;
    within(5, "first result", result_for(&mut sub, "s", 0)).await;
    within(5, "first result on the port", result_for(&mut port, "s", 0)).await;
    port.send(&feat("s", 1, Modality::Audio, 2.0)).await;
    let _ = port.status().await; // the audio has reached the assembler
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(daemon.shutdown());
    let r = within(5, "the flushed serial utterance", result_for(&mut sub, "s", 1)).await;
    assert_eq!(r.utterances.last().map(|u| u.avail), Some(2));
    within(5, "shutdown", stopping).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "shutdown took {:?}",
        started.elapsed()
    );
}
