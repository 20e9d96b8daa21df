//! Runner configuration shared by the property tests (`daemon::assembly_props`, `protocol::props`).

use proptest::test_runner::{Config, RngSeed};

pub mod assembly_model;
pub mod messages;

/// Runner config: `cases` unless `PROPTEST_CASES` says otherwise, the fixed `seed` unless
/// `PROPTEST_RNG_SEED` says otherwise (CI is reproducible), no regression files written into the
/// source tree.
pub fn config(cases: u32, seed: u64) -> Config {
    let from_env = Config::default();
    let rng_seed = match from_env.rng_seed {
        RngSeed::Random => RngSeed::Fixed(seed),
        fixed => fixed,
    };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        rng_seed,
        failure_persistence: None,
        ..from_env
    }
}
