"""Embodiment YAMLs: values from the spec tables, strict validation with clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lingbot_va_ros.common.paths import config_path
from lingbot_va_ros.model.embodiment import EEF16_CHANNEL_IDS, available_embodiments, load_embodiment


def test_all_shipped_embodiments_load():
    names = available_embodiments()
    assert {"robotwin", "franka", "demo_sim"} <= set(names)
    for name in names:
        emb = load_embodiment(name)
        assert emb.name == name
        assert len(emb.channel_names) == emb.num_channels
        assert emb.world_model_kwargs()["latent_height"] == emb.latent_height


def test_robotwin_matches_the_reference_config():
    emb = load_embodiment("robotwin")
    assert emb.layout == "robotwin_tshape"
    assert emb.image_sizes == {"cam_high": (256, 320), "cam_left_wrist": (128, 160), "cam_right_wrist": (128, 160)}
    assert (emb.latent_height, emb.latent_width, emb.camera_layout.tokens_per_frame) == (24, 20, 120)
    assert (emb.frame_chunk_size, emb.action_per_frame, emb.attn_window) == (2, 16, 72)
    assert (emb.num_inference_steps, emb.action_num_inference_steps, emb.video_exec_step) == (25, 50, -1)
    assert (emb.snr_shift, emb.action_snr_shift, emb.guidance_scale, emb.action_guidance_scale) == (5, 1, 5, 1)
    assert emb.used_action_channel_ids == EEF16_CHANNEL_IDS and emb.action_space == "ee_relative"
    assert emb.control_hz == 50 and emb.chunk_seconds == pytest.approx(0.64)
    assert (emb.actions_per_chunk, emb.first_chunk_actions, emb.actions_per_keyframe) == (32, 16, 4)
    assert (emb.keyframes_per_chunk, emb.first_chunk_keyframes) == (8, 4)
    # spec §5.6: quaternion channels +-1, grippers 0..1, left x in [-0.062, 0.346]
    assert emb.q01[3:7] == [-1.0] * 4 and emb.q99[3:7] == [1.0] * 4
    assert (emb.q01[28], emb.q99[28], emb.q01[29], emb.q99[29]) == (0.0, 1.0, 0.0, 1.0)
    assert round(emb.q01[0], 3) == -0.062 and round(emb.q99[0], 3) == 0.346
    inverse = emb.inverse_used_action_channel_ids
    assert inverse[28] == 7 and inverse[29] == 15 and inverse[20] == 16


def test_franka_matches_the_reference_config():
    emb = load_embodiment("franka")
    assert emb.layout == "none" and set(emb.image_sizes.values()) == {(224, 320)}
    assert (emb.latent_height, emb.latent_width, emb.camera_layout.tokens_per_frame) == (14, 60, 210)
    assert (emb.frame_chunk_size, emb.action_per_frame, emb.attn_window) == (4, 20, 30)
    assert (emb.num_inference_steps, emb.action_num_inference_steps) == (5, 10)
    assert emb.action_space == "ee_relative"


def test_demo_sim_is_joint_space_and_cheap():
    emb = load_embodiment("demo_sim")
    assert emb.action_space == "joint"
    assert emb.used_action_channel_ids == [14, 15, 16, 17, 18, 19, 28, 21, 22, 23, 24, 25, 26, 29]
    assert emb.channel_names[6] == "left_gripper" and emb.channel_names[13] == "right_gripper"
    assert emb.image_sizes == load_embodiment("robotwin").image_sizes and emb.control_hz == 30
    assert emb.num_inference_steps <= 8 and emb.action_num_inference_steps <= 10


def test_demo_sim_band_stays_inside_the_urdf_limits():
    """demo_sim's q01/q99 are home -+ d/6 (d = home to the nearest URDF limit): six band-widths from home,
    where the tiny random model's outputs land, must stay inside the joint limits."""
    import xml.etree.ElementTree as ET

    from lingbot_va_ros.sim.params import HOME_POSITIONS

    urdf = config_path().parent / "urdf" / "bimanual_arm.urdf"
    limits = {j.get("name"): j.find("limit") for j in ET.parse(urdf).getroot().iter("joint")}
    emb = load_embodiment("demo_sim")
    for name, channel, home in zip(emb.channel_names, emb.used_action_channel_ids, HOME_POSITIONS):
        lim = limits.get(name)
        assert lim is not None, f"joint {name} missing from {urdf}"
        lower, upper = float(lim.get("lower")), float(lim.get("upper"))
        q01, q99 = emb.q01[channel], emb.q99[channel]
        assert (q01 + q99) / 2 == pytest.approx(home, abs=1e-3), name
        band = min(home - lower, upper - home) / 6
        assert (q99 - q01) / 2 == pytest.approx(band, abs=1e-3), name
        assert lower <= home - 6 * (q99 - q01) / 2 + 1e-3 and home + 6 * (q99 - q01) / 2 <= upper + 1e-3, name


