//! `gsdnet` binary: logging setup and dispatch to `gsdnet_edge::cli`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    gsdnet_edge::cli_daemon::init_logging("warn");
    gsdnet_edge::cli::run(gsdnet_edge::cli::Cli::parse())
}
