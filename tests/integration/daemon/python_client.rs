//! Cross-language check: the Python reference client (python/gsdnet_client, written from
//! docs/PROTOCOL.md) talks to the real serve loop over Unix sockets: a CMU-MOSI-like daemon
//! (mock runner: text 100 / audio 73 / visual 100, two classes, regression) and an IEMOCAP-like
//! one (text 384 / audio 47, six classes, no regression).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::util::daemon::{iemocap_like, ClassRunner, MockRunner, Speakers};
use gsdnet_edge::daemon::inference::WindowRunner;
use gsdnet_edge::daemon::notify::NoNotifier;
use gsdnet_edge::daemon::server::{serve, Endpoints, ServeError, ServeOptions};
use gsdnet_edge::daemon::stats::Stats;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

type Served = (oneshot::Sender<()>, JoinHandle<Result<Arc<Stats>, ServeError>>);

fn spawn(path: &std::path::Path, runner: Box<dyn WindowRunner>, opts: ServeOptions) -> Served {
    let listener = gsdnet_edge::io::listeners::bind_unix(path).unwrap();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(serve(
        Endpoints {
            unix: vec![listener],
            ..Default::default()
        },
        runner,
        opts,
        Arc::new(NoNotifier),
        async {
            let _ = stop_rx.await;
        },
    ));
    (stop, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_speaks_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (path, path_ta) = (dir.path().join("py.sock"), dir.path().join("py-ta.sock"));
    let mut opts = crate::util::daemon::options();
    (
        opts.assembly.window,
        opts.assembly.deadline_ms,
        opts.assembly.max_utterance_ms,
    ) = (8, [60_000; 3], 60_000);
    opts.result_backlog = 64;
    let mosi = spawn(&path, Box::new(MockRunner), opts.clone());
    opts.model = iemocap_like();
    let ta = spawn(
        &path_ta,
        Box::new(ClassRunner::new(iemocap_like(), Speakers::default())),
        opts,
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/test_protocol_client.py");
    let out = tokio::process::Command::new(crate::util::python3())
        .arg(script)
        .env("GSDNET_SOCKET", &path)
        .env("GSDNET_SOCKET_TA", &path_ta)
        .output()
        .await
        .expect("python3 must be installed to run the cross-language protocol test");
    let mut stats = Vec::new();
    for (stop, handle) in [mosi, ta] {
        let _ = stop.send(());
        stats.push(handle.await.unwrap().unwrap());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for test in ["test_live_daemon_round_trip", "test_live_text_audio_six_classes"] {
        assert!(stdout.contains(&format!("ok {test}")), "{test} did not run:\n{stdout}");
    }
    let load = |c: &AtomicU64| c.load(Relaxed);
    assert_eq!(load(&stats[0].windows_run), 3, "three windows (warm-up is not counted)");
    assert_eq!(load(&stats[0].empty_utterances), 1, "the all-dropout utterance");
    assert_eq!(load(&stats[1].windows_run), 1);
}
