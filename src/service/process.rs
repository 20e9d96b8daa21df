//! Process set-up of the daemon's commands: the logger (journald priorities under systemd),
//! the open-file limit, the tokio runtime, the shutdown signal and the service-manager
//! notifier. Nothing here knows about models or frames.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::daemon::notify::{NoNotifier, Notifier, SystemdNotifier};

/// Logger for the binary: under systemd (`JOURNAL_STREAM` set) each line carries its syslog
/// priority as a `<N>` prefix, which journald turns into the entry's priority, and no
/// timestamp (the journal has one); elsewhere env_logger's usual format. `RUST_LOG` filters;
/// the DDS stack of the ROS 2 node logs only errors unless `RUST_LOG` names it
/// (`log_filter`).
pub fn init_logging(default_filter: &str) {
    use std::io::Write;
    let spec = log_filter(std::env::var("RUST_LOG").ok().as_deref(), default_filter);
    let mut b = env_logger::Builder::new();
    b.parse_filters(&spec);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        b.format(|f, r| {
            let prio = match r.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(f, "<{prio}>{}: {}", r.target(), r.args())
        });
    }
    let _ = b.try_init();
}

/// Crates of the ROS 2 node's DDS stack: chatty at warn and info (discovery on every
/// interface, its own participant, distro hints), so they log errors unless named.
const DDS_CRATES: [&str; 2] = ["rustdds", "ros2_client"];

/// The filter spec: `RUST_LOG` (else `default_filter`), with `crate=error` for each DDS crate
/// it does not name.
pub fn log_filter(rust_log: Option<&str>, default_filter: &str) -> String {
    let mut spec = rust_log
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(default_filter)
        .to_string();
    for c in DDS_CRATES {
        if !spec.contains(c) {
            spec.push_str(&format!(",{c}=error"));
        }
    }
    spec
}

/// File descriptors beyond the socket clients: listeners, serial ports, model files, the
/// runtime's own, recordings.
const FD_HEADROOM: u64 = 256;

/// Raises the soft open-file limit (systemd's default is 1024) so `max_connections` clients
/// always fit; warns when the hard limit does not allow it (connections beyond are refused).
pub fn ensure_file_limit(max_connections: usize) {
    let need = max_connections as u64 + FD_HEADROOM;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a local struct; no other invariant.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= need {
            return;
        }
        let want = libc::rlimit {
            rlim_cur: need.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 && want.rlim_cur >= need {
            log::info!("open-file limit raised from {} to {}", lim.rlim_cur, want.rlim_cur);
            return;
        }
    }
    log::warn!("open-file limit {} (hard {}) is below the {need} that max_connections = {max_connections} needs; raise LimitNOFILE", lim.rlim_cur, lim.rlim_max);
}

/// The runtime of the daemon's IO side (two workers; inference has its own thread).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// The systemd notifier when run under systemd (`NOTIFY_SOCKET`), else none.
pub fn notifier() -> Arc<dyn Notifier> {
    match SystemdNotifier::from_env() {
        Some(n) => Arc::new(n),
        None => Arc::new(NoNotifier),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => log::info!("SIGTERM"),
                _ = tokio::signal::ctrl_c() => log::info!("SIGINT"),
            }
        }
        Err(e) => {
            log::warn!("cannot watch SIGTERM ({e}); Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn the_dds_crates_log_errors_unless_rust_log_names_them() {
        assert_eq!(log_filter(None, "warn"), "warn,rustdds=error,ros2_client=error");
        assert_eq!(log_filter(Some("info"), "warn"), "info,rustdds=error,ros2_client=error");
        assert_eq!(
            log_filter(Some("debug,rustdds=debug"), "warn"),
            "debug,rustdds=debug,ros2_client=error"
        );
        assert_eq!(log_filter(Some(" "), "warn"), "warn,rustdds=error,ros2_client=error");
    }
}
