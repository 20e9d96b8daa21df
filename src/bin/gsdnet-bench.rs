//! `gsdnet-bench` binary: `gsdnet bench` with heap allocations counted. It owns the one
//! `#[global_allocator]` of the crate's binaries (`CountingAlloc`, an atomic add per
//! allocation); the production `gsdnet` binary keeps the system allocator, so the daemon never
//! pays for counting and its own `bench` reports allocations as not counted.
//!
//! Arguments are those of `gsdnet bench` (`cli::BenchArgs`, mapped to `bench::BenchOptions`); a leading `bench` is
//! accepted too, so `gsdnet-bench bench --quick` and `gsdnet-bench --quick` are the same run.
//! Its own options: `--providers` / `--require-accelerator` (ONNX Runtime), `--padded` (every size also padded to W, with the speedup of the
//! buckets) and `--batch 1,8` (`run_batch` of windows of different conversations).

use std::process::ExitCode;

use clap::Parser;
use gsdnet_edge::bench::CountingAlloc;
use gsdnet_edge::cli::{exit, BenchArgs};

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
    /// Also run every size with every window padded to the model's W (the layout before
    /// buckets) and print the bucketed/padded speedup per size
    #[arg(long)]
    padded: bool,
    /// Batch mode: windows per `run_batch` call, comma separated (e.g. 1,8); each B runs the
    /// same max(B) windows, one per conversation of the data (truncated to W)
    #[arg(long, value_delimiter = ',')]
    batch: Vec<usize>,
    /// ONNX Runtime execution providers in order of preference (tensorrt, cuda, cpu), comma
    /// separated [default: the backend's]
    #[arg(long, value_delimiter = ',')]
    providers: Vec<gsdnet_edge::backend::ProviderKind>,
    /// ONNX Runtime: fail instead of falling back to the CPU provider
    #[arg(long)]
    require_accelerator: bool,
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

fn main() -> ExitCode {
    gsdnet_edge::service::process::init_logging("warn");
    let c = match BenchCli::try_parse_from(arguments()) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(exit::code_of_parse(&e));
        }
    };
    let extras = gsdnet_edge::bench::Extras {
        padded: c.padded,
        batches: c.batch,
        providers: c.providers,
        require_accelerator: c.require_accelerator,
    };
    match gsdnet_edge::bench::run_and_report(&c.args.options(), &extras) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::from(exit::code_of(e.as_ref()))
        }
    }
}
