//! `gsdnet replay --max-speed` into the default x86 profile (`boards/x86-dev.toml` as it is,
//! only its endpoints moved to a temporary Unix socket): the replay asks the daemon's limits,
//! paces to them, ends each conversation and reports at exit what was sent, covered and
//! refused; its exit status fails when anything was refused or not covered (issue 21 item 3).
//! The recording is synthetic: more conversations than the profile's `max_conversations`, more
//! utterances than its queue, sent as fast as the limits allow.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::repo;
use gsdnet_edge::recording::{Conversation, Recording, UtteranceRecord};
use gsdnet_edge::rng::fill_normals;

/// The default x86 profile with its endpoints replaced by the Unix socket `sock`.
fn default_profile(dir: &Path, sock: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("boards/x86-dev.toml")).unwrap();
    let text: Vec<String> = text
        .lines()
        .map(|l| match l.split('=').next().map(str::trim) {
            Some("tcp") => "tcp = []".to_string(),
            Some("unix") => format!("unix = [{sock:?}]"),
            _ => l.to_string(),
        })
        .collect();
    let board = dir.join("x86-dev.toml");
    std::fs::write(&board, text.join("\n")).unwrap();
    board
}

/// `conversations` x `utterances` two-speaker utterances with every modality of `sizes`
/// (`length_of_audio` values of audio instead, to make input the daemon refuses).
fn synthetic_recording(path: &Path, conversations: usize, utterances: u32, sizes: [usize; 3], length_of_audio: usize) {
    let mut key = 21u64;
    let conversations = (0..conversations)
        .map(|c| {
            let id = format!("synthetic-{c:02}");
            let utterances = (0..utterances)
                .map(|u| {
                    let features = [0, 1, 2].map(|m| {
                        let n = if m == 1 { length_of_audio } else { sizes[m] };
                        let mut v = vec![0.0f32; n];
                        key += 1;
                        fill_normals(key, &mut v);
                        Some(v)
                    });
                    let (speaker, label, label_cont, timestamp_ms) = (u % 2, None, None, None);
                    UtteranceRecord {
                        conversation: id.clone(),
                        id: format!("{id}_{u}"),
                        speaker,
                        position: u,
                        timestamp_ms,
                        label,
                        label_cont,
                        features,
                    }
                })
                .collect();
            Conversation { id, utterances }
        })
        .collect();
    Recording { conversations }.write(path).unwrap();
}

/// `gsdnet serve` on `board`, killed when dropped.
struct Daemon(Child);

impl Daemon {
    fn start(board: &Path, sock: &Path) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_gsdnet"))
            .args(["serve", "--board"])
            .arg(board)
            .current_dir(repo())
            .env("RUST_LOG", "error")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Daemon(child);
        let until = Instant::now() + Duration::from_secs(120);
        while std::os::unix::net::UnixStream::connect(sock).is_err() {
            assert!(Instant::now() < until, "the daemon did not listen on {sock:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `gsdnet replay --max-speed` of a `synthetic_recording` (CMU-MOSI sizes) into `gsdnet serve`
/// on the default profile: the replay's output, its report (stdout), and the report followed by
/// stderr for assertion messages.
fn replay_synthetic(conversations: usize, utterances: u32, length_of_audio: usize) -> (Output, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gsdnet.sock");
    let rec = dir.path().join("synthetic.rec");
    synthetic_recording(&rec, conversations, utterances, [100, 73, 100], length_of_audio);
    let _daemon = Daemon::start(&default_profile(dir.path(), &sock), &sock);
    let out = replay(&rec, &sock);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let detail = format!("{report}{}", String::from_utf8_lossy(&out.stderr));
    (out, report, detail)
}

fn replay(rec: &Path, sock: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gsdnet"))
        .arg("replay")
        .arg(rec)
        .arg("--unix")
        .arg(sock)
        .args(["--max-speed", "--models", "models/gsdnet-mosi", "--stall-ms", "20000"])
        .current_dir(repo())
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

/// The number after `prefix` on the report line starting with it.
fn number_after(report: &str, prefix: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{report}"));
    line[prefix.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line}"))
}

#[test]
fn max_speed_replay_into_the_default_profile_covers_every_utterance() {
    // 12 conversations > max_conversations (8); 20 utterances each > queue_capacity (8).
    let (out, report, detail) = replay_synthetic(12, 20, 73);
    assert_eq!(number_after(&report, "utterances sent:"), 240, "{detail}");
    assert!(report.contains("covered by a result: 240 of 240"), "{detail}");
    assert!(report.contains("refused by the daemon: none"), "{detail}");
    assert!(out.status.success(), "{detail}");
}

#[test]
fn a_replay_whose_input_is_refused_reports_it_and_fails() {
    // 70 audio values where the model takes 73: every audio vector is refused (WrongLength),
    // the utterances close on text and visual.
    let (out, report, detail) = replay_synthetic(2, 5, 70);
    assert!(report.contains("refused by the daemon: WrongLength 10"), "{detail}");
    assert!(report.contains("notice: WrongLength x"), "{detail}");
    assert!(report.contains("covered by a result: 10 of 10"), "{detail}");
    assert_eq!(out.status.code(), Some(1), "{detail}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replay incomplete: 10 refused"),
        "{detail}"
    );
}
