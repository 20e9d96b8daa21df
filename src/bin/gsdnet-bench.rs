//! `gsdnet-bench` binary: `gsdnet bench` with heap allocations counted. It owns the one
//! `#[global_allocator]` of the crate's binaries (`CountingAlloc`, an atomic add per
//! allocation); the production `gsdnet` binary keeps the system allocator, so the daemon never
//! pays for counting and its own `bench` reports allocations as not counted.
//!
//! Arguments are exactly those of `gsdnet bench` (`cli::BenchArgs`); a leading `bench` is
//! accepted too, so `gsdnet-bench bench --quick` and `gsdnet-bench --quick` are the same run.

use clap::Parser;
use gsdnet_edge::bench::CountingAlloc;
use gsdnet_edge::cli::{self, BenchArgs};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[derive(Debug, Parser)]
#[command(
    name = "gsdnet-bench",
    version,
    about = "`gsdnet bench` with heap allocations counted (latency, allocations, peak memory)"
)]
struct BenchCli {
    #[command(flatten)]
    args: BenchArgs,
}

/// The process arguments without a leading `bench` subcommand word (BenchArgs has no
/// positional argument, so that word can mean nothing else).
fn arguments() -> Vec<std::ffi::OsString> {
    let mut args: Vec<_> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "bench") {
        args.remove(1);
    }
    args
}

fn main() -> anyhow::Result<()> {
    gsdnet_edge::cli::daemon::init_logging("warn");
    cli::run_bench(BenchCli::parse_from(arguments()).args)
}
