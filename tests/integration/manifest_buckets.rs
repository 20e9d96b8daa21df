//! Symbolic part shapes and `[dims] buckets` in a manifest (issue 13): the bundled models load
//! with them, and each mistake gets an error naming it.

use std::path::Path;

use crate::util::{repo, tiny_model};
use gsdnet_edge::backend::Axis;
use gsdnet_edge::manifest::Manifest;

/// Copies the model folder `from` to a temp dir, applies `edit` to the manifest text, loads it.
fn load_edited(from: &Path, edit: impl Fn(String) -> String) -> Result<Manifest, String> {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    let path = dir.path().join("manifest.toml");
    std::fs::write(&path, edit(std::fs::read_to_string(&path).unwrap())).unwrap();
    Manifest::load(dir.path()).map_err(|e| e.to_string())
}

#[test]
fn bundled_models_have_buckets_and_a_batch_axis() {
    for name in ["gsdnet-mosi", "gsdnet-iemocap6", "gsdnet-iemocap4"] {
        let m = Manifest::load(&repo().join("models").join(name)).unwrap();
        assert_eq!(m.buckets, vec![8, 16, 32, 64], "{name}");
        assert!(m.batched, "{name}");
        let x_t = &m.part("s_theta").unwrap().inputs[0];
        assert_eq!(
            x_t.axes,
            vec![Axis::Batch, Axis::Fixed, Axis::Window, Axis::Fixed],
            "{name}"
        );
        assert_eq!(x_t.shape, vec![1, m.modalities.count(), 64, m.dims.latent], "{name}");
    }
    let tiny = Manifest::load(&tiny_model()).unwrap();
    assert_eq!((tiny.buckets.clone(), tiny.batched), (vec![tiny.dims.window], false));
}

#[test]
fn bucket_and_axis_mistakes_are_named() {
    let mosi = repo().join("models/gsdnet-mosi");
    let cases: [(&str, &str, &str); 5] = [
        (
            "buckets = [8, 16, 32, 64]",
            "buckets = [16, 8, 64]",
            "strictly increasing",
        ),
        (
            "buckets = [8, 16, 32, 64]",
            "buckets = [8, 16, 32]",
            "ending at window = 64",
        ),
        ("buckets = [8, 16, 32, 64]", "buckets = [0, 64]", "from 1"),
        (
            "{ name = \"h\", shape = [\"batch\", 3, \"window\", 16] }",
            "{ name = \"h\", shape = [\"batch\", 3, \"win\", 16] }",
            "unknown axis `win`",
        ),
        (
            "{ name = \"h\", shape = [\"batch\", 3, \"window\", 16] }",
            "{ name = \"h\", shape = [1, 3, 64, 16] }",
            "DESIGN.md expects",
        ),
    ];
    for (from, to, want) in cases {
        let err = load_edited(&mosi, |t| {
            assert!(t.contains(from), "{from}");
            t.replacen(from, to, 1)
        })
        .err()
        .unwrap_or_else(|| panic!("{to}: loaded"));
        assert!(err.contains(want), "{to}: {err}");
    }
    let err = load_edited(&tiny_model(), |t| t.replace("[dims]\n", "[dims]\nbuckets = [4, 8]\n"))
        .err()
        .unwrap();
    assert!(err.contains("shapes are fixed"), "{err}");
}
