"""Choose a recording subscription's QoS from the publishers' offered QoS, and store the offered QoS in the bag.

Same rule as rosbag2: reliable only when every publisher is reliable (a reliable subscription never matches a
best-effort publisher such as a camera driver's sensor-data one), transient-local only when every publisher
is (so latched topics like /tf_static deliver their history), otherwise volatile.
"""
from __future__ import annotations

from typing import Sequence

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

_INFINITE_SEC, _INFINITE_NSEC = 2147483647, 4294967295   # rmw's "infinite" as rosbag2 writes it


def subscription_qos(offered: Sequence[QoSProfile], depth: int) -> QoSProfile:
    reliable = bool(offered) and all(p.reliability == ReliabilityPolicy.RELIABLE for p in offered)
    latched = bool(offered) and all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in offered)
    if latched:  # fetch every publisher's whole history
        depth = max([depth] + [int(p.depth) for p in offered])
    # Reliable topics are kept whole (KEEP_ALL): with a keep-last reader queue, a recorder stalled for longer than
    # the queue lasts (100 ticks at 100 Hz = 1 s on a loaded host) overwrote samples it had already been handed,
    # and a bag lost messages from the middle of the stream. Now DDS holds them until the recorder takes them; what
    # a publisher's own keep-last history drops first is the publisher's choice. Best-effort topics (cameras)
    # keep the newest ``depth``.
    return QoSProfile(history=HistoryPolicy.KEEP_ALL if reliable else HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def is_compatible(subscription: QoSProfile, offered: Sequence[QoSProfile]) -> bool:
    """False when some publisher would not match this subscription (a best-effort one joined later)."""
    if subscription.reliability == ReliabilityPolicy.RELIABLE and any(
            p.reliability != ReliabilityPolicy.RELIABLE for p in offered):
        return False
    if subscription.durability == DurabilityPolicy.TRANSIENT_LOCAL and any(
            p.durability != DurabilityPolicy.TRANSIENT_LOCAL for p in offered):
        return False
    return True


def _qos_time(duration) -> QosTime:
    ns = int(getattr(duration, "nanoseconds", 0))
    if ns < 0 or ns >= _INFINITE_SEC * 1_000_000_000:
        return QosTime(_INFINITE_SEC, _INFINITE_NSEC)
    sec, nsec = divmod(ns, 1_000_000_000)
    return QosTime(sec, nsec)


def _enum(kind, value, unknown):
    try:
        return kind(int(value))
    except ValueError:
        return unknown


def to_bag_qos(profile: QoSProfile) -> Qos:
    """An rclpy QoS profile (as reported by the graph) in the form rosbag2 metadata stores."""
    return Qos(
        history=_enum(QosHistory, profile.history, QosHistory.UNKNOWN),
        depth=int(profile.depth),
        reliability=_enum(QosReliability, profile.reliability, QosReliability.UNKNOWN),
        durability=_enum(QosDurability, profile.durability, QosDurability.UNKNOWN),
        deadline=_qos_time(profile.deadline),
        lifespan=_qos_time(profile.lifespan),
        liveliness=_enum(QosLiveliness, profile.liveliness, QosLiveliness.UNKNOWN),
        liveliness_lease_duration=_qos_time(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )
