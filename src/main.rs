//! `gsdnet` binary: logging setup and dispatch to `gsdnet_edge::cli`.

use clap::Parser;

/// Counts heap allocations for `gsdnet bench`; forwards everything to the system allocator.
#[global_allocator]
static ALLOC: gsdnet_edge::bench::CountingAlloc = gsdnet_edge::bench::CountingAlloc;

fn main() -> anyhow::Result<()> {
    gsdnet_edge::cli_daemon::init_logging("warn");
    gsdnet_edge::cli::run(gsdnet_edge::cli::Cli::parse())
}
