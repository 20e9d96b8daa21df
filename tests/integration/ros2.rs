//! The daemon's `[ros2]` table at start. Without the `ros2` feature a profile that enables it
//! is a configuration error (exit 78) before any model loads; with it, an interface address
//! that is not this machine's is a clear start failure (exit 1), not a deaf node. The node's
//! traffic is tested against a foreign DDS (cyclonedds) by tests/python/test_ros2_interop.py
//! (scripts/ci-ros2.sh).

use std::process::Command;

use crate::util::repo;
use gsdnet_edge::cli::exit;

/// boards/x86-dev.toml on a socket in `dir`, with `[ros2]` on loopback of `domain` and `extra`.
fn profile(dir: &std::path::Path, interfaces: &str) -> String {
    let text = std::fs::read_to_string(repo().join("boards/x86-dev.toml")).unwrap();
    let sock = dir.join("g.sock");
    let text = text.replacen("tcp = [\"127.0.0.1:7878\"]", "tcp = []", 1).replacen(
        "unix = [\"/tmp/gsdnet.sock\"]",
        &format!("unix = [{:?}]", sock.display().to_string()),
        1,
    );
    let path = dir.join("ros2.toml");
    std::fs::write(
        &path,
        format!("{text}\n[ros2]\ndomain_id = 231\ninterfaces = [{interfaces}]\n"),
    )
    .unwrap();
    path.display().to_string()
}

fn serve(board: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gsdnet"))
        .args(["serve", "--board", board])
        .current_dir(repo())
        .output()
        .expect("run gsdnet");
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(not(feature = "ros2"))]
#[test]
fn a_build_without_the_feature_refuses_a_ros2_profile_as_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let board = profile(dir.path(), "\"127.0.0.1\"");
    let (code, err) = serve(&board);
    assert_eq!(code, i32::from(exit::CONFIG), "{err}");
    assert!(err.contains("--features ros2"), "{err}");
    assert!(!err.contains("engine plans"), "refused before loading the model: {err}");
    let out = Command::new(env!("CARGO_BIN_EXE_gsdnet"))
        .args(["check-config", "--board", &board])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(i32::from(exit::CONFIG)));
}

#[cfg(feature = "ros2")]
#[test]
fn an_interface_address_not_on_this_machine_fails_the_start_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address.
    let (code, err) = serve(&profile(dir.path(), "\"192.0.2.1\""));
    assert_eq!(code, i32::from(exit::FAILURE), "{err}");
    assert!(err.contains("starting the ROS 2 node"), "{err}");
    assert!(err.contains("192.0.2.1 is not usable on this machine"), "{err}");
}

#[cfg(feature = "ros2")]
#[test]
fn check_config_prints_the_resolved_ros2_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gsdnet"))
        .args(["check-config", "--board", &profile(dir.path(), "\"127.0.0.1\"")])
        .current_dir(repo())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("[ros2]") && text.contains("domain_id = 231"), "{text}");
    assert!(text.contains("input = \"/gsdnet/input\""), "{text}");
}
