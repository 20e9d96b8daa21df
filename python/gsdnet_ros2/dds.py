"""A CycloneDDS participant on loopback only, speaking ROS 2's names and the daemon's QoS.

Owns: the CycloneDDS configuration of a foreign ROS 2 peer on this host (`loopback_config`:
interface 127.0.0.1, no multicast, unicast discovery to the well-known ports of 127.0.0.1), the
mapping of ROS 2 topic names to DDS topic names (`dds_topic_name`: a relative name resolved in
the namespace, then the `rt/` prefix), the QoS of each gsdnet topic as the daemon declares it
(`DEPTH`, `qos`: reliable, volatile, keep-last), `Ros2Peer`, a participant on one domain id
with readers and writers on those topics, and `wait_matched` / `take` for its endpoints.

Discovery on loopback without multicast (measured against RustDDS 0.15.1, the daemon's DDS;
Linux's `lo` has no MULTICAST flag, so everything here is unicast): each participant takes the
first free participant index p of its domain d and listens for discovery (SPDP) on UDP
7400 + 250 d + 10 + 2 p. CycloneDDS with `Peers = 127.0.0.1` announces itself to those ports of
127.0.0.1 for p = 0..MaxAutoParticipantIndex (31 here); RustDDS (its `same_host_loopback`, on by
default) announces itself to 127.0.0.1 for p = 0..11 only. Both ways work while the Cyclone
participant's index is below 12: with 13 other participants on the domain first, Cyclone (index
13) and RustDDS (index 14) never matched. Tests therefore take a random domain id each.
"""
from __future__ import annotations

import time
from typing import Iterable

from cyclonedds.core import Qos, Policy
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.internal import InvalidSample
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from gsdnet_ros2 import msgs

# ROS 2 topic names of the daemon (relative ones are resolved in its namespace) and their types.
INPUT = "gsdnet/input"
EMOTIONS = "gsdnet/emotions"
NOTICES = "gsdnet/notices"
DIAGNOSTICS = "/diagnostics"
TOPIC_TYPES = {
    INPUT: msgs.SensorInput,
    EMOTIONS: msgs.EmotionWindow,
    NOTICES: msgs.Notice,
    DIAGNOSTICS: msgs.DiagnosticArray,
}
# History depth of each topic as the daemon declares it (all reliable and volatile).
DEPTH = {INPUT: 256, EMOTIONS: 64, NOTICES: 64, DIAGNOSTICS: 10}

# Participant indices CycloneDDS tries for itself and announces to on 127.0.0.1 (RustDDS uses
# 0..11 and announces to those: see the module docstring).
MAX_PARTICIPANT_INDEX = 31


def loopback_config(max_participant_index: int = MAX_PARTICIPANT_INDEX, trace: str | None = None) -> str:
    """CycloneDDS XML: 127.0.0.1 only, no multicast, unicast discovery of 127.0.0.1's peers.
    `trace`: a file for Cyclone's discovery trace (debugging)."""
    tracing = ""
    if trace:
        tracing = (f"<Tracing><Verbosity>fine</Verbosity><OutputFile>{trace}</OutputFile>"
                   "<Category>discovery</Category></Tracing>")
    return (
        '<CycloneDDS><Domain Id="any">'
        "<General><Interfaces><NetworkInterface address=\"127.0.0.1\"/></Interfaces>"
        "<AllowMulticast>false</AllowMulticast></General>"
        "<Discovery><ParticipantIndex>auto</ParticipantIndex>"
        f"<MaxAutoParticipantIndex>{max_participant_index}</MaxAutoParticipantIndex>"
        '<Peers><Peer address="127.0.0.1"/></Peers></Discovery>'
        f"{tracing}</Domain></CycloneDDS>"
    )


def resolve(name: str, namespace: str = "/") -> str:
    """The fully qualified ROS 2 name of topic `name` in `namespace` ("/" + relative name)."""
    if name.startswith("/"):
        return name
    namespace = "/" + namespace.strip("/")
    return (namespace.rstrip("/") + "/" + name) if namespace != "/" else "/" + name


def dds_topic_name(name: str, namespace: str = "/") -> str:
    """ROS 2 topic `name` (in `namespace`) as a DDS topic: `gsdnet/input` -> `rt/gsdnet/input`."""
    return "rt" + resolve(name, namespace)


def qos(depth: int) -> Qos:
    """Reliable, keep-last `depth`, volatile: the QoS of the daemon's topics."""
    return Qos(
        Policy.Reliability.Reliable(max_blocking_time=duration(seconds=1)),
        Policy.History.KeepLast(depth),
        Policy.Durability.Volatile,
    )


class Ros2Peer:
    """A CycloneDDS participant on `domain_id` (loopback only) with ROS 2 named endpoints.
    Use as a context manager; `close()` deletes the participant (and its endpoints)."""

    def __init__(self, domain_id: int, namespace: str = "/", config: str | None = None):
        self.domain_id = domain_id
        self.namespace = namespace
        self._domain = Domain(domain_id, config or loopback_config())
        self.participant = DomainParticipant(domain_id)
        self._topics: dict[str, Topic] = {}

    def topic(self, name: str, cls=None) -> Topic:
        dds_name = dds_topic_name(name, self.namespace)
        if dds_name not in self._topics:
            self._topics[dds_name] = Topic(self.participant, dds_name, cls or TOPIC_TYPES[name])
        return self._topics[dds_name]

    def reader(self, name: str, depth: int | None = None, cls=None) -> DataReader:
        return DataReader(self.participant, self.topic(name, cls), qos=qos(depth or DEPTH.get(name, 64)))

    def writer(self, name: str, depth: int | None = None, cls=None) -> DataWriter:
        return DataWriter(self.participant, self.topic(name, cls), qos=qos(depth or DEPTH.get(name, 64)))

    def close(self) -> None:
        """Delete the participant and the domain (leaves the DDS graph at once)."""
        if self.participant is not None:
            self._topics.clear()
            self.participant.__del__()
            self._domain.__del__()
            self.participant = None

    def __enter__(self) -> Ros2Peer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def matched(endpoint) -> int:
    """How many remote endpoints `endpoint` (a reader or a writer) is matched with now."""
    if isinstance(endpoint, DataWriter):
        return len(endpoint.get_matched_subscriptions())
    return len(endpoint.get_matched_publications())


def wait_matched(endpoints: Iterable, timeout: float, count: int = 1) -> bool:
    """Wait until every one of `endpoints` is matched with at least `count` remote ones."""
    endpoints = list(endpoints)
    until = time.monotonic() + timeout
    while True:
        if all(matched(e) >= count for e in endpoints):
            return True
        if time.monotonic() >= until:
            return False
        time.sleep(0.05)


def take(reader: DataReader, limit: int = 256) -> list:
    """The valid samples `reader` holds now (dispose / unregister notifications left out)."""
    return [s for s in reader.take(N=limit) if not isinstance(s, InvalidSample)]
