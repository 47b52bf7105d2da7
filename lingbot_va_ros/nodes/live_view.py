"""Live-view node: decodes each chunk's predicted latents into images, in its own (niced) process.

The inference node only copies each chunk's predicted latents into a PredictedLatents message; this node owns a
VAE decoder loaded from the same checkpoint's vae/ and the same embodiment layout, so decoding never competes
with the model for its thread and never delays a chunk. Per chunk it publishes

- /lingbot_va/predicted_frames (+ /compressed, + _info): the newest real key frame beside the chunk's prediction;
- /lingbot_va/prediction_vs_real (+ /compressed, + _info): predicted key frame k beside the real key frame k as
  soon as both exist (the real one arrives on /lingbot_va/observation when the arm gets there).

Threads: subscription callbacks only validate and store; one decode thread takes the newest waiting chunk
(older waiting ones are skipped, never queued) at most ``max_rate_hz`` times per second.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from lingbot_va_ros.common import qos, topics
from lingbot_va_ros.common.conversions import MessageError, image_msg_to_rgb, ns_to_stamp, rgb_to_image_msg
from lingbot_va_ros.live_view.compose import JPEG_FORMAT, compose_side_by_side, encode_jpeg, pixel_mse, psnr
from lingbot_va_ros.live_view.latents import ChunkLatents, chunk_latents_from_msg
from lingbot_va_ros.live_view.matching import KeyFrame, LatestSlot, Pair, Prediction, PredictionMatcher
from lingbot_va_ros.live_view.params import LiveViewParams
from lingbot_va_ros.msg import Observation, PredictedFrameInfo, PredictedLatents
from lingbot_va_ros.nodes.runtime import node_options, run_node

FRAME_ID = "lingbot_va_live_view"
NO_REAL = -2                                  # PredictedFrameInfo.real_action_index: no real key frame yet
# Images and their info: reliable so every subscriber matches (rqt_image_view, Foxglove, the recorder), keep-last
# so a slow subscriber can never hold this node back.
IMAGES = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)


class LiveViewNode(Node):
    def __init__(self) -> None:
        super().__init__("lingbot_va_live_view", **node_options())
        self.params = p = LiveViewParams.from_node(self)
        if not p.checkpoint:
            raise ValueError("parameter 'checkpoint' is required: the inference node's checkpoint folder (its vae/ "
                             "decodes the predicted latents)")
        if p.nice:
            os.nice(p.nice)
        import torch

        if p.torch_threads:
            torch.set_num_threads(p.torch_threads)
        from lingbot_va_ros.live_view.decoders import build_decoder
        from lingbot_va_ros.model.backend import resolve_device, resolve_dtype
        from lingbot_va_ros.model.embodiment import load_embodiment
        from lingbot_va_ros.model.loading import load_vae, resolve_checkpoint

        t = time.perf_counter()
        embodiment = load_embodiment(p.embodiment)
        self.layout = embodiment.camera_layout
        self.cameras = tuple(embodiment.camera_names)
        paths = resolve_checkpoint(p.checkpoint, p.base_checkpoint or None)
        device = resolve_device(p.device)
        vae = load_vae(paths.vae, device, resolve_dtype(p.dtype, device))
        cache = p.preview_cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "lingbot_va_ros",
                                                    "linear_preview")
        self.decoder = build_decoder(p.decoder, vae, self.layout, vae_dir=paths.vae, cache_dir=cache,
                                     calibration_clips=p.preview_calibration_clips)
        self._torch = torch
        self.get_logger().info(f"decoder '{self.decoder.name}' on {device} ready in {time.perf_counter() - t:.1f}s "
                               f"(cameras {list(self.cameras)}, frames: {p.frames}, niceness +{p.nice})")

        self.slot: LatestSlot[ChunkLatents] = LatestSlot()
        self.matcher = PredictionMatcher(p.keyframe_history, p.pending_predictions)
        self._lock = threading.Lock()
        self._stats = {"chunks_received": 0, "chunks_decoded": 0, "latents_rejected": 0, "decode_errors": 0,
                       "observations": 0, "observations_rejected": 0, "predicted_frames": 0, "prediction_vs_real": 0}
        self._decode_s: list[float] = []
        self._delay_s: list[float] = []
        self._last_problem = ""
        self._last_chunk = ""

        self.frames_pub = self.create_publisher(Image, topics.PREDICTED_FRAMES, IMAGES)
        self.frames_jpeg_pub = self.create_publisher(CompressedImage, topics.PREDICTED_FRAMES_COMPRESSED, IMAGES)
        self.frames_info_pub = self.create_publisher(PredictedFrameInfo, topics.PREDICTED_FRAMES_INFO, qos.RELIABLE)
        self.pvr_pub = self.create_publisher(Image, topics.PREDICTION_VS_REAL, IMAGES)
        self.pvr_jpeg_pub = self.create_publisher(CompressedImage, topics.PREDICTION_VS_REAL_COMPRESSED, IMAGES)
        self.pvr_info_pub = self.create_publisher(PredictedFrameInfo, topics.PREDICTION_VS_REAL_INFO, qos.RELIABLE)
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, qos.RELIABLE)
        self.create_subscription(PredictedLatents, topics.PREDICTED_LATENTS, self._on_latents, qos.RELIABLE)
        # best effort: the camera ingest publisher never waits for (or resends to) a starved live view
        self.create_subscription(Observation, topics.OBSERVATION, self._on_observation, qos.SENSOR_DATA)
        self.create_timer(1.0 / p.diagnostics_hz, self._diagnostics)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._decode_loop, name="live_view_decode", daemon=True)
        self._worker.start()

    # -- inputs (never decode here) ----------------------------------------------------------------------
    def _problem(self, counter: str, reason: str) -> None:
        with self._lock:
            self._stats[counter] += 1
            self._last_problem = reason
        self.get_logger().warning(reason, throttle_duration_sec=5.0)

    def _on_latents(self, msg: PredictedLatents) -> None:
        try:
            chunk = chunk_latents_from_msg(msg)
            self._check_layout(chunk)
        except (MessageError, ValueError) as exc:
            self._problem("latents_rejected", f"latents {msg.episode_id}#{msg.chunk_index}: {exc}")
            return
        with self._lock:
            self._stats["chunks_received"] += 1
        self.slot.put(chunk)

    def _check_layout(self, chunk: ChunkLatents) -> None:
        if chunk.camera_names != self.cameras:
            raise ValueError(f"cameras {list(chunk.camera_names)} are not this live view's {list(self.cameras)} "
                             "(is it configured with the inference node's embodiment?)")
        z, _, h, w = chunk.latents.shape
        want = (self.decoder.z_dim, self.layout.latent_height, self.layout.latent_width)
        if (z, h, w) != want:
            raise ValueError(f"latent canvas [z={z}, {h}x{w}] does not fit this VAE and camera layout "
                             f"[z={want[0]}, {want[1]}x{want[2]}]")
        if not chunk.predicted_frames():
            raise ValueError("no predicted latent frame (every frame is marked as conditioning)")

    def _on_observation(self, msg: Observation) -> None:
        try:
            if list(msg.camera_names) != list(self.cameras) or len(msg.images) != len(self.cameras):
                raise MessageError(f"cameras {list(msg.camera_names)} with {len(msg.images)} images, expected "
                                   f"{list(self.cameras)}")
            images = {cam: image_msg_to_rgb(img) for cam, img in zip(msg.camera_names, msg.images)}
        except MessageError as exc:
            self._problem("observations_rejected", f"observation {msg.episode_id}#{msg.action_index}: {exc}")
            return
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        pairs = self.matcher.add_keyframe(KeyFrame(msg.episode_id, int(msg.action_index), images, stamp))
        with self._lock:
            self._stats["observations"] += 1           # counted once stored: a diagnostic reader may rely on it
        for pair in pairs:
            self._publish_pair(pair)

    # -- decoding ----------------------------------------------------------------------------------------------
    def _decode_loop(self) -> None:
        next_start = 0.0
        while not self._stop.is_set():
            wait = next_start - time.monotonic()
            if wait > 0:            # rate limit first, then take: whatever is newest by then is decoded
                self._stop.wait(wait)
                continue
            chunk = self.slot.take(timeout=0.2)
            if chunk is None:
                continue
            next_start = time.monotonic() + 1.0 / self.params.max_rate_hz
            try:
                self._decode_and_publish(chunk)
            except Exception as exc:  # noqa: BLE001 - a bad chunk must not end the live view
                if self._stop.is_set():
                    break            # shutting down: the publishers may already be gone
                self._problem("decode_errors", f"decoding chunk {chunk.episode_id}#{chunk.chunk_index} failed: "
                                               f"{type(exc).__name__}: {exc}")

    def _decode_and_publish(self, chunk: ChunkLatents) -> None:
        frames = chunk.predicted_frames()
        if self.params.frames == "last":
            frames = frames[-1:]
        t = time.perf_counter()
        decoded = self.decoder.decode(self._torch.from_numpy(chunk.latents), frames)
        decode_s = time.perf_counter() - t
        predictions = [Prediction(chunk.episode_id, chunk.chunk_index, chunk.frame_action_indices[j], images,
                                  {"chunk_stamp_ns": chunk.stamp_ns, "decode_s": decode_s})
                       for j, images in zip(frames, decoded)]
        furthest = predictions[-1]
        real = self.matcher.latest_keyframe(chunk.episode_id)
        real_index = real.action_index if real is not None else NO_REAL
        view = compose_side_by_side(
            real.images if real is not None else None, furthest.images, self.cameras,
            f"real @{real_index}" if real is not None else "real (none yet)",
            f"pred @{furthest.action_index}",
            f"{chunk.episode_id} chunk {chunk.chunk_index}: key frame after action {furthest.action_index} as "
            f"predicted | newest real key frame ({self.decoder.name})")
        delay = self._publish(view, self.frames_pub, self.frames_jpeg_pub, self.frames_info_pub, furthest,
                              real_index, -1.0)
        with self._lock:
            self._stats["chunks_decoded"] += 1
            self._stats["predicted_frames"] += 1
            self._decode_s = (self._decode_s + [decode_s])[-50:]
            self._delay_s = (self._delay_s + [delay])[-50:]
            self._last_chunk = f"{chunk.episode_id}#{chunk.chunk_index}"
        for prediction in predictions:
            for pair in self.matcher.add_prediction(prediction):
                self._publish_pair(pair)

    def _publish_pair(self, pair: Pair) -> None:
        pred, real = pair.prediction, pair.real
        mse = pixel_mse(pred.images, real.images, self.cameras)
        view = compose_side_by_side(
            real.images, pred.images, self.cameras, f"real @{real.action_index}", f"pred c{pred.chunk_index}",
            f"{pred.episode_id} chunk {pred.chunk_index}: key frame after action {pred.action_index}, predicted vs "
            f"real: pixel MSE {mse:.0f} ({psnr(mse):.1f} dB)")
        self._publish(view, self.pvr_pub, self.pvr_jpeg_pub, self.pvr_info_pub, pred, real.action_index, mse)
        with self._lock:
            self._stats["prediction_vs_real"] += 1

    def _publish(self, view: np.ndarray, raw_pub, jpeg_pub, info_pub, pred: Prediction, real_index: int,
                 mse: float) -> float:
        """The image, its JPEG and its info with one shared header; returns the delay since the chunk's stamp."""
        now_ns = self.get_clock().now().nanoseconds
        image = rgb_to_image_msg(view, now_ns, FRAME_ID)
        jpeg = CompressedImage(header=image.header, format=JPEG_FORMAT)
        jpeg.data = encode_jpeg(view, self.params.jpeg_quality)
        delay = (now_ns - pred.meta["chunk_stamp_ns"]) / 1e9
        info = PredictedFrameInfo(header=image.header, episode_id=pred.episode_id, chunk_index=pred.chunk_index,
                                  action_index=pred.action_index, real_action_index=int(real_index),
                                  chunk_stamp=ns_to_stamp(pred.meta["chunk_stamp_ns"]),
                                  decode_latency=float(pred.meta["decode_s"]), publish_delay=float(delay),
                                  decoder=self.decoder.name, pixel_mse=float(mse))
        raw_pub.publish(image)
        jpeg_pub.publish(jpeg)
        info_pub.publish(info)
        return delay

    # -- diagnostics ---------------------------------------------------------------------------------------------
    def _diagnostics(self) -> None:
        with self._lock:
            values = {k: str(v) for k, v in self._stats.items()}
            decode, delay = list(self._decode_s), list(self._delay_s)
            values["last_problem"] = self._last_problem
            values["last_chunk"] = self._last_chunk
        values.update({"decoder": self.decoder.name, "frames": self.params.frames,
                       "chunks_skipped": str(self.slot.replaced), "pending_predictions": str(self.matcher.pending),
                       "predictions_never_matched": str(self.matcher.dropped_predictions)})
        if decode:
            values["decode_latency_median_ms"] = f"{1e3 * float(np.median(decode)):.1f}"
            values["publish_delay_median_ms"] = f"{1e3 * float(np.median(delay)):.1f}"
            values["publish_delay_max_ms"] = f"{1e3 * max(delay):.1f}"
        problems = int(values["latents_rejected"]) + int(values["decode_errors"])
        status = DiagnosticStatus(level=DiagnosticStatus.WARN if problems else DiagnosticStatus.OK,
                                  name="lingbot_va/live_view", hardware_id="live_view",
                                  message=self._last_problem if problems else "ok",
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5.0)       # it wakes within its 0.2 s take timeout


def main(argv: list[str] | None = None) -> None:
    raise SystemExit(run_node(LiveViewNode, argv=argv))


if __name__ == "__main__":
    main()
