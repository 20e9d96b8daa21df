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
