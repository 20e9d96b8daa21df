//! The text frontend on ONNX Runtime (CPU provider): the crafted golden cases
//! (tests/golden/text_frontend/cases.json) through `TextFrontend` on `BackendKind::Ort`, checked
//! exactly as the tract test checks them (`text_frontend::check_crafted_cases`: token ids equal,
//! embeddings alone and batched within the file's tolerance, quickstart similarities). Skips
//! without ORT_DYLIB_PATH or before the frontend set-up (`bash scripts/setup-frontends.sh`).

use gsdnet_edge::backend::{BackendKind, BackendOptions};

use crate::text_frontend::{check_crafted_cases, frontend};
use crate::util::ort::library;

#[test]
fn crafted_cases_match_the_python_reference_on_ort() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    let opts = BackendOptions {
        ort_library: Some(lib),
        ..BackendOptions::default()
    };
    let Some(mut front) = frontend(BackendKind::Ort, &opts) else {
        return;
    };
    check_crafted_cases(&mut front);
}
