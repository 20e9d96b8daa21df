//! Window buckets and batches through ONNX Runtime (issue 13): see `util::batching`. The
//! library comes from ORT_DYLIB_PATH (skipped without it), providers from GSDNET_ORT_PROVIDERS.

use crate::util::batching::*;
use gsdnet_edge::backend::BackendKind;

fn ort() -> Option<Engine> {
    let lib = crate::util::ort::library("ORT_DYLIB_PATH")?;
    let providers: Vec<&str> = vec!["cpu"];
    Some(Engine {
        kind: BackendKind::Ort,
        opts: crate::util::ort::opts(&lib, &providers, false),
    })
}

#[test]
fn buckets_give_the_padded_windows_numbers_on_ort() {
    let Some(e) = ort() else { return };
    buckets_give_the_padded_windows_numbers(&e);
}

#[test]
fn a_window_does_not_depend_on_its_batch_mates_on_ort() {
    let Some(e) = ort() else { return };
    a_window_does_not_depend_on_its_batch_mates(&e);
}

#[test]
fn completion_samples_batch_like_windows_on_ort() {
    let Some(e) = ort() else { return };
    completion_samples_batch_like_windows(&e);
}
