"""The live-view node over real DDS: a separate process fed by the probe with PredictedLatents and Observations,
exactly as the inference node and camera ingest feed it. Every wait is for a condition (a message with the
expected content), with generous deadlines; nothing depends on how fast the decoder is."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image

from lingbot_va_ros.common import qos, topics
from lingbot_va_ros.common.conversions import image_msg_to_rgb, ns_to_stamp, rgb_to_image_msg, stamp_to_ns
from lingbot_va_ros.live_view.compose import encode_jpeg, psnr
from lingbot_va_ros.live_view.latents import pack_latents
from lingbot_va_ros.model.embodiment import load_embodiment
from lingbot_va_ros.model.prediction_error import frame_action_indices
from lingbot_va_ros.msg import Observation, PredictedFrameInfo, PredictedLatents
from lingbot_va_ros.testing.ros_harness import wait_until

pytestmark = [pytest.mark.ros, pytest.mark.timeout(240)]

NODE = "lingbot_va_live_view"
EMB = load_embodiment("demo_sim")
EPISODE = "ep-live-view"
DEADLINE = 90.0                 # s: a loaded 2-core host may starve the niced decoder for a long while
JPEG_QUALITY = 85               # config default
JPEG_PSNR_DB = 25.0             # JPEG at quality 85 of a view with noise-like predicted halves: ~27 dB measured


@pytest.fixture
def live_view(probe, launch, tmp_path):
    from lingbot_va_ros.model.tiny_checkpoint import shared_tiny_checkpoint

    params = tmp_path / "live_view.yaml"
    params.write_text(yaml.safe_dump({NODE: {"ros__parameters": {
        "checkpoint": str(shared_tiny_checkpoint()), "embodiment": "demo_sim", "device": "cpu",
        "decoder": "vae_first_frame", "frames": "all", "diagnostics_hz": 5.0, "jpeg_quality": JPEG_QUALITY,
        "preview_cache_dir": str(tmp_path / "cache")}}}))
    proc = launch("lingbot_va_ros.nodes.live_view", params_file=params, name=NODE)
    return proc


class Probe:
    def __init__(self, probe):
        self.probe = probe
        self.latents = probe.publisher(PredictedLatents, topics.PREDICTED_LATENTS, qos.RELIABLE)
        self.observations = probe.publisher(Observation, topics.OBSERVATION, qos.RELIABLE_DEEP)
        self.frames = probe.subscribe(Image, topics.PREDICTED_FRAMES, qos.RELIABLE_DEEP)
        self.frames_jpeg = probe.subscribe(CompressedImage, topics.PREDICTED_FRAMES_COMPRESSED, qos.RELIABLE_DEEP)
        self.frames_info = probe.subscribe(PredictedFrameInfo, topics.PREDICTED_FRAMES_INFO, qos.RELIABLE_DEEP)
        self.pvr = probe.subscribe(Image, topics.PREDICTION_VS_REAL, qos.RELIABLE_DEEP)
        self.pvr_jpeg = probe.subscribe(CompressedImage, topics.PREDICTION_VS_REAL_COMPRESSED, qos.RELIABLE_DEEP)
        self.pvr_info = probe.subscribe(PredictedFrameInfo, topics.PREDICTION_VS_REAL_INFO, qos.RELIABLE_DEEP)
        self.diagnostics = probe.subscribe(DiagnosticArray, topics.DIAGNOSTICS, qos.RELIABLE_DEEP)
        self.rng = np.random.default_rng(0)

    def ready(self, proc) -> None:
        def up() -> bool:
            assert proc.alive(), proc.output()[-3000:]
            node = self.probe.node
            return (self.latents.get_subscription_count() >= 1 and self.observations.get_subscription_count() >= 1
                    and node.count_publishers(topics.PREDICTION_VS_REAL_INFO) >= 1
                    and self.frames_info_matched())
        wait_until(up, DEADLINE, "the live view subscribed and publishing", poll=0.1, on_timeout=proc.output)

    def frames_info_matched(self) -> bool:
        return self.probe.node.count_publishers(topics.PREDICTED_FRAMES_INFO) >= 1

    def publish_latents(self, chunk: int, cameras=EMB.camera_names) -> PredictedLatents:
        start = 0 if chunk == 0 else EMB.first_chunk_actions + (chunk - 1) * EMB.actions_per_chunk
        shape = (48, EMB.frame_chunk_size, EMB.latent_height, EMB.latent_width)
        msg = PredictedLatents(episode_id=EPISODE, chunk_index=chunk, start_index=start, camera_names=list(cameras),
                               frame_action_indices=list(frame_action_indices(chunk, start, shape[1],
                                                                              EMB.action_per_frame)))
        msg.header.stamp = self.probe.node.get_clock().now().to_msg()
        msg.shape, msg.dtype, msg.data = pack_latents(self.rng.standard_normal(shape).astype(np.float32))
        self.latents.publish(msg)
        return msg

    def observation(self, action_index: int) -> Observation:
        # camera-like content (smooth, with edges), what JPEG is made for
        images = {cam: cv2.GaussianBlur(self.rng.integers(0, 256, (*EMB.image_sizes[cam], 3), dtype=np.uint8),
                                        (15, 15), 4) for cam in EMB.camera_names}
        stamp = self.probe.node.get_clock().now().nanoseconds
        msg = Observation(episode_id=EPISODE, action_index=action_index, key_frame_index=0, camera_names=list(images),
                          images=[rgb_to_image_msg(img, stamp, c) for c, img in images.items()])
        msg.header.stamp = ns_to_stamp(stamp)
        return msg

    def deliver_observation(self, msg: Observation, until) -> None:
        """The live view reads observations best effort (it must never slow camera ingest): resend until seen."""
        def seen() -> bool:
            if until():
                return True
            self.observations.publish(msg)
            return False
        wait_until(seen, DEADLINE, f"the live view to use observation {msg.action_index}", poll=0.5)

    def live_view_status(self) -> dict[str, str]:
        for arr in reversed(list(self.diagnostics.messages)):
            for s in arr.status:
                if s.name == "lingbot_va/live_view":
                    return {kv.key: kv.value for kv in s.values}
        return {}


def _same_header(a, b) -> bool:
    return stamp_to_ns(a.header.stamp) == stamp_to_ns(b.header.stamp) and a.header.frame_id == b.header.frame_id


def _by_stamp(inbox, info) -> object:
    """The one image published with the info's header (each topic arrives on its own: wait for it)."""
    hits = wait_until(lambda: [m for m in list(inbox.messages) if _same_header(m, info)], DEADLINE,
                      "the image beside its info")
    assert len(hits) == 1, f"{len(hits)} images share the info's header"
    return hits[0]


