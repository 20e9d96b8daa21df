"""Puts scripts/ on sys.path so the tests import gsdnet_ref (numpy + onnxruntime only)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
