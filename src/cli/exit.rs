//! Exit codes of the binaries (sysexits.h), so a service manager can tell a failure that a
//! restart may fix from one that it cannot: `deploy/gsdnet.service` lists `USAGE` and `CONFIG`
//! in `RestartPreventExitStatus` (a test compares the two).
//!
//! - `USAGE` (64, EX_USAGE): the command line is wrong (clap's parse errors, `UsageError`).
//! - `CONFIG` (78, EX_CONFIG): the board profile or the model it names is wrong: a
//!   `ConfigError`, a `ManifestError`, or a profile that does not fit its model
//!   (`WindowTooLarge`, `ServeError::ResultTooLarge`), or a profile enabling `[ros2]` in a build
//!   without it (`Ros2Error::NotBuilt`), anywhere in the error's chain.
//! - `FAILURE` (1): anything else (IO, engines, a failed check), which a restart may fix.

use std::error::Error;

use crate::config::ConfigError;
use crate::daemon::ros2::Ros2Error;
use crate::daemon::server::ServeError;
use crate::manifest::ManifestError;
use crate::service::WindowTooLarge;

/// Any other failure.
pub const FAILURE: u8 = 1;
/// EX_USAGE: the command was used incorrectly.
pub const USAGE: u8 = 64;
/// EX_CONFIG: something was found in an unconfigured or misconfigured state.
pub const CONFIG: u8 = 78;
/// The codes a restart cannot fix (the unit's `RestartPreventExitStatus`).
pub const NO_RESTART: [u8; 2] = [USAGE, CONFIG];

/// A command line the library refuses beyond what clap checks (e.g. an empty list).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code of a failure: the first classified error in its chain (see the module doc).
pub fn code_of(err: &(dyn Error + 'static)) -> u8 {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<UsageError>() {
            return USAGE;
        }
        let config = e.is::<ConfigError>()
            || e.is::<ManifestError>()
            || e.is::<WindowTooLarge>()
            || matches!(e.downcast_ref::<ServeError>(), Some(ServeError::ResultTooLarge { .. }))
            || matches!(e.downcast_ref::<Ros2Error>(), Some(Ros2Error::NotBuilt));
        if config {
            return CONFIG;
        }
        next = e.source();
    }
    FAILURE
}

/// The exit code of a command-line parse error: 0 for `--help` and `--version`, else `USAGE`.
pub fn code_of_parse(err: &clap::Error) -> u8 {
    if err.use_stderr() {
        USAGE
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_classified_by_their_typed_source() {
        let config = anyhow::Error::from(ConfigError::Invalid {
            path: "b.toml".into(),
            field: "engine.backend",
            detail: "x".into(),
        })
        .context("loading");
        assert_eq!(code_of(config.as_ref()), CONFIG);
        let usage = anyhow::Error::from(UsageError("--seeds needs a value".into()));
        assert_eq!(code_of(usage.as_ref()), USAGE);
        let window = anyhow::Error::from(WindowTooLarge { window: 80, model: 64 }).context("serve");
        assert_eq!(code_of(window.as_ref()), CONFIG);
        let ros2 = anyhow::Error::from(Ros2Error::NotBuilt).context("serve");
        assert_eq!(code_of(ros2.as_ref()), CONFIG);
        let io = anyhow::Error::from(std::io::Error::other("address in use")).context("binding sockets");
        assert_eq!(code_of(io.as_ref()), FAILURE);
    }
}
