"""rclpy executors under a recorder's load: CPU and messages kept, single- vs multi-threaded, side by side.

Why the nodes spin single-threaded (lingbot_va_ros/nodes/runtime.py ``make_executor``): the real recorder node
(shipped config/recorder.yaml, continuous mode) records what a publisher process sends - three 256x320 RGB cameras
at 15 Hz and /joint_states at 100 Hz (best effort, like the sim), /lingbot_va/command at 50 Hz (reliable) - once
spun by rclpy's SingleThreadedExecutor (the shipped choice) and once by a 4-thread MultiThreadedExecutor (the
previous one), alternating, ``--rounds`` times. Reported per run: the recorder's CPU (user + system over the
measurement window, % of one core) and how many of the published messages its bag holds.
Writes docs/benchmarks/ros_executor.md.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import host  # benchmarks/host.py, next to this script

ROOT = Path(__file__).resolve().parents[1]

PUBLISHER = textwrap.dedent("""
    import json, sys, time
    import numpy as np, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState
    rclpy.init()
    node = rclpy.create_node("executor_bench_load")
    best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
    cams = [node.create_publisher(Image, f"/sim_arm/{c}/image_raw", best_effort)
            for c in ("cam_high", "cam_left_wrist", "cam_right_wrist")]
    joints = node.create_publisher(JointState, "/joint_states", best_effort)
    command = node.create_publisher(JointState, "/lingbot_va/command", QoSProfile(depth=100,
                                    reliability=ReliabilityPolicy.RELIABLE))
    image = Image(height=256, width=320, encoding="rgb8", step=960,
                  data=np.random.default_rng(0).integers(0, 255, 256 * 320 * 3, dtype=np.uint8).tobytes())
    deadline = time.monotonic() + float(sys.argv[1])
    sent = {"joints": 0, "command": 0, "images": 0}
    k, t_next = 0, time.monotonic()
    while time.monotonic() < deadline:
        k += 1
        msg = JointState(name=[f"joint{i}" for i in range(14)], position=[0.1] * 14)
        joints.publish(msg); sent["joints"] += 1
        if k % 2 == 0:
            command.publish(msg); sent["command"] += 1
        if k % 7 == 0:
            for pub in cams:
                pub.publish(image); sent["images"] += 1
        t_next += 0.01
        time.sleep(max(0.0, t_next - time.monotonic()))
    print(json.dumps(sent), flush=True)
""")

RECORDER = ("import sys; from lingbot_va_ros.nodes import recorder, runtime; "
            "raise SystemExit(runtime.run_node(recorder.RecorderNode, num_threads=int(sys.argv[1])))")


def run_once(threads: int, seconds: float, domain: int, tmp: Path) -> dict:
    import psutil

    from lingbot_va_ros.common.paths import config_path
    from lingbot_va_ros.recording.bag_reader import find_bags, open_bag
    from lingbot_va_ros.testing.ros_harness import ros_env

    out = tmp / f"bags_{threads}_{time.monotonic_ns()}"
    env = ros_env(domain, tmp)
    rec = subprocess.Popen([sys.executable, "-c", RECORDER, str(threads), "--ros-args", "--params-file",
                            str(config_path("recorder.yaml")), "-p", f"recording_dir:={out}", "-p", "mode:=continuous",
                            "-p", "auto_episodes:=false"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3.0)               # the recorder's start-up (imports, discovery) is not part of the measurement
    pub = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(seconds)], env=env, stdout=subprocess.PIPE, text=True)
    proc = psutil.Process(rec.pid)
    time.sleep(2.0)               # discovery of the new publisher, subscriptions created
    c0 = proc.cpu_times()
    t0 = time.monotonic()
    time.sleep(max(1.0, seconds - 4.0))
    c1 = proc.cpu_times()
    cpu = 100.0 * (c1.user + c1.system - c0.user - c0.system) / (time.monotonic() - t0)
    sent = __import__("json").loads(pub.communicate(timeout=60)[0])
    time.sleep(2.0)               # what is still in flight reaches the recorder
    rec.send_signal(2)
    rec.wait(timeout=60)
    counts: dict[str, int] = {}
    for bag in find_bags([out]):
        with open_bag(bag) as reader:
            for conn in reader.connections:
                counts[conn.topic] = counts.get(conn.topic, 0) + conn.msgcount
    images = sum(v for k, v in counts.items() if k.endswith("image_raw"))
    return {"threads": threads, "cpu_pct": cpu, "sent": sum(sent.values()),
            "kept": images + counts.get("/joint_states", 0) + counts.get("/lingbot_va/command", 0),
            "command_kept": counts.get("/lingbot_va/command", 0), "command_sent": sent["command"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "ros_executor.md"))
    args = ap.parse_args()

    from lingbot_va_ros.testing.faults import free_ros_domain

    rows = []
    with free_ros_domain() as domain, tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for threads in (1, 4):
                rows.append(run_once(threads, args.seconds, domain, Path(tmp)))
                print(rows[-1], flush=True)

    def med(threads: int, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["threads"] == threads)

    lines = ["## rclpy executors under the recorder's load", "",
             f"`python benchmarks/bench_ros_executor.py --seconds {args.seconds:g} --rounds {args.rounds}` on "
             f"{host.describe()}. The real recorder node records three 256x320 RGB cameras at 15 Hz, /joint_states "
             "at 100 Hz and /lingbot_va/command at 50 Hz from a publisher process; the two executors alternate. "
             "CPU: the recorder's user + system time over the window, % of one core; kept: messages in its bag of "
             "those published.", "",
             "| run | executor | recorder CPU % | messages kept / sent | reliable commands kept / sent |",
             "|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        kind = "SingleThreadedExecutor" if r["threads"] == 1 else f"MultiThreadedExecutor({r['threads']})"
        lines.append(f"| {i} | {kind} | {r['cpu_pct']:.0f} | {r['kept']} / {r['sent']} | "
                     f"{r['command_kept']} / {r['command_sent']} |")
    lines += ["", f"Median recorder CPU: single-threaded {med(1, 'cpu_pct'):.0f} %, multi-threaded "
                  f"{med(4, 'cpu_pct'):.0f} % ({med(4, 'cpu_pct') / max(med(1, 'cpu_pct'), 0.1):.1f}x). Every node "
                  "whose callbacks do not block therefore spins single-threaded; the inference node keeps a "
                  "multi-threaded executor (its RunEpisode callback blocks for the whole episode).", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
