//! The integration tests, one test binary (`cargo test --release --test integration`; a module
//! path filters, e.g. `-- daemon::` or `-- ort::golden`). Each module tests what its name says;
//! `util` holds the shared helpers. `ort` is built with `--features ort` only and skips without
//! ORT_DYLIB_PATH; tests that read ../shared skip cleanly without it. The steady-state
//! allocation test is its own binary (tests/alloc_steady_state.rs): it installs a counting global
//! allocator, which would count every other test's allocations here.

mod util;

mod batching;
mod bench;
mod cli;
mod config;
mod daemon;
mod eval_parity;
mod exit_codes;
mod golden;
mod manifest_buckets;
#[cfg(feature = "ort")]
mod ort;
mod protocol;
mod rng_vectors;
mod ros2;
mod sampler;
mod standardise;
mod text_frontend;
mod tiny_model;
mod tiny_model_ta3;