def test_stats_comments_tell_users_to_paste_their_own():
    for name in ("robotwin", "franka"):
        text = config_path("embodiments", f"{name}.yaml").read_text()
        assert "paste" in text.lower() and "q01/q99" in text


def _write(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(config_path("embodiments", "robotwin.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("changes,match", [
    ({"bogus_key": 1}, "Extra inputs are not permitted"),
    ({"frame_chunk_size": "2"}, "valid integer"),
    ({"frame_chunk_size": 1}, "greater than or equal to 2"),
    ({"q99": [1.0] * 29}, "q99 must have 30 values"),
    ({"action_per_frame": 10}, "multiple of 4"),
    ({"used_action_channel_ids": [0, 1, 2, 3, 4, 5, 6, 28, 7, 8, 9, 10, 11, 12, 13, 30]}, "outside 0..29"),
    ({"channel_names": ["a"]}, "channel_names has 1 names"),
    ({"action_space": "ee_absolute"}, "ee_relative"),
    ({"cameras": [{"name": "cam_high", "height": 256, "width": 320},
                  {"name": "cam_left_wrist", "height": 256, "width": 320},
                  {"name": "cam_right_wrist", "height": 128, "width": 160}]}, "half the head size"),
    ({"video_exec_step": 0}, "video_exec_step"),
    ({"control_hz": None}, "control_hz"),
])
def test_invalid_yaml_is_rejected_with_a_clear_message(tmp_path, changes, match):
    path = _write(tmp_path, **changes)
    with pytest.raises(ValueError, match=match) as info:
        load_embodiment(str(path))
    assert str(path) in str(info.value)


def test_flat_statistics_on_a_used_channel_are_rejected(tmp_path):
    q99 = yaml.safe_load(config_path("embodiments", "robotwin.yaml").read_text())["q99"]
    q99[0] = -0.06172713458538055
    with pytest.raises(ValueError, match="q99 == q01"):
        load_embodiment(str(_write(tmp_path, q99=q99)))


def test_overrides_are_validated_too():
    assert load_embodiment("demo_sim", num_inference_steps=2).num_inference_steps == 2
    with pytest.raises(ValueError, match="num_inference_steps"):
        load_embodiment("demo_sim", num_inference_steps=0)


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(FileNotFoundError, match="robotwin"):
        load_embodiment("no_such_robot")


def test_world_model_config_accepts_the_embodiment():
    from lingbot_va_ros.model import world_model
    emb = load_embodiment("robotwin")
    cfg = world_model.WorldModelConfig(**emb.world_model_kwargs())
    assert cfg.video_tokens_per_chunk == 240 and cfg.action_tokens_per_chunk == 32
    assert cfg.cache_capacity == 36 * 272
    assert cfg.inverse_channel_ids() == emb.inverse_used_action_channel_ids
