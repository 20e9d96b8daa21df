//! Window buckets and batches on tract (issue 13): see `util::batching`.

use crate::util::batching::*;
use gsdnet_edge::backend::{BackendKind, BackendOptions};

fn tract() -> Engine {
    Engine {
        kind: BackendKind::Tract,
        opts: BackendOptions::default(),
    }
}

#[test]
fn buckets_give_the_padded_windows_numbers_on_tract() {
    buckets_give_the_padded_windows_numbers(&tract());
}

#[test]
fn a_window_does_not_depend_on_its_batch_mates_on_tract() {
    a_window_does_not_depend_on_its_batch_mates(&tract());
}

#[test]
fn completion_samples_batch_like_windows_on_tract() {
    completion_samples_batch_like_windows(&tract());
}
