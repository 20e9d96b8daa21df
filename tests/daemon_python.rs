//! Cross-language check: the Python reference client (scripts/gsdnet_client.py, written from
//! docs/PROTOCOL.md) talks to the real serve loop (mock runner) over a Unix socket.

mod daemon_common;

use std::sync::Arc;
use std::time::Duration;

use daemon_common::MockRunner;
use gsdnet_edge::daemon::assembly::AssemblySettings;
use gsdnet_edge::daemon::notify::NoNotifier;
use gsdnet_edge::daemon::server::{serve, Endpoints, ServeOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_speaks_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("py.sock");
    let listener = gsdnet_edge::io::listeners::bind_unix(&path).unwrap();
    let opts = ServeOptions {
        assembly: AssemblySettings {
            dims: [100, 73, 100],
            window: 8,
            deadline_ms: [60_000; 3],
            max_utterance_ms: 60_000,
            max_open_utterances: 8,
            max_conversations: 4,
            idle_conversation_ms: 600_000,
            evict_idle_ms: 10_000,
        },
        queue_capacity: 4,
        max_frames_per_second: 1000,
        burst: 1000,
        heartbeat: Duration::from_millis(100),
        max_consecutive_errors: 5,
        limits: gsdnet_edge::daemon::limits::ConnectionLimits::default(),
        abstain_below: 0.0,
        result_backlog: 64,
        warm_up: true,
    };
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(serve(Endpoints { unix: vec![listener], ..Default::default() }, Box::new(MockRunner), opts, Arc::new(NoNotifier), async {
        let _ = stop_rx.await;
    }));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/test_protocol_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .env("GSDNET_SOCKET", &path)
        .output()
        .await
        .expect("python3 must be installed to run the cross-language protocol test");
    let _ = stop.send(());
    let stats = daemon.await.unwrap().unwrap();
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok test_live_daemon_round_trip"));
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(load(&stats.windows_run), 3, "three windows (warm-up is not counted)");
    assert_eq!(load(&stats.empty_utterances), 1, "the all-dropout utterance");
}
