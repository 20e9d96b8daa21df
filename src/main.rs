//! `gsdnet` binary: logging set-up, argument parsing and dispatch to `gsdnet_edge::cli`, and the
//! exit code of a failure (`cli::exit`: 64 usage, 78 configuration, 1 otherwise, so systemd
//! does not restart a service that cannot start). It keeps the system allocator (no counting
//! on the daemon's path); allocation counts come from `gsdnet-bench` (src/bin/gsdnet-bench.rs).

use std::process::ExitCode;

use clap::Parser;
use gsdnet_edge::cli::{self, exit};

fn main() -> ExitCode {
    gsdnet_edge::service::process::init_logging("warn");
    let parsed = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(exit::code_of_parse(&e));
        }
    };
    match cli::run(parsed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::from(exit::code_of(e.as_ref()))
        }
    }
}
