//! Socket endpoints: sockets passed by systemd socket activation (`LISTEN_FDS`) when present,
//! otherwise the profile's TCP addresses and Unix socket paths. A stale Unix socket file is
//! replaced; a path holding anything else is an error. Either way a TCP listener on a
//! non-loopback address needs `allow_remote`, and a Unix socket the daemon creates gets the
//! profile's mode and group, not the umask's. Accepted TCP streams are tuned by `tune_tcp`.

use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, UnixListener};

use crate::config::InputSettings;

#[derive(Debug, Error)]
pub enum ListenError {
    #[error("cannot bind TCP {addr}: {source}")]
    Tcp {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot bind Unix socket {path}: {source}")]
    Unix { path: PathBuf, source: std::io::Error },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("systemd passed fd {fd} that is neither a TCP nor a Unix listening socket: {source}")]
    Activation { fd: RawFd, source: std::io::Error },
    #[error(
        "systemd passed a TCP socket on {addr}, which is not loopback; set inputs.allow_remote = true to expose it"
    )]
    Remote { addr: std::net::SocketAddr },
    #[error("cannot set mode {mode:o} / group {group:?} on {path}: {source}")]
    Permissions {
        path: PathBuf,
        mode: u32,
        group: Option<String>,
        source: std::io::Error,
    },
}

/// Idle time before the first keepalive probe, probe interval, probes before giving up: a
/// vanished peer is noticed after about a minute.
const KEEPALIVE: (Duration, Duration, u32) = (Duration::from_secs(30), Duration::from_secs(10), 3);

/// No Nagle delay (frames are small, results are latency-bound) and TCP keepalive.
pub fn tune_tcp(stream: &tokio::net::TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (time, interval, retries) = KEEPALIVE;
    let ka = socket2::TcpKeepalive::new()
        .with_time(time)
        .with_interval(interval)
        .with_retries(retries);
    socket2::SockRef::from(stream).set_tcp_keepalive(&ka)
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
        return adopt(&fds, inputs.allow_remote);
    }
    let mut bound = Bound::default();
    for &addr in &inputs.tcp {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Tcp { addr, source })?;
        log::info!("listening on tcp {addr}");
        bound.tcp.push(l);
    }
    for path in &inputs.unix {
        bound
            .unix
            .push(bind_unix_with(path, inputs.unix_mode, inputs.unix_group.as_deref())?);
        bound.created_paths.push(path.clone());
        log::info!("listening on unix {}", path.display());
    }
    Ok(bound)
}

/// Default mode of a Unix socket the daemon creates: owner and group may connect.
pub const UNIX_MODE: u32 = 0o660;

/// `bind_unix_with` at `UNIX_MODE`, group unchanged.
pub fn bind_unix(path: &Path) -> Result<UnixListener, ListenError> {
    bind_unix_with(path, UNIX_MODE, None)
}

/// Binds a Unix socket at `path` (replacing a stale socket file, creating the parent folder),
/// then sets its mode and, when given, its group (a name or a numeric gid). Until the mode is
/// set the socket has the umask's mode, which is never wider than the owner's write access
/// under the unit's `UMask=0027`.
pub fn bind_unix_with(path: &Path, mode: u32, group: Option<&str>) -> Result<UnixListener, ListenError> {
    let listener = bind_unix_raw(path)?;
    let perm_err = |source| ListenError::Permissions {
        path: path.to_path_buf(),
        mode,
        group: group.map(str::to_string),
        source,
    };
    if let Some(g) = group {
        let gid = lookup_group(g).map_err(perm_err)?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(perm_err)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(perm_err)?;
    Ok(listener)
}

/// A group name or numeric gid to a gid.
pub fn lookup_group(name: &str) -> std::io::Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "group name holds a NUL byte"))?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of `grp`'s fields,
    // and only `gr_gid` (a plain integer) is read.
    let rc = unsafe { libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    if out.is_null() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no group {name:?}"),
        ));
    }
    Ok(grp.gr_gid)
}

fn bind_unix_raw(path: &Path) -> Result<UnixListener, ListenError> {
    let err = |source| ListenError::Unix {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(err)?,
        Ok(_) => {
            return Err(ListenError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    UnixListener::bind(path).map_err(err)
}

fn adopt(fds: &[RawFd], allow_remote: bool) -> Result<Bound, ListenError> {
    let mut bound = Bound::default();
    for &fd in fds {
        // SAFETY: systemd hands these fds to this process exclusively (LISTEN_PID matched in
        // sd_notify::listen_fds, which also unsets the variables), each exactly once.
        let tcp = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        if let Ok(addr) = tcp.local_addr() {
            check_remote(addr, allow_remote)?;
            tcp.set_nonblocking(true)
                .map_err(|source| ListenError::Activation { fd, source })?;
            bound
                .tcp
                .push(TcpListener::from_std(tcp).map_err(|source| ListenError::Activation { fd, source })?);
            continue;
        }
        let fd = tcp.into_raw_fd();
        // SAFETY: same fd, ownership moved back out of the TcpListener above.
        let unix = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        unix.set_nonblocking(true)
            .map_err(|source| ListenError::Activation { fd, source })?;
        bound
            .unix
            .push(UnixListener::from_std(unix).map_err(|source| ListenError::Activation { fd, source })?);
    }
    Ok(bound)
}

/// The loopback rule of `inputs.allow_remote`, for sockets the daemon did not bind itself.
pub fn check_remote(addr: std::net::SocketAddr, allow_remote: bool) -> Result<(), ListenError> {
    if allow_remote || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(ListenError::Remote { addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_unix_socket_gets_the_mode_and_group_not_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // SAFETY: getgid has no preconditions.
        let gid = unsafe { libc::getgid() };
        let _l = rt
            .block_on(async { bind_unix_with(&path, 0o660, Some(&gid.to_string())) })
            .unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), gid);
        let err = rt
            .block_on(async { bind_unix_with(&path, 0o660, Some("no-such-group-gsdnet")) })
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("no-such-group-gsdnet"), "{err}");
    }

    #[test]
    fn activated_tcp_sockets_obey_allow_remote() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let any = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
            let err = adopt(&[any.into_raw_fd()], false).map(|_| ()).unwrap_err();
            assert!(matches!(err, ListenError::Remote { .. }), "{err}");
            let any = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
            assert_eq!(adopt(&[any.into_raw_fd()], true).unwrap().tcp.len(), 1);
            let lo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            assert_eq!(adopt(&[lo.into_raw_fd()], false).unwrap().tcp.len(), 1);
        });
    }

    #[test]
    fn accepted_tcp_streams_get_nodelay_and_keepalive() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            tune_tcp(&s).unwrap();
            let r = socket2::SockRef::from(&s);
            assert!(s.nodelay().unwrap());
            assert!(r.keepalive().unwrap());
            assert_eq!(r.tcp_keepalive_time().unwrap(), KEEPALIVE.0);
        });
    }
}
