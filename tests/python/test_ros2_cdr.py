"""The gsdnet ROS 2 messages encode in CycloneDDS exactly as written down by hand (issue 22 item 2).

Each case of tests/data/ros2_cdr.json names a ROS type, a value (ROS field names) and its CDR
bytes (XCDR1 little endian with the encapsulation header, written down from the .msg files; the
Rust types are checked against the same file). Here cyclonedds, a DDS that is not the daemon's
own, must serialize the value (built with gsdnet_ros2.msgs) to exactly those bytes and
deserialize the bytes back to the value. Skips without the cyclonedds wheel (x86_64 only).
"""
import json

import pytest

from conftest import ROOT

pytest.importorskip("cyclonedds", reason="cyclonedds (PyPI wheel, x86_64 only) is not installed")

from gsdnet_ros2 import msgs  # noqa: E402 (needs cyclonedds)

CASES_PATH = ROOT / "tests" / "data" / "ros2_cdr.json"


def cdr_bytes(cdr) -> bytes:
    """The case's bytes: a hex string, or lines `HEX | comment` (the hex before the bar)."""
    if isinstance(cdr, str):
        return bytes.fromhex(cdr)
    return bytes.fromhex("".join(line.split("|", 1)[0] for line in cdr))


def load_cases() -> list:
    if not CASES_PATH.exists():
        pytest.fail(f"{CASES_PATH} not found (the CDR cases of the ROS 2 messages)")
    return json.loads(CASES_PATH.read_text())["cases"]


CASES = load_cases() if CASES_PATH.exists() else []


def test_cases_cover_every_message():
    names = {case["type"] for case in load_cases()}
    assert names >= {"gsdnet_msgs/msg/SensorInput", "gsdnet_msgs/msg/EmotionWindow",
                     "gsdnet_msgs/msg/Notice", "diagnostic_msgs/msg/DiagnosticArray"}, names


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_cyclonedds_encodes_the_written_bytes(case):
    cls = msgs.TYPES[case["type"]]
    assert cls.__idl_typename__ == msgs.dds_type_name(case["type"])
    value = msgs.from_dict(cls, case["value"])
    want = cdr_bytes(case["cdr"])
    assert want[:4] == b"\x00\x01\x00\x00", "XCDR1 little endian encapsulation"
    got = value.serialize()
    assert got.hex(" ") == want.hex(" ")
    back = cls.deserialize(want)
    assert back == value
