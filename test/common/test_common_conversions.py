from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from lingbot_va_ros.common.conversions import (MessageError, compressed_msg_to_rgb, image_msg_to_rgb, ns_to_stamp,
                                               pack_matrix, rgb_to_image_msg, stamp_to_ns, unpack_matrix)


def test_matrix_round_trip_and_validation():
    m = np.random.default_rng(0).normal(size=(32, 14)).astype(np.float32)
    shape, flat = pack_matrix(m)
    np.testing.assert_array_equal(unpack_matrix(shape, flat), m)
    with pytest.raises(MessageError, match="needs 448 values"):
        unpack_matrix([32, 14], flat[:-1])
    bad = m.copy(); bad[3, 5] = np.nan
    with pytest.raises(MessageError, match="row 3, column 5"):
        unpack_matrix(*pack_matrix(bad))
    with pytest.raises(MessageError, match="empty"):
        unpack_matrix([0, 14], [])
    with pytest.raises(MessageError, match="2 entries"):
        unpack_matrix([448], flat)


def test_stamp_round_trip():
    ns = 1_700_000_000_987_654_321
    assert stamp_to_ns(ns_to_stamp(ns)) == ns


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_raw_image_encodings_give_rgb(encoding):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    if encoding == "mono8":
        rgb = np.repeat(rgb[:, :, :1], 3, axis=2)
    conv = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
            "bgra8": np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 7, np.uint8)]), "mono8": rgb[:, :, 0]}[encoding]
    conv = np.ascontiguousarray(conv)
    msg = Image(height=6, width=10, encoding=encoding, step=conv.strides[0])
    msg.data = array.array("B", conv.tobytes())
    np.testing.assert_array_equal(image_msg_to_rgb(msg), rgb)


def test_padded_rows_and_short_buffers():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    padded = np.zeros((4, 20), np.uint8); padded[:, :15] = rgb.reshape(4, 15)
    msg = Image(height=4, width=5, encoding="rgb8", step=20); msg.data = array.array("B", padded.tobytes())
    np.testing.assert_array_equal(image_msg_to_rgb(msg), rgb)
    msg.data = array.array("B", padded.tobytes()[:30])
    with pytest.raises(MessageError, match="needs 80"):
        image_msg_to_rgb(msg)
    with pytest.raises(MessageError, match="unsupported image encoding"):
        image_msg_to_rgb(Image(height=1, width=1, encoding="32FC1", step=4))


def test_rgb_message_and_jpeg_png():
    rgb = np.random.default_rng(2).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_msg_to_rgb(rgb_to_image_msg(rgb, 5)), rgb)
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    np.testing.assert_array_equal(compressed_msg_to_rgb(CompressedImage(format="png", data=png.tobytes())), rgb)
    with pytest.raises(MessageError, match="cannot decode"):
        compressed_msg_to_rgb(CompressedImage(format="jpeg", data=b"not an image"))
