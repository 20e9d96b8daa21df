"""Every patch in research/patches (variants measured and not kept in the product code, applied
by the research scripts, e.g. research/fusion_sweep.sh) still applies to the tree, so the
measurements it stands behind can be rerun. Skips outside a git checkout."""
import shutil
import subprocess

import pytest
from conftest import ROOT

PATCHES = sorted((ROOT / "research" / "patches").glob("*.diff"))


def in_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--is-inside-work-tree"],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() == "true"


def test_there_are_patches():
    assert PATCHES, "research/patches holds no .diff"


@pytest.mark.skipif(not in_git_checkout(), reason="needs git and a checkout of the repository")
@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_patch_applies_to_the_tree(patch):
    r = subprocess.run(["git", "-C", str(ROOT), "apply", "--check", str(patch)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"{patch.name} no longer applies: {r.stderr.strip()}"
