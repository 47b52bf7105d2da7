"""Shared fixtures of the training tests: the tiny checkpoint and small synthetic demo datasets.

The synthetic episodes are real DemoEpisodes for the demo_sim embodiment: smooth joint trajectories and camera
images whose content follows the arm state (a colour field shifted by the joints), so the video and the
actions are correlated the way a world model can learn. Pure unit tests use them; the end-to-end test uses
episodes recorded in the simulator.
"""
from __future__ import annotations

import numpy as np
import pytest

from lingbot_va_ros.dataset.episode import DemoEpisode
from lingbot_va_ros.model.embodiment import load_embodiment


def synthetic_episode(index: int, rows: int, seed: int = 0, task: str = "pick up the red block",
                      embodiment: str = "demo_sim", image_scale: int = 1) -> DemoEpisode:
    emb = load_embodiment(embodiment)
    rng = np.random.default_rng(seed * 1000 + index)
    t = np.arange(rows + 1, dtype=np.float64) / emb.control_hz
    c = emb.num_channels
    phase, freq = rng.uniform(0, 2 * np.pi, c), rng.uniform(0.3, 0.8, c)
    lo = np.array([emb.q01[i] for i in emb.used_action_channel_ids])
    hi = np.array([emb.q99[i] for i in emb.used_action_channel_ids])
    traj = lo + (hi - lo) * (0.5 + 0.4 * np.sin(2 * np.pi * freq * t[:, None] + phase))   # [T+1, C]
    states = traj[:-1].astype(np.float32)
    actions = traj[1:].astype(np.float32)                 # action t = the next state
    frames = {}
    for cam in emb.cameras:
        h, w = cam.height // image_scale, cam.width // image_scale
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        imgs = np.empty((rows, h, w, 3), dtype=np.uint8)
        for r in range(rows):
            s = states[r]
            for ch in range(3):
                v = 127 + 100 * np.sin(xx / w * 6.0 + 4 * s[ch] + ch) * np.cos(yy / h * 4.0 + 3 * s[ch + 7])
                imgs[r, :, :, ch] = np.clip(v, 0, 255).astype(np.uint8)
        frames[cam.name] = imgs
    return DemoEpisode(episode_index=index, task=task, fps=emb.control_hz, camera_frames=frames, actions=actions,
                       channel_names=tuple(emb.channel_names), action_space=emb.action_space, states=states,
                       state_names=tuple(f"q{i}" for i in range(c)), timestamps=np.arange(rows) / emb.control_hz,
                       embodiment=emb.name)


@pytest.fixture(scope="session")
def tiny_base():
    from lingbot_va_ros.model.tiny_checkpoint import shared_tiny_checkpoint

    return shared_tiny_checkpoint(0, "demo_sim")


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """A LeRobot dataset of 3 synthetic demo_sim episodes of 49 rows (4 latent frames each)."""
    from lingbot_va_ros.dataset.lerobot_format import write_lerobot_dataset

    root = tmp_path_factory.mktemp("synthetic_lerobot") / "data"
    emb = load_embodiment("demo_sim")
    episodes = [synthetic_episode(i, 49, task=["pick up the red block", "open the drawer"][i % 2]) for i in range(3)]
    write_lerobot_dataset(root, episodes, used_action_channel_ids=emb.used_action_channel_ids)
    return root
