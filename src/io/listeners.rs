//! Socket endpoints: sockets passed by systemd socket activation (`LISTEN_FDS`) when present,
//! otherwise the profile's TCP addresses and Unix socket paths. A stale Unix socket file is
//! replaced; a path holding anything else is an error.

use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio::net::{TcpListener, UnixListener};

use crate::config::InputSettings;

#[derive(Debug, Error)]
pub enum ListenError {
    #[error("cannot bind TCP {addr}: {source}")]
    Tcp { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot bind Unix socket {path}: {source}")]
    Unix { path: PathBuf, source: std::io::Error },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("systemd passed fd {fd} that is neither a TCP nor a Unix listening socket: {source}")]
    Activation { fd: RawFd, source: std::io::Error },
}

/// Bound sockets, plus the Unix paths this process created (removed on exit).
#[derive(Default)]
pub struct Bound {
    pub tcp: Vec<TcpListener>,
    pub unix: Vec<UnixListener>,
    pub created_paths: Vec<PathBuf>,
}

impl Bound {
    /// Removes the Unix socket files this process created.
    pub fn cleanup_paths(paths: &[PathBuf]) {
        for p in paths {
            if let Err(e) = std::fs::remove_file(p) {
                log::debug!("cannot remove {}: {e}", p.display());
            }
        }
    }
}

/// Binds the configured sockets, or adopts systemd's when the service was socket-activated.
pub async fn bind(inputs: &InputSettings) -> Result<Bound, ListenError> {
    let fds: Vec<RawFd> = sd_notify::listen_fds().map(|fds| fds.collect()).unwrap_or_default();
    if !fds.is_empty() {
        log::info!("socket activation: {} socket(s) from systemd", fds.len());
        return adopt(&fds);
    }
    let mut bound = Bound::default();
    for &addr in &inputs.tcp {
        let l = TcpListener::bind(addr).await.map_err(|source| ListenError::Tcp { addr, source })?;
        log::info!("listening on tcp {addr}");
        bound.tcp.push(l);
    }
    for path in &inputs.unix {
        bound.unix.push(bind_unix(path)?);
        bound.created_paths.push(path.clone());
        log::info!("listening on unix {}", path.display());
    }
    Ok(bound)
}

/// Binds a Unix socket at `path`, replacing a stale socket file, creating the parent folder.
pub fn bind_unix(path: &Path) -> Result<UnixListener, ListenError> {
    let err = |source| ListenError::Unix { path: path.to_path_buf(), source };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(err)?,
        Ok(_) => return Err(ListenError::NotASocket { path: path.to_path_buf() }),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    UnixListener::bind(path).map_err(err)
}

fn adopt(fds: &[RawFd]) -> Result<Bound, ListenError> {
    let mut bound = Bound::default();
    for &fd in fds {
        // SAFETY: systemd hands these fds to this process exclusively (LISTEN_PID matched in
        // sd_notify::listen_fds, which also unsets the variables), each exactly once.
        let tcp = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        if tcp.local_addr().is_ok_and(|a| a.is_ipv4() || a.is_ipv6()) {
            tcp.set_nonblocking(true).map_err(|source| ListenError::Activation { fd, source })?;
            bound.tcp.push(TcpListener::from_std(tcp).map_err(|source| ListenError::Activation { fd, source })?);
            continue;
        }
        let fd = tcp.into_raw_fd();
        // SAFETY: same fd, ownership moved back out of the TcpListener above.
        let unix = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        unix.set_nonblocking(true).map_err(|source| ListenError::Activation { fd, source })?;
        bound.unix.push(UnixListener::from_std(unix).map_err(|source| ListenError::Activation { fd, source })?);
    }
    Ok(bound)
}
