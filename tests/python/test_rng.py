"""The shared RNG reproduces tests/golden/rng/vectors.json bit for bit."""
import json

import numpy as np
from conftest import ROOT

from gsdnet_ref import rng

VEC = json.loads((ROOT / "tests" / "golden" / "rng" / "vectors.json").read_text())


def test_mix64_and_fnv():
    for z, want in VEC["mix64"]:
        assert rng.mix64(z) == want
    for s, want in VEC["fnv1a64"]:
        assert rng.fnv1a64(s) == want


def test_derive():
    for case in VEC["derive"]:
        assert rng.derive(case["seed"], *case["labels"]) == case["key"]


def test_streams():
    key = VEC["raw"]["key"]
    assert [int(v) for v in rng.raw_u64(key, 8)] == VEC["raw"]["values"]
    assert rng.uniforms(key, 8).tolist() == VEC["uniforms"]["values"]
    assert rng.normals(key, 9).tolist() == VEC["normals"]["values"]


def test_uniforms_open_interval_and_moments():
    u = rng.uniforms(rng.derive(5, 1), 100_000)
    assert u.min() > 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01
    z = rng.normals(rng.derive(5, 2), 100_000)
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.02


def test_normals_f32_row_major():
    key = rng.derive(1, 2, 3)
    a = rng.normals_f32(key, (2, 3, 4))
    assert a.dtype == np.float32 and a.shape == (2, 3, 4)
    np.testing.assert_array_equal(a.ravel(), rng.normals(key, 24).astype(np.float32))
