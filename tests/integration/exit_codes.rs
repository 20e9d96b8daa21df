//! Exit codes of the built binaries for systemd (src/cli/exit.rs): a bad board profile exits
//! 78 (EX_CONFIG), a bad flag 64 (EX_USAGE), `--help` 0, another failure 1; and the unit's
//! `RestartPreventExitStatus` lists exactly the codes a restart cannot fix.

use std::process::{Command, Output};

use crate::util::repo;
use gsdnet_edge::cli::exit;

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run the binary")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

#[test]
fn a_bad_board_profile_exits_with_ex_config() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let good = std::fs::read_to_string(repo().join("boards/x86-dev.toml")).unwrap();
    std::fs::write(&bad, good.replacen("backend = \"tract\"", "backend = \"nonesuch\"", 1)).unwrap();
    let bad = bad.display().to_string();
    for cmd in ["serve", "check-config", "warmup"] {
        let out = run(env!("CARGO_BIN_EXE_gsdnet"), &[cmd, "--board", &bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), i32::from(exit::CONFIG), "{cmd}: {err}");
        assert!(err.contains("engine.backend"), "{cmd}: {err}");
    }
    let missing = run(
        env!("CARGO_BIN_EXE_gsdnet"),
        &["check-config", "--board", "/nonexistent/board.toml"],
    );
    assert_eq!(
        code(&missing),
        i32::from(exit::CONFIG),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[test]
fn a_bad_flag_exits_with_ex_usage_and_help_with_zero() {
    let out = run(env!("CARGO_BIN_EXE_gsdnet"), &["serve", "--no-such-flag"]);
    assert_eq!(
        code(&out),
        i32::from(exit::USAGE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(env!("CARGO_BIN_EXE_gsdnet"), &["eval", "--seeds", ""]);
    assert_eq!(
        code(&out),
        i32::from(exit::USAGE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(env!("CARGO_BIN_EXE_gsdnet-bench"), &["--sizes", "many"]);
    assert_eq!(
        code(&out),
        i32::from(exit::USAGE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(code(&run(env!("CARGO_BIN_EXE_gsdnet"), &["--help"])), 0);
}

#[test]
fn other_failures_exit_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.gsdrec").display().to_string();
    let out = run(env!("CARGO_BIN_EXE_gsdnet"), &["eval", "--data", &missing]);
    assert_eq!(
        code(&out),
        i32::from(exit::FAILURE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_unit_prevents_restarts_on_exactly_the_codes_main_uses() {
    let unit = std::fs::read_to_string(repo().join("deploy/gsdnet.service")).unwrap();
    let lines: Vec<&str> = unit
        .lines()
        .filter(|l| l.trim_start().starts_with("RestartPreventExitStatus="))
        .collect();
    assert_eq!(lines.len(), 1, "one RestartPreventExitStatus line: {lines:?}");
    let mut listed: Vec<u8> = lines[0]
        .split_once('=')
        .unwrap()
        .1
        .split_whitespace()
        .map(|c| c.parse().expect("numeric code"))
        .collect();
    listed.sort_unstable();
    let mut want = exit::NO_RESTART.to_vec();
    want.sort_unstable();
    assert_eq!(listed, want);
    assert!(
        unit.lines().any(|l| l.trim() == "Restart=on-failure"),
        "the unit restarts on other failures"
    );
}
