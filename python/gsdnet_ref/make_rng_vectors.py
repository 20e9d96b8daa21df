"""Writes tests/golden/rng/vectors.json: test vectors for the shared RNG (docs/DESIGN.md)."""
import json
import sys
from pathlib import Path

from gsdnet_ref import rng

out = {
    "mix64": [[z, rng.mix64(z)] for z in [0, 1, 0xFFFFFFFFFFFFFFFF, 0x123456789ABCDEF0]],
    "fnv1a64": [[s, rng.fnv1a64(s)] for s in ["", "a", "1DmNV9C1hbY", "conversation-é"]],
    "derive": [
        {"seed": 0, "labels": [], "key": rng.derive(0)},
        {"seed": 7, "labels": [1, 300, rng.fnv1a64("1DmNV9C1hbY")],
         "key": rng.derive(7, 1, 300, rng.fnv1a64("1DmNV9C1hbY"))},
        {"seed": 2, "labels": [16, 99], "key": rng.derive(2, 16, 99)},
    ],
}
key = rng.derive(3, 2, 500, 42, 0)
out["raw"] = {"key": key, "values": [int(v) for v in rng.raw_u64(key, 8)]}
out["uniforms"] = {"key": key, "values": [float(v) for v in rng.uniforms(key, 8)]}
out["normals"] = {"key": key, "values": [float(v) for v in rng.normals(key, 9)]}
Path(sys.argv[1] if len(sys.argv) > 1 else "tests/golden/rng/vectors.json").write_text(
    json.dumps(out, indent=1) + "\n")
