//! Service manager notifications behind a trait, so the serve loop is testable: systemd
//! (`sd_notify`: READY, WATCHDOG, STOPPING, STATUS, EXTEND_TIMEOUT_USEC) or nothing.

use std::time::Duration;

pub trait Notifier: Send + Sync {
    fn ready(&self);
    fn watchdog(&self);
    fn stopping(&self);
    fn status(&self, line: &str);
    /// Asks for `by` more start-up time, counted from now (systemd `EXTEND_TIMEOUT_USEC`).
    fn extend_timeout(&self, by: Duration);
}

/// Start-up time asked for before loading when TensorRT may build engines (minutes per part on
/// a small Jetson, first start or new model/version).
pub const TENSORRT_LOAD_EXTENSION: Duration = Duration::from_secs(30 * 60);
/// Start-up time asked for before loading otherwise.
pub const LOAD_EXTENSION: Duration = Duration::from_secs(5 * 60);

/// Sent before the models load: the extension first (so the manager never times out while the
/// status says loading), then the status line. READY follows only after the warm-up window.
pub fn announce_loading(n: &dyn Notifier, builds_tensorrt_engines: bool) {
    if builds_tensorrt_engines {
        n.extend_timeout(TENSORRT_LOAD_EXTENSION);
        n.status("loading models / building TensorRT engines...");
    } else {
        n.extend_timeout(LOAD_EXTENSION);
        n.status("loading models");
    }
}

/// `EXTEND_TIMEOUT_USEC` carries a u32 of microseconds; longer requests are capped (~71 min).
pub fn extension_usec(by: Duration) -> u32 {
    u32::try_from(by.as_micros()).unwrap_or(u32::MAX)
}

/// Keeps every notification as the line systemd would receive ("READY", "STOPPING",
/// "STATUS=...", "EXTEND_TIMEOUT_USEC=..."; WATCHDOG pings are not kept): for tests and for
/// embedding the serve loop under another supervisor.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    events: std::sync::Mutex<Vec<String>>,
    watchdog_pings: std::sync::atomic::AtomicU64,
}

impl MemoryNotifier {
    /// The notifications so far, oldest first.
    pub fn events(&self) -> Vec<String> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// WATCHDOG pings so far (counted, not kept as events).
    pub fn watchdog_pings(&self) -> u64 {
        self.watchdog_pings.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn push(&self, line: String) {
        if let Ok(mut e) = self.events.lock() {
            e.push(line);
        }
    }
}

impl Notifier for MemoryNotifier {
    fn ready(&self) {
        self.push("READY".into());
    }
    fn watchdog(&self) {
        self.watchdog_pings.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn stopping(&self) {
        self.push("STOPPING".into());
    }
    fn status(&self, line: &str) {
        self.push(format!("STATUS={line}"));
    }
    fn extend_timeout(&self, by: Duration) {
        self.push(format!("EXTEND_TIMEOUT_USEC={}", extension_usec(by)));
    }
}

/// Does nothing: not under a service manager.
#[derive(Debug, Default)]
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn ready(&self) {}
    fn watchdog(&self) {}
    fn stopping(&self) {}
    fn status(&self, _line: &str) {}
    fn extend_timeout(&self, _by: Duration) {}
}

/// Talks to systemd through `$NOTIFY_SOCKET`; a failure to notify is logged, never fatal.
#[derive(Debug, Default)]
pub struct SystemdNotifier;

impl SystemdNotifier {
    /// Some when started by systemd with a notify socket.
    pub fn from_env() -> Option<Self> {
        std::env::var_os("NOTIFY_SOCKET").map(|_| SystemdNotifier)
    }

    /// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
    pub fn watchdog_interval() -> Option<Duration> {
        sd_notify::watchdog_enabled()
    }

    fn send(&self, state: &[sd_notify::NotifyState]) {
        if let Err(e) = sd_notify::notify(state) {
            log::warn!("sd_notify failed: {e}");
        }
    }
}

impl Notifier for SystemdNotifier {
    fn ready(&self) {
        self.send(&[sd_notify::NotifyState::Ready]);
    }
    fn watchdog(&self) {
        self.send(&[sd_notify::NotifyState::Watchdog]);
    }
    fn stopping(&self) {
        self.send(&[sd_notify::NotifyState::Stopping]);
    }
    fn status(&self, line: &str) {
        self.send(&[sd_notify::NotifyState::Status(line)]);
    }
    fn extend_timeout(&self, by: Duration) {
        self.send(&[sd_notify::NotifyState::ExtendTimeoutUsec(extension_usec(by))]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_fits_the_u32_field() {
        assert_eq!(extension_usec(Duration::from_secs(2)), 2_000_000);
        assert_eq!(extension_usec(TENSORRT_LOAD_EXTENSION), 1_800_000_000);
        assert_eq!(extension_usec(Duration::from_secs(10_000)), u32::MAX);
    }
}
