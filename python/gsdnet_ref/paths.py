"""Where the product Python finds the project's files: the one definition of both roots.

ROOT is the repository root: the working directory the entry points run in (`python -m
gsdnet_torch.train ...` from the repository root, as README.md shows), or $GSDNET_ROOT.
SHARED_DATA holds the data sets: `../shared/data` beside the repository, or $GSDNET_DATA.
Defaults of the command-line tools are built from these two, never from where the package is
installed.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("GSDNET_ROOT", ".")).resolve()
SHARED_DATA = Path(os.environ.get("GSDNET_DATA", ROOT.parent / "shared" / "data")).resolve()


def recorded_command(module: str, argv: list[str]) -> str:
    """The command line a manifest records to reproduce a step (`python3 -m MODULE ARGS`),
    without options whose value is an absolute path: those name one machine's scratch files
    (caches, JSON reports, work folders), which reproduce nothing elsewhere; repository-relative
    paths (models/..., ../shared/...) are kept."""
    kept, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg.startswith("--") and "=" in arg and os.path.isabs(arg.split("=", 1)[1]):
            continue
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg.startswith("--") and os.path.isabs(nxt):
            skip = True
            continue
        kept.append(arg)
    return " ".join(["python3", "-m", module, *kept])