def test_one_predicted_frame_per_chunk_then_prediction_vs_real(probe, live_view):
    p = Probe(probe)
    p.ready(live_view)
    initial = p.observation(-1)
    p.deliver_observation(initial, lambda: p.live_view_status().get("observations", "0") != "0")
    chunks = 4
    for chunk in range(chunks):
        sent = p.publish_latents(chunk)
        (info,) = p.frames_info.wait_for(lambda m, c=chunk: m.chunk_index == c, 1, DEADLINE, f"frames of chunk {chunk}")
        assert info.episode_id == EPISODE and info.decoder == "vae_first_frame"
        assert info.action_index == sent.frame_action_indices[-1]           # the chunk's furthest prediction
        assert info.real_action_index == -1                                  # the newest real key frame shown
        assert stamp_to_ns(info.chunk_stamp) == stamp_to_ns(sent.header.stamp)
        assert info.decode_latency > 0 and info.publish_delay > 0 and info.pixel_mse == -1
    # exactly one predicted-frame message per chunk, each chunk once, in order
    assert [m.chunk_index for m in p.frames_info.messages] == list(range(chunks))

    # the image beside each info: same header; the JPEG decodes to the same picture within JPEG tolerance
    for info in list(p.frames_info.messages):
        rgb = image_msg_to_rgb(_by_stamp(p.frames, info))
        jpeg = _by_stamp(p.frames_jpeg, info)
        assert "jpeg" in jpeg.format
        back = cv2.cvtColor(cv2.imdecode(np.frombuffer(bytes(jpeg.data), np.uint8), cv2.IMREAD_COLOR),
                            cv2.COLOR_BGR2RGB)
        assert back.shape == rgb.shape
        # [real | predicted] per camera: wider than two head frames, taller than the three rows
        assert rgb.shape[1] > 2 * EMB.image_sizes["cam_high"][1] and rgb.shape[0] > 2 * EMB.image_sizes["cam_high"][0]
        assert psnr(float(((back.astype(float) - rgb) ** 2).mean())) > JPEG_PSNR_DB
        assert bytes(jpeg.data) == encode_jpeg(rgb, JPEG_QUALITY)             # exactly this image's JPEG

    # the arm reaches the key frame chunk 1 predicted: predicted k beside real k, both ways round
    target = frame_action_indices(1, EMB.first_chunk_actions, EMB.frame_chunk_size, EMB.action_per_frame)[0]
    real = p.observation(target)
    p.deliver_observation(real, lambda: any(m.action_index == target for m in list(p.pvr_info.messages)))
    (pair,) = [m for m in list(p.pvr_info.messages) if m.action_index == target]
    assert (pair.chunk_index, pair.real_action_index, pair.episode_id) == (1, target, EPISODE)
    assert pair.pixel_mse > 0
    view = image_msg_to_rgb(_by_stamp(p.pvr, pair))
    jpeg = _by_stamp(p.pvr_jpeg, pair)
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(bytes(jpeg.data), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert psnr(float(((back.astype(float) - view) ** 2).mean())) > JPEG_PSNR_DB
    # the real key frame is shown as it was sent (left column, first camera row below the caption and its label)
    head = np.asarray(real.images[0].data, np.uint8).reshape(*EMB.image_sizes["cam_high"], 3)
    h, w = EMB.image_sizes["cam_high"]
    np.testing.assert_array_equal(view[36:36 + h, :w], head)

    # a newer predicted-frames view now shows that real key frame as the newest one
    p.publish_latents(chunks)
    (info,) = p.frames_info.wait_for(lambda m: m.chunk_index == chunks, 1, DEADLINE, "frames of the next chunk")
    assert info.real_action_index == target


def test_latents_of_another_layout_are_rejected_with_the_reason(probe, live_view):
    p = Probe(probe)
    p.ready(live_view)
    p.publish_latents(0, cameras=("cam_high", "cam_left_wrist"))
    wait_until(lambda: p.live_view_status().get("latents_rejected") == "1", DEADLINE, "the rejection in diagnostics",
               on_timeout=lambda: str(p.live_view_status()))
    status = p.live_view_status()
    assert "are not this live view's" in status["last_problem"] and "embodiment" in status["last_problem"]
    assert live_view.alive()
    p.publish_latents(0)                                 # and it keeps serving good chunks
    p.frames_info.wait_for(lambda m: m.chunk_index == 0, 1, DEADLINE, "frames of a good chunk")
