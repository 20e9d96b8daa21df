"""Utterance boundaries: a segments file (CSV or JSON) of start_s, end_s, speaker and an optional
transcript, one row per utterance.

CSV: a header naming at least `start_s,end_s,speaker` (and `transcript`). JSON: a list of objects
with those keys, or `{"segments": [...]}`. Speakers are names or numbers; each distinct name gets
the next index in order of first appearance (the protocol's speaker index within the
conversation). Utterances are sorted by start time (the protocol wants ids in spoken order).
"""

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path


class SegmentsError(ValueError):
    """A segments file that cannot be used, with the row at fault."""


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    speaker: int  # index within the conversation
    speaker_name: str
    transcript: str | None = None


def load_segments(path):
    """The segments of a .csv or .json file, sorted by start."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SegmentsError(f"{path}: {e}") from e
    rows = _json_rows(path, text) if path.suffix.lower() == ".json" else _csv_rows(path, text)
    return parse_rows(rows, str(path))


def _csv_rows(path, text):
    reader = csv.DictReader(text.splitlines())
    missing = {"start_s", "end_s", "speaker"} - set(reader.fieldnames or ())
    if missing:
        raise SegmentsError(f"{path}: the header lacks {sorted(missing)}")
    return list(reader)


def _json_rows(path, text):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SegmentsError(f"{path}: {e}") from e
    if isinstance(data, dict):
        data = data.get("segments")
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise SegmentsError(f"{path}: expected a list of objects or {{\"segments\": [...]}}")
    return data


def parse_rows(rows, where="segments"):
    """Segments from dicts with start_s, end_s, speaker and an optional transcript."""
    speakers = {}
    out = []
    for i, row in enumerate(rows, start=1):
        try:
            start, end = float(row["start_s"]), float(row["end_s"])
            name = str(row["speaker"]).strip()
        except (KeyError, TypeError, ValueError) as e:
            raise SegmentsError(f"{where}: row {i}: needs numeric start_s, end_s and a speaker ({e})") from e
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            raise SegmentsError(f"{where}: row {i}: needs 0 <= start_s < end_s, got {start}, {end}")
        if not name:
            raise SegmentsError(f"{where}: row {i}: empty speaker")
        speaker = speakers.setdefault(name, len(speakers))
        if speaker > 0xFFFF:
            raise SegmentsError(f"{where}: row {i}: more than 65536 speakers")
        transcript = row.get("transcript")
        transcript = str(transcript).strip() if transcript not in (None, "") else None
        out.append(Segment(start, end, speaker, name, transcript or None))
    if not out:
        raise SegmentsError(f"{where}: no segments")
    return sorted(out, key=lambda s: (s.start_s, s.end_s))


def write_segments(path, segments):
    """Writes segments as CSV (start_s,end_s,speaker,transcript) or, for a .json path, JSON."""
    path = Path(path)
    rows = [{"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "speaker": s.speaker_name,
             "transcript": s.transcript or ""} for s in segments]
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({"segments": rows}, indent=1) + "\n", encoding="utf-8")
        return
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["start_s", "end_s", "speaker", "transcript"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
