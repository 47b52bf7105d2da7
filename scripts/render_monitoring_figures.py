#!/usr/bin/env python3
"""Render the monitoring figures of docs/monitoring.md from a recorded episode (real frames, not mock-ups).

    python scripts/render_monitoring_figures.py BAG_DIR docs/images

Writes live_view.png (the newest /lingbot_va/predicted_frames image: real key frame beside the predicted one,
per camera, what rqt_image_view shows) and commanded_vs_measured.png (what rqt_plot shows: /lingbot_va/command
against /joint_states for the first joints of the left arm).
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lingbot_va_ros.common.conversions import image_msg_to_rgb  # noqa: E402
from lingbot_va_ros.recording.bag_reader import iter_messages, open_bag  # noqa: E402


def main(bag: str, out: str) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames, command, measured = [], [], []
    with open_bag(bag) as reader:
        for topic, t, msg in iter_messages(reader, ["/lingbot_va/predicted_frames", "/lingbot_va/command",
                                                    "/joint_states"]):
            if topic == "/lingbot_va/predicted_frames":
                frames.append(msg)
            elif topic == "/lingbot_va/command":
                command.append((t, dict(zip(msg.name, msg.position))))
            else:
                measured.append((t, dict(zip(msg.name, msg.position))))
    if frames:
        plt.imsave(out_dir / "live_view.png", image_msg_to_rgb(frames[-1]))
        print(f"live_view.png from {len(frames)} predicted-frame messages")
    if command:
        t0 = command[0][0]
        fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True)
        for ax, joint in zip(axes, ("left_joint1", "left_joint2", "left_joint3")):
            tc = np.array([(t - t0) * 1e-9 for t, _ in command if joint in _])
            qc = np.array([q[joint] for _, q in command if joint in q])
            tm = np.array([(t - t0) * 1e-9 for t, _ in measured if joint in _])
            qm = np.array([q[joint] for _, q in measured if joint in q])
            ax.plot(tc, qc, label="/lingbot_va/command", lw=1.2)
            ax.plot(tm, qm, label="/joint_states", lw=1.0, alpha=0.8)
            ax.set_ylabel(f"{joint} [rad]")
        axes[0].legend(loc="upper right", fontsize=8)
        axes[-1].set_xlabel("time since first command [s]")
        fig.suptitle("commanded vs measured (simulated arm, tiny random checkpoint)")
        fig.tight_layout()
        fig.savefig(out_dir / "commanded_vs_measured.png", dpi=110)
        print(f"commanded_vs_measured.png from {len(command)} commands, {len(measured)} joint states")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
