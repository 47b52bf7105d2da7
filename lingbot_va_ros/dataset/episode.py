"""One demonstration episode in memory: the contract between dataset export/reading and post-training.

Row convention (LeRobot's, and the one the model's timeline maps onto): row ``t`` holds what the robot saw
*before* executing action ``t`` (camera frames, joint state) and the action executed at tick ``t``. The model's
key frame "after action i" (``action_index = i``) is therefore the image of row ``i + 1``, and the initial
observation (``action_index = -1``) is row 0. Rows are at the embodiment's control rate (``fps``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np


@dataclass
class DemoEpisode:
    episode_index: int
    task: str                                  # the prompt / instruction
    fps: float                                 # rows per second (the embodiment's control rate)
    camera_frames: Mapping[str, np.ndarray]    # model camera role -> uint8 RGB [T, h, w, 3], one image per row
    actions: np.ndarray                        # float32 [T, C], the embodiment's action space, channel_names order
    channel_names: tuple[str, ...]             # one per action column (EmbodimentConfig.channel_names)
    action_space: str                          # "joint" | "ee_relative" (EmbodimentConfig.action_space)
    states: np.ndarray                         # float32 [T, S] measured joint positions before action t
    state_names: tuple[str, ...]               # one per state column (joint names)
    timestamps: np.ndarray                     # float64 [T] seconds from the episode's first row
    embodiment: str = ""                       # embodiment name the actions are expressed for
    metadata: dict = field(default_factory=dict)   # source bag, outcome, score, mode, checkpoint hash...
    # Optional (added by the exporter): float64 [T], when row t's action was really commanded, in seconds since
    # row 0. ``timestamps`` is the nominal row time t / fps (LeRobot's ``timestamp``); holds and control jitter
    # show up only here.
    recorded_time_s: np.ndarray | None = None

    def __post_init__(self) -> None:
        problems = []
        t = int(np.asarray(self.actions).shape[0]) if np.ndim(self.actions) == 2 else -1
        if t <= 0:
            problems.append(f"actions must be a non-empty 2-D [T, C] array, got shape {np.shape(self.actions)}")
        else:
            if self.actions.shape[1] != len(self.channel_names):
                problems.append(f"actions have {self.actions.shape[1]} columns but {len(self.channel_names)} "
                                f"channel names")
            if not np.isfinite(self.actions).all():
                problems.append(f"actions contain {int((~np.isfinite(self.actions)).sum())} non-finite values")
            if np.shape(self.states)[:1] != (t,) or np.ndim(self.states) != 2:
                problems.append(f"states must be [T={t}, S], got shape {np.shape(self.states)}")
            elif self.states.shape[1] != len(self.state_names):
                problems.append(f"states have {self.states.shape[1]} columns but {len(self.state_names)} names")
            if np.shape(self.timestamps) != (t,):
                problems.append(f"timestamps must be [T={t}], got shape {np.shape(self.timestamps)}")
            if self.recorded_time_s is not None and np.shape(self.recorded_time_s) != (t,):
                problems.append(f"recorded_time_s must be [T={t}], got shape {np.shape(self.recorded_time_s)}")
            if not self.camera_frames:
                problems.append("no camera frames")
            for role, frames in self.camera_frames.items():
                if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != t or frames.shape[-1] != 3:
                    problems.append(f"camera {role!r}: expected uint8 [T={t}, h, w, 3], got {frames.dtype} "
                                    f"{tuple(frames.shape)}")
        if not self.fps > 0:
            problems.append(f"fps must be > 0, got {self.fps}")
        if problems:
            raise ValueError(f"episode {self.episode_index}: " + "; ".join(problems))

    @property
    def num_rows(self) -> int:
        return int(self.actions.shape[0])
