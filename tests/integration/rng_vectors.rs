//! RNG parity with `python/gsdnet_ref/rng.py` through `tests/golden/rng/vectors.json`.

use gsdnet_edge::rng;
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/rng/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read vectors.json")).expect("parse vectors.json")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

#[test]
fn mix64_fnv_and_derive_match() {
    let v = vectors();
    for pair in v["mix64"].as_array().unwrap() {
        assert_eq!(rng::mix64(u(&pair[0])), u(&pair[1]));
    }
    for pair in v["fnv1a64"].as_array().unwrap() {
        assert_eq!(rng::fnv1a64(pair[0].as_str().unwrap()), u(&pair[1]));
    }
    let derives = v["derive"].as_array().unwrap();
    assert!(!derives.is_empty());
    for d in derives {
        let labels: Vec<u64> = d["labels"].as_array().unwrap().iter().map(u).collect();
        assert_eq!(rng::derive(u(&d["seed"]), &labels), u(&d["key"]), "{d}");
    }
}

#[test]
fn streams_match_bit_for_bit() {
    let v = vectors();
    let raw = &v["raw"];
    for (j, want) in raw["values"].as_array().unwrap().iter().enumerate() {
        assert_eq!(rng::raw(u(&raw["key"]), j as u64), u(want));
    }
    let uni = &v["uniforms"];
    for (j, want) in uni["values"].as_array().unwrap().iter().enumerate() {
        assert_eq!(rng::uniform(u(&uni["key"]), j as u64), want.as_f64().unwrap());
    }
    let nor = &v["normals"];
    let want: Vec<f64> = nor["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let got = rng::normals_f64(u(&nor["key"]), want.len());
    for (g, w) in got.iter().zip(&want) {
        // libm and numpy may differ in the last ulp of ln/cos/sin; the f32 casts must agree.
        assert!((g - w).abs() <= 4.0 * f64::EPSILON * w.abs().max(1.0), "{g} vs {w}");
    }
    let mut f = vec![0f32; want.len()];
    rng::fill_normals(u(&nor["key"]), &mut f);
    for (g, w) in f.iter().zip(&want) {
        assert_eq!(*g, *w as f32);
    }
}
