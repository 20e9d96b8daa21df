//! Cross-language check: the Python reference client (scripts/gsdnet_client.py, written from
//! docs/PROTOCOL.md) talks to the real serve loop (mock runner) over a Unix socket.

mod daemon_common;

use std::sync::Arc;

use daemon_common::MockRunner;
use gsdnet_edge::daemon::notify::NoNotifier;
use gsdnet_edge::daemon::server::{serve, Endpoints};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_speaks_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("py.sock");
    let listener = gsdnet_edge::io::listeners::bind_unix(&path).unwrap();
    let mut opts = daemon_common::options();
    (opts.assembly.window, opts.assembly.deadline_ms, opts.assembly.max_utterance_ms) = (8, [60_000; 3], 60_000);
    opts.result_backlog = 64;
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
