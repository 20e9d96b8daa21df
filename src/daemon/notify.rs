//! Service manager notifications behind a trait, so the serve loop is testable: systemd
//! (`sd_notify`: READY, WATCHDOG, STOPPING, STATUS) or nothing.

use std::time::Duration;

pub trait Notifier: Send + Sync {
    fn ready(&self);
    fn watchdog(&self);
    fn stopping(&self);
    fn status(&self, line: &str);
}

/// Does nothing: not under a service manager.
#[derive(Debug, Default)]
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn ready(&self) {}
    fn watchdog(&self) {}
    fn stopping(&self) {}
    fn status(&self, _line: &str) {}
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
}
