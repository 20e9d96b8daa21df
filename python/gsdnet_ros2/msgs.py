"""The gsdnet ROS 2 messages as CycloneDDS IDL types, under the names ROS 2 gives them on DDS.

Owns: one `IdlStruct` per message the daemon's ROS 2 side reads or writes, with the DDS type
name rosidl derives from the ROS name (`pkg/msg/Type` -> `pkg::msg::dds_::Type_`) and the
fields in the order of the .msg files (ros2/gsdnet_msgs/msg/*.msg for gsdnet_msgs; std_msgs,
builtin_interfaces and diagnostic_msgs as ROS 2 defines them). ROS `uint8`/`byte` are IDL
`uint8`, `float32[]` an unbounded sequence, `string` an unbounded string. The payload is plain
CDR (XCDR1, final extensibility): cyclonedds picks XCDR1 for these types, so `serialize()` gives
the bytes a ROS 2 node sends (little-endian on x86: encapsulation 00 01 00 00).

The .msg constants (kinds, modalities, reasons, modality bits) are not part of the DDS type;
they are module constants here. `TYPES` maps each ROS type name to its class. (No
`from __future__ import annotations` here: cyclonedds resolves the field annotations at run time.)
"""

import dataclasses
import struct
import typing
from dataclasses import dataclass, field

from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import float32, int32, sequence, uint8, uint16, uint32, uint64

# SensorInput.kind
FEATURES = 0
UTTERANCE_START = 1
UTTERANCE_END = 2
DROPOUT = 3
TRANSCRIPT = 4
CONVERSATION_END = 5
RESET = 6

# SensorInput.modality
MODALITY_TEXT = 0
MODALITY_AUDIO = 1
MODALITY_VISUAL = 2
MODALITY_NAMES = {"text": MODALITY_TEXT, "audio": MODALITY_AUDIO, "visual": MODALITY_VISUAL}

# Emotion.observed / Emotion.completed bits
TEXT = 1
AUDIO = 2
VISUAL = 4
MODALITY_BITS = {"text": TEXT, "audio": AUDIO, "visual": VISUAL}

# Notice.reason (docs/PROTOCOL.md, reject reasons)
MALFORMED = 4
WRONG_LENGTH = 5
NON_FINITE = 6
LATE = 8
DUPLICATE = 9
FLOOD = 11
CAPACITY = 12
NO_SUCH_MODALITY = 13
TRANSCRIPT_REFUSED = 14

# DiagnosticStatus.level
DIAG_OK = 0
DIAG_WARN = 1
DIAG_ERROR = 2
DIAG_STALE = 3


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class SensorInput(IdlStruct, typename="gsdnet_msgs::msg::dds_::SensorInput_"):
    header: Header = field(default_factory=Header)
    kind: uint8 = 0
    conversation: str = ""
    utterance: uint32 = 0
    speaker: uint16 = 0
    modality: uint8 = 0
    values: sequence[float32] = field(default_factory=list)
    text: str = ""


@dataclass
class Emotion(IdlStruct, typename="gsdnet_msgs::msg::dds_::Emotion_"):
    utterance: uint32 = 0
    speaker: uint16 = 0
    observed: uint8 = 0
    completed: uint8 = 0
    label: uint16 = 0
    label_name: str = ""
    probs: sequence[float32] = field(default_factory=list)
    confidence: float32 = 0.0
    uncertain: bool = False
    has_regression: bool = False
    regression: float32 = 0.0


@dataclass
class EmotionWindow(IdlStruct, typename="gsdnet_msgs::msg::dds_::EmotionWindow_"):
    header: Header = field(default_factory=Header)
    conversation: str = ""
    closed_utterance: uint32 = 0
    completion: str = ""
    latency_us: uint32 = 0
    abstain_below: float32 = 0.0
    utterances: sequence[Emotion] = field(default_factory=list)


@dataclass
class Notice(IdlStruct, typename="gsdnet_msgs::msg::dds_::Notice_"):
    header: Header = field(default_factory=Header)
    reason: uint8 = 0
    reason_name: str = ""
    conversation: str = ""
    has_utterance: bool = False
    utterance: uint32 = 0
    count: uint64 = 0
    detail: str = ""


@dataclass
class KeyValue(IdlStruct, typename="diagnostic_msgs::msg::dds_::KeyValue_"):
    key: str = ""
    value: str = ""


@dataclass
class DiagnosticStatus(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticStatus_"):
    level: uint8 = 0
    name: str = ""
    message: str = ""
    hardware_id: str = ""
    values: sequence[KeyValue] = field(default_factory=list)


@dataclass
class DiagnosticArray(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticArray_"):
    header: Header = field(default_factory=Header)
    status: sequence[DiagnosticStatus] = field(default_factory=list)


TYPES = {
    "builtin_interfaces/msg/Time": Time,
    "std_msgs/msg/Header": Header,
    "gsdnet_msgs/msg/SensorInput": SensorInput,
    "gsdnet_msgs/msg/Emotion": Emotion,
    "gsdnet_msgs/msg/EmotionWindow": EmotionWindow,
    "gsdnet_msgs/msg/Notice": Notice,
    "diagnostic_msgs/msg/KeyValue": KeyValue,
    "diagnostic_msgs/msg/DiagnosticStatus": DiagnosticStatus,
    "diagnostic_msgs/msg/DiagnosticArray": DiagnosticArray,
}


def dds_type_name(ros_type: str) -> str:
    """`pkg/msg/Type` -> `pkg::msg::dds_::Type_` (rosidl's DDS name of a ROS 2 message)."""
    pkg, kind, name = ros_type.split("/")
    return f"{pkg}::{kind}::dds_::{name}_"


def f32(x: float) -> float:
    """`x` rounded to the nearest float32 (what a float32 field holds)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _value(kind, data):
    """`data` as a value of field type `kind` (cyclonedds annotates sequences and sized numbers:
    `Annotated[Sequence[T], sequence(T)]`, `Annotated[float, "float32"]`)."""
    if isinstance(kind, type) and issubclass(kind, IdlStruct):
        return from_dict(kind, data)
    meta = typing.get_args(kind)[1:]
    if meta and isinstance(meta[0], sequence):
        if not isinstance(data, list):
            raise TypeError(f"expected a list, got {data!r}")
        return [_value(meta[0].subtype, item) for item in data]
    if meta == ("float32",):
        return f32(float(data))
    return data


def from_dict(cls, data: dict):
    """An instance of `cls` from its ROS field names (nested dicts and lists, as JSON holds a
    message). Every field must be given and no other (a field missing on either side is a
    mismatch with the .msg definition); float32 values are rounded to float32."""
    names = [f.name for f in dataclasses.fields(cls)]
    if set(data) != set(names):
        raise KeyError(f"{cls.__name__}: fields {sorted(data)} given, the type has {names}")
    return cls(**{f.name: _value(f.type, data[f.name]) for f in dataclasses.fields(cls)})


def to_dict(value) -> dict:
    """The ROS field names and values of a message (nested dicts and lists)."""
    return dataclasses.asdict(value)
