"""Simulator output rates: joint states and camera frames per wall-clock second as a subscriber receives them.

The suite checks the sim's timeline (stamps one configured period of sim time apart, test/sim/test_sim_node.py);
how many messages per second a busy host actually delivers is this benchmark's figure. The sim node runs as its
own process with the shipped config/sim_arm.yaml; a probe subscribes with deep best-effort readers for
``--seconds`` per window, ``--windows`` times, with the host's load and hypervisor steal beside each window.
Writes docs/benchmarks/sim_rates.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import host  # benchmarks/host.py, next to this script

ROOT = Path(__file__).resolve().parents[1]
CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")


def _steal_jiffies() -> tuple[int, int]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    return (values[7] if len(values) > 7 else 0), sum(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "sim_rates.md"))
    args = ap.parse_args()

    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState

    from lingbot_va_ros.common.conversions import stamp_to_ns
    from lingbot_va_ros.common.paths import config_path
    from lingbot_va_ros.testing.faults import free_ros_domain
    from lingbot_va_ros.testing.ros_harness import NodeProcess, RosProbe, apply_ros_env_to_this_process, ros_env

    import yaml

    cfg = yaml.safe_load(config_path("sim_arm.yaml").read_text())["/**/sim_arm"]["ros__parameters"]
    rows = []
    with free_ros_domain() as domain, tempfile.TemporaryDirectory() as tmp:
        apply_ros_env_to_this_process(domain, tmp)
        node = NodeProcess.module("lingbot_va_ros.nodes.sim_arm", ros_env(domain, tmp), tmp,
                                  params_file=config_path("sim_arm.yaml")).start()
        probe = RosProbe(domain, "sim_rates_probe")
        try:
            deep = QoSProfile(depth=5000, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
            joints = probe.subscribe(JointState, "/joint_states", deep, keep=lambda m: stamp_to_ns(m.header.stamp))
            images = {c: probe.subscribe(Image, f"/sim_arm/{c}/image_raw", deep,
                                         keep=lambda m: stamp_to_ns(m.header.stamp)) for c in CAMERAS}
            images["cam_high"].wait_for(count=5, timeout=120, what="first frames")
            for _ in range(args.windows):
                for inbox in (joints, *images.values()):
                    inbox.clear()
                steal0, total0 = _steal_jiffies()
                time.sleep(args.seconds)          # the measurement window itself
                steal1, total1 = _steal_jiffies()
                spacing = np.diff(np.asarray(joints.messages, dtype=np.int64)) / 1e6
                rows.append({"joint_hz": len(joints.messages) / args.seconds,
                             **{f"{c}_hz": len(images[c].messages) / args.seconds for c in CAMERAS},
                             "joint_spacing_ms": float(np.median(spacing)) if spacing.size else float("nan"),
                             "load1": os.getloadavg()[0],
                             "steal_pct": 100.0 * (steal1 - steal0) / max(total1 - total0, 1)})
        finally:
            probe.close()
            node.stop()

    lines = ["## Simulator output rates", "",
             f"`python benchmarks/bench_sim_rates.py --seconds {args.seconds:g} --windows {args.windows}` on "
             f"{host.describe()}, shipped `config/sim_arm.yaml` (joint states {cfg['joint_state_rate_hz']:g} Hz, "
             f"cameras {cfg['camera_rate_hz']:g} Hz). Messages received per wall-clock second by a separate "
             "subscriber process; the joint-state spacing is in sim time (stamps), the property the suite checks.", "",
             "| window | /joint_states Hz | cam_high Hz | cam_left_wrist Hz | cam_right_wrist Hz | joint spacing "
             "(sim ms, median) | load (1 min) | steal % |", "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {r['joint_hz']:.1f} | {r['cam_high_hz']:.1f} | {r['cam_left_wrist_hz']:.1f} | "
                     f"{r['cam_right_wrist_hz']:.1f} | {r['joint_spacing_ms']:.1f} | {r['load1']:.1f} | "
                     f"{r['steal_pct']:.1f} |")
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    lines += ["", f"Median over windows: joint states {med['joint_hz']:.1f} Hz, cameras "
                  f"{med['cam_high_hz']:.1f} / {med['cam_left_wrist_hz']:.1f} / {med['cam_right_wrist_hz']:.1f} Hz.", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
