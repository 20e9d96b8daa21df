"""ROOT, the repository root, for tests that read committed files (models/, tests/golden/).
The product packages (python/) come from the test command's virtual environment
(scripts/test.sh installs `python/` into .venv), never from a sys.path edit."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
