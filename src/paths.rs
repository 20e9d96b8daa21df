//! The files bundled with the crate (the CMU-MOSI model, its validation recording, the golden
//! cases) and how a relative path to one is found: in the working directory, else next to the
//! crate's sources, so `cargo run` from elsewhere in a fresh clone still finds them.

use std::path::{Path, PathBuf};

/// The bundled model folder (manifest.toml and its parts).
pub const DEFAULT_MODEL: &str = "models/gsdnet-mosi";
/// The bundled recording (CMU-MOSI validation split).
pub const DEFAULT_DATA: &str = "data/mosi-val.gsdrec";
/// The bundled golden cases of `gsdnet check`.
pub const GOLDEN_DIR: &str = "tests/golden";

/// `rel` in the working directory, else next to this crate's sources; `rel` itself when
/// neither exists (so the error names the path the user gave).
pub fn bundled(rel: &str) -> PathBuf {
    let here = PathBuf::from(rel);
    if here.exists() {
        return here;
    }
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if beside.exists() {
        beside
    } else {
        here
    }
}
