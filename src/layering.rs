//! The module graph of the crate, read from the sources: every `crate::a::b` path (in `use`
//! items, groups `use crate::{a, b}` included, and in expressions) and, inside `daemon/`, every
//! `super::x` of a daemon module. The test asserts that the graph between top-level modules and
//! the graph between `daemon`'s modules have no cycle, and that no top-level module uses one of
//! a higher layer (`lib.rs` says which module sits where).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of `lib.rs`, lowest first.
const LAYERS: [&[&str]; 4] = [
    &[
        "capacity",
        "paths",
        "tensor",
        "rng",
        "modality",
        "masks",
        "stage",
        "completion",
        "calibration",
        "metrics",
        "spectral",
        "multisample",
    ],
    &[
        "backend",
        "diffusion",
        "manifest",
        "model",
        "pipeline",
        "frontend",
        "recording",
        "dataset",
        "protocol",
        "config",
        "io",
    ],
    &["eval", "bench", "check", "daemon", "client", "service"],
    &["cli"],
];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under src/ (`daemon/server.rs` -> [daemon, server]).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// The source without comments (line comments only: the crate has no block comments).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The paths (as `a` or `a::b`) that follow every `prefix` in `code`, groups expanded.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            for item in body.split(',') {
                let segs: Vec<String> = item
                    .trim()
                    .split("::")
                    .filter_map(ident_at)
                    .map(str::to_string)
                    .collect();
                if !segs.is_empty() {
                    out.push(segs);
                }
            }
        } else {
            let mut segs = Vec::new();
            let mut r = rest;
            while let Some(id) = ident_at(r) {
                segs.push(id.to_string());
                r = &r[id.len()..];
                match r.strip_prefix("::") {
                    Some(next) if segs.len() < 2 => r = next,
                    _ => break,
                }
            }
            if !segs.is_empty() {
                out.push(segs);
            }
        }
    }
    out
}

/// Top-level graph and the graph of `daemon`'s modules.
fn graphs() -> (Graph, Graph) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let daemon_mods: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let m = module_of(f.strip_prefix(&src).ok()?);
            (m.len() >= 2 && m[0] == "daemon").then(|| m[1].clone())
        })
        .collect();
    let (mut top, mut daemon) = (Graph::new(), Graph::new());
    for f in &files {
        let m = module_of(f.strip_prefix(&src).expect("under src/"));
        // The crate root, the binaries and this test (whose strings hold example paths) are no modules of a layer.
        if m.is_empty() || ["lib", "main", "bin", "layering"].contains(&m[0].as_str()) {
            continue;
        }
        let text = code(&std::fs::read_to_string(f).expect("readable source"));
        top.entry(m[0].clone()).or_default();
        for p in paths_after(&text, "crate::") {
            if p[0] != m[0] {
                top.entry(m[0].clone()).or_default().insert(p[0].clone());
            }
            if m[0] == "daemon"
                && m.len() >= 2
                && p[0] == "daemon"
                && p.len() >= 2
                && p[1] != m[1]
                && daemon_mods.contains(&p[1])
            {
                daemon.entry(m[1].clone()).or_default().insert(p[1].clone());
            }
        }
        // `super::x` in daemon/<m>.rs or daemon/<m>/mod.rs names daemon module x.
        let is_daemon_child = m.len() == 2 && m[0] == "daemon";
        if is_daemon_child {
            daemon.entry(m[1].clone()).or_default();
            for p in paths_after(&text, "super::") {
                if p[0] != m[1] && daemon_mods.contains(&p[0]) {
                    daemon.entry(m[1].clone()).or_default().insert(p[0].clone());
                }
            }
        }
    }
    (top, daemon)
}

/// A cycle of `g`, if any (depth-first search).
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(n: &str, g: &Graph, state: &mut BTreeMap<String, u8>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            match state.get(d.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == d).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(d.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(d, g, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if !state.contains_key(n.as_str()) {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, g, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_parser_reads_groups_paths_and_super() {
    let text = code("use crate::{a, b::c};\nlet x = crate::d::e::f(); // crate::z\nuse super::{g, h};");
    let crate_paths = paths_after(&text, "crate::");
    assert_eq!(
        crate_paths,
        vec![
            vec!["a".to_string()],
            vec!["b".into(), "c".into()],
            vec!["d".into(), "e".into()]
        ]
    );
    let sup: Vec<String> = paths_after(&text, "super::")
        .into_iter()
        .map(|p| p[0].clone())
        .collect();
    assert_eq!(sup, ["g", "h"]);
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("a".into());
    assert_eq!(cycle(&g), Some(vec!["a".to_string(), "b".into(), "a".into()]));
}

#[test]
fn module_graphs_have_no_cycle() {
    let (top, daemon) = graphs();
    assert!(
        top.len() > 20 && top.contains_key("pipeline"),
        "read too little of src/: {top:?}"
    );
    assert!(
        daemon.contains_key("server") && daemon["server"].contains("connection"),
        "read too little of daemon/: {daemon:?}"
    );
    assert_eq!(cycle(&top), None, "import cycle between top-level modules");
    assert_eq!(cycle(&daemon), None, "import cycle between daemon modules");
}

#[test]
fn layers_point_down() {
    let (top, _) = graphs();
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    for (m, deps) in &top {
        let Some(own) = layer(m) else {
            panic!("module `{m}` is in no layer of lib.rs (add it there and to LAYERS)")
        };
        for d in deps {
            let theirs = layer(d).unwrap_or_else(|| panic!("`{m}` uses `{d}`, which is in no layer"));
            assert!(
                theirs <= own,
                "`{m}` (layer {}) uses `{d}` (layer {}): layers point down",
                own + 1,
                theirs + 1
            );
        }
    }
}
