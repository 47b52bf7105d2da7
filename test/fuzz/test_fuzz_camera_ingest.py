"""Property-based fuzzing of camera ingest's inputs over real DDS: sensor_msgs/Image (unknown and odd
encodings, zero / odd / huge sizes, short and over-long data, bad steps), sensor_msgs/CompressedImage
(garbage, truncated JPEG, a decompression-heavy PNG, empty), frame stamps (zero, reversed, far future)
and ActionTick (extreme indices, unicode episode ids, reversed and absurd stamps), interleaved with the
fake cameras' valid frames.

Properties: the node never crashes; no Observation is ever published from a bad, stale or mismatched frame
(every one is audited: cameras in model order, model-sized rgb8, capture stamps within max_age of the
tick); bad frames are counted as decode errors / stamp faults; after the burst a valid tick still gets a
valid Observation.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image

from lingbot_va_ros.common import topics
from lingbot_va_ros.common.conversions import ns_to_stamp, rgb_to_image_msg
from lingbot_va_ros.common.qos import RELIABLE_DEEP, SENSOR_DATA
from lingbot_va_ros.msg import ActionTick
from lingbot_va_ros.nodes.camera_ingest import NODE_NAME
from lingbot_va_ros.testing.faults import ObservationAudit, diagnostic_statuses, diagnostic_values
from lingbot_va_ros.testing.ros_harness import wait_until

pytestmark = [pytest.mark.ros, pytest.mark.timeout(150)]

MAX_AGE = 0.25
CAMERAS = {  # role: (topic, kind, source shape, model size)
    "cam_high": ("/fuzz/cam_high/image_raw", "raw", (240, 320), (256, 320)),
    "cam_left_wrist": ("/fuzz/cam_left/image_raw", "raw", (120, 160), (128, 160)),
    "cam_right_wrist": ("/fuzz/cam_right/image_raw/compressed", "jpeg", (120, 160), (128, 160)),
}
FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
text = st.one_of(st.text(max_size=10), st.sampled_from(["", "ep-7", "é✓", "\x00", "x" * 500]))
stamps = st.one_of(st.just(None), st.sampled_from([0, 1, 2**63 - 1 - 10**9]), st.integers(0, 2**62))


def _png_bomb() -> bytes:   # 6000 x 6000 zeros: ~100 KB compressed, ~108 MB decoded (bounded on purpose)
    ok, buf = cv2.imencode(".png", np.zeros((6000, 6000), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return buf.tobytes()


def _jpeg(shape, level=90) -> bytes:
    rgb = np.full((*shape, 3), level, np.uint8)
    return cv2.imencode(".jpg", rgb)[1].tobytes()


BOMB = _png_bomb()
GOOD_JPEG = _jpeg((120, 160))


@st.composite
def raw_images(draw) -> Image:
    enc = draw(st.one_of(st.sampled_from(["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422", "yuyv", "8UC3",
                                          "16UC1", "32FC1", "bayer_rggb8", "", "RGB8"]), text))
    h = draw(st.sampled_from([0, 1, 2, 7, 120, 240, 480, 65535, 2**31 - 1]))
    w = draw(st.sampled_from([0, 1, 3, 160, 320, 641, 65535, 2**31 - 1]))
    ch = {"rgba8": 4, "bgra8": 4, "mono8": 1, "yuv422": 2, "yuyv": 2, "16UC1": 2, "32FC1": 4}.get(enc, 3)
    need = h * w * ch
    size = draw(st.sampled_from(["exact", "short", "long", "empty", "random"]))
    n = {"exact": need, "short": max(need - 1, 0), "long": need + 1000, "empty": 0,
         "random": draw(st.integers(0, 5000))}[size]
    n = min(n, 1_500_000)                         # bounded: a 2^31 x 2^31 claim travels with few bytes
    msg = Image(height=h, width=w, encoding=enc, is_bigendian=draw(st.sampled_from([0, 1, 255])),
                step=draw(st.sampled_from([0, w * ch, max(w * ch - 1, 0), 2**32 - 1])))
    msg.data = np.full(n, draw(st.integers(0, 255)), np.uint8).tobytes()
    return msg


@st.composite
def compressed_images(draw) -> CompressedImage:
    kind = draw(st.sampled_from(["garbage", "truncated", "bomb", "empty", "tiny", "depth"]))
    data = {"garbage": draw(st.binary(max_size=4000)), "truncated": GOOD_JPEG[: draw(st.integers(1, len(GOOD_JPEG) - 1))],
            "bomb": BOMB, "empty": b"", "tiny": _jpeg((1, 1)), "depth": GOOD_JPEG}[kind]
    fmt = "16UC1; compressedDepth" if kind == "depth" else draw(st.one_of(st.sampled_from(["jpeg", "png", ""]), text))
    return CompressedImage(format=fmt, data=data)


events = st.one_of(
    st.tuples(st.just("raw"), st.sampled_from(["cam_high", "cam_left_wrist"]), raw_images(), stamps),
    st.tuples(st.just("compressed"), st.just("cam_right_wrist"), compressed_images(), stamps),
    st.tuples(st.just("tick"), text, st.sampled_from([-1, 0, 3, -2**63, 2**63 - 1]), st.integers(0, 2**32 - 1), stamps),
)


class Cameras:
    """Valid frames on every camera at 15 Hz (the fuzzed frames are interleaved on the same topics)."""

    def __init__(self, probe):
        self.probe = probe
        self.pubs = {r: probe.publisher(CompressedImage if kind == "jpeg" else Image, topic, SENSOR_DATA)
                     for r, (topic, kind, _s, _m) in CAMERAS.items()}
        self.timer = probe.node.create_timer(1 / 15, self.publish)

    def publish(self) -> None:
        now = time.time_ns()
        for role, (_topic, kind, shape, _m) in CAMERAS.items():
            if kind == "jpeg":
                msg = CompressedImage(format="jpeg", data=GOOD_JPEG)
                msg.header.stamp = ns_to_stamp(now)
            else:
                msg = rgb_to_image_msg(np.full((*shape, 3), 100, np.uint8), now)
            self.pubs[role].publish(msg)

    def close(self) -> None:
        self.probe.node.destroy_timer(self.timer)


def test_fuzzed_frames_and_ticks_never_crash_ingest_nor_become_observations(probe, launch, tmp_path):
    params = {"camera_names": list(CAMERAS), "diagnostics_period": 0.5, "cameras": {}}
    for role, (topic, kind, _shape, size) in CAMERAS.items():
        params["cameras"][role] = {"source": "ros_compressed" if kind == "jpeg" else "ros_image",
                                   "settings": {"topic": topic}, "height": size[0], "width": size[1],
                                   "max_age": MAX_AGE, "max_wait": 0.1}
    path = tmp_path / "camera_ingest.yaml"
    path.write_text(yaml.safe_dump({NODE_NAME: {"ros__parameters": params}}))
    from diagnostic_msgs.msg import DiagnosticArray

    audit = ObservationAudit(probe, [(r, m[0], m[1]) for r, (_t, _k, _s, m) in CAMERAS.items()], MAX_AGE)
    diags = probe.subscribe(DiagnosticArray, topics.DIAGNOSTICS, RELIABLE_DEEP)
    ticks = probe.publisher(ActionTick, topics.ACTION_TICK, RELIABLE_DEEP)
    node = launch("lingbot_va_ros.nodes.camera_ingest", params_file=path)
    cams = Cameras(probe)
    try:
        probe.wait_for_subscribers(ticks, timeout=60)
        for pub in cams.pubs.values():
            probe.wait_for_subscribers(pub, timeout=60)
        probe.wait_for_publishers(topics.OBSERVATION, timeout=60)

        def tick(episode: str, index: int, kf: int, stamp_ns: int) -> None:
            msg = ActionTick(episode_id=episode, action_index=index, key_frame_index=kf)
            msg.header.stamp = ns_to_stamp(stamp_ns)
            ticks.publish(msg)

        # a valid tick first: the rig works before the fuzz
        wait_until(lambda: tick("pre", 3, 1, time.time_ns() - 30_000_000) or audit.observations.messages, 20,
                   "a first valid Observation", poll=0.3, on_timeout=lambda: node.output()[-3000:])

        @FUZZ
        @given(events)
        def burst(event):
            kind, who, *rest = event
            if kind == "tick":
                index, kf, stamp = rest
                tick(who, index, kf, time.time_ns() - 30_000_000 if stamp is None else stamp)
            else:
                msg, stamp = rest
                msg.header.stamp = ns_to_stamp(time.time_ns() if stamp is None else stamp)
                cams.pubs[who].publish(msg)
            time.sleep(0.004)

        burst()
        assert node.alive(), node.output()[-3000:]
        # valid frames keep flowing: a valid tick gets a valid Observation again (ticks re-sent until one does:
        # after a fuzzed far-future stamp a camera's ring restarts on its next valid frame)
        n = len(audit.observations.messages)
        wait_until(lambda: tick("after", 7, 2, time.time_ns() - 30_000_000)
                   or any(o.episode_id == "after" for o in audit.observations.messages[n:]), 20,
                   "a valid Observation after the fuzz burst", poll=0.3, on_timeout=lambda: node.output()[-3000:])
        problems = audit.problems()
        assert not problems, "\n".join(problems[:20])
        # bad frames were seen, counted and dropped (decode errors, stamp faults, or queue drops under the burst)
        def counted():
            latest = diagnostic_statuses(diags, "camera_ingest: cam")
            v = [diagnostic_values(s) for s in latest.values()]
            errors = sum(int(x.get("decode_errors", 0)) for x in v)
            other = sum(int(x.get("stamp_backwards", 0)) + int(x.get("stamp_repeats", 0)) + int(x.get("drops", 0))
                        for x in v)
            return errors > 0 and other > 0
        wait_until(counted, 10, "bad frames counted on /diagnostics",
                   on_timeout=lambda: str({n: diagnostic_values(s) for n, s in diagnostic_statuses(diags).items()}))
        assert node.alive()
    finally:
        cams.close()
