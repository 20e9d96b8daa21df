//! `gsdnet` binary: logging setup and dispatch to `gsdnet_edge::cli`. It keeps the system
//! allocator (no counting on the daemon's path); allocation counts come from `gsdnet-bench`
//! (src/bin/gsdnet-bench.rs).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    gsdnet_edge::cli::daemon::init_logging("warn");
    gsdnet_edge::cli::run(gsdnet_edge::cli::Cli::parse())
}
