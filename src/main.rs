//! `gsdnet` binary: logging setup and dispatch to `gsdnet_edge::cli`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    gsdnet_edge::cli::run(gsdnet_edge::cli::Cli::parse())
}
