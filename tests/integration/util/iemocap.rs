//! The shared IEMOCAP splits as the bundled IEMOCAP models see them. Their text modality is a
//! frontend (all-MiniLM-L6-v2, manifest `[frontends.text]`), so a split's own `text.f32` (the
//! old LSA view) is not their input: the text vector of every utterance is the embedding of its
//! transcript (`transcripts.csv`) computed by the model's own text frontend, exactly as
//! `gsdnet eval --data SPLIT` does (`frontend::recording::encode_split`).
//!
//! `for_model` returns `None` with a note where the test cannot run here: without `../shared`
//! (academic licence: never in the repository) or before the frontend set-up (`bash
//! scripts/setup-frontends.sh`, which the test command runs). Encoding a split takes tens of
//! seconds on tract, so each (split, model) is encoded once per test process and shared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use gsdnet_edge::backend::{BackendKind, BackendOptions};
use gsdnet_edge::dataset;
use gsdnet_edge::frontend::{self, FrontendError, TextFrontend};
use gsdnet_edge::manifest::Manifest;
use gsdnet_edge::recording::Recording;

use super::repo;

type Key = (String, String, String);
type Slot = Arc<OnceLock<Option<Recording>>>;

/// `../shared/data/iemocap/<way>/<split>`.
pub fn split_dir(way: &str, split: &str) -> PathBuf {
    repo().join("../shared/data/iemocap").join(way).join(split)
}

/// The split `../shared/data/iemocap/<way>/<split>` with the text view of the model in
/// `models/<model>`: its text vectors are the model's frontend's embeddings of the
/// transcripts. `None` (with a note) without the shared folder or the frontend set-up.
pub fn for_model(way: &str, split: &str, model: &str) -> Option<Recording> {
    static CACHE: OnceLock<Mutex<HashMap<Key, Slot>>> = OnceLock::new();
    let slot = {
        let mut cache = CACHE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Arc::clone(cache.entry((way.into(), split.into(), model.into())).or_default())
    };
    // Tests wanting the same split wait here for the first one's encoding.
    slot.get_or_init(|| encode(&split_dir(way, split), &repo().join("models").join(model)))
        .clone()
}

fn encode(dir: &Path, model_dir: &Path) -> Option<Recording> {
    if !dir.join("transcripts.csv").is_file() {
        eprintln!(
            "skipping: {} (with transcripts.csv) is not on this machine",
            dir.display()
        );
        return None;
    }
    let mut rec = dataset::load(dir).unwrap_or_else(|e| panic!("{e}"));
    let manifest = Manifest::load(model_dir).unwrap_or_else(|e| panic!("{}: {e}", model_dir.display()));
    assert!(
        manifest.text_frontend.is_some(),
        "{}: the IEMOCAP models take text through the frontend",
        model_dir.display()
    );
    let mut front = match TextFrontend::for_manifest(&manifest, BackendKind::Tract, &BackendOptions::default()) {
        Ok(f) => f.expect("declared above"),
        Err(e @ FrontendError::Missing { .. }) => {
            eprintln!("skipping: {e}");
            return None;
        }
        Err(e) => panic!("text frontend of {}: {e}", model_dir.display()),
    };
    let started = std::time::Instant::now();
    let n = frontend::recording::encode_split(&mut rec, dir, &mut front).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "text frontend: {n} transcripts of {} encoded in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Some(rec)
}

/// Whether the text frontend the model in `models/<model>` declares is set up (its files
/// present); prints why not. A test that serves the model skips what needs the frontend then.
pub fn frontend_ready(model: &str) -> bool {
    let manifest = Manifest::load(&repo().join("models").join(model)).unwrap_or_else(|e| panic!("{model}: {e}"));
    let dir = &manifest
        .text_frontend
        .as_ref()
        .expect("the model declares a text frontend")
        .dir;
    match frontend::FrontendConfig::load(dir, false) {
        Ok(_) => true,
        Err(e @ FrontendError::Missing { .. }) => {
            eprintln!("skipping the part that needs the text frontend: {e}");
            false
        }
        Err(e) => panic!("{}: {e}", dir.display()),
    }
}
