"""Make a small simulated demo dataset through the real graph (for tests and the training side).

    from lingbot_va_ros.dataset.testing import record_sim_demos
    result = record_sim_demos("/tmp/demos", n=3, seconds=0, seed=0)
    episodes = read_lerobot_dataset(result.dataset)

starts, each in its own process on an isolated ROS domain: the MuJoCo sim node (scene from ``seed``), the
recorder (one bag per episode under ``<out_dir>/bags``) and ``lingbot-va-record-demo`` with the scripted source
(episode ``k`` uses seed ``seed + k``: block, heights, speed). Then it exports the bags with
``lingbot-va-export`` (embodiment ``demo_sim``, lossless video) to ``<out_dir>/dataset``. ``seconds`` caps each
episode (0 = the whole pick-lift-place, ~5-6 s). Costs ~15 s of start-up plus the episodes on a 2-core machine.
"""
from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lingbot_va_ros.common.paths import share_dir

_LOCK_DIR = Path(tempfile.gettempdir()) / "lingbot_va_ros_test_domains"   # shared with test/conftest.py


@dataclass
class SimDemoResult:
    dataset: Path
    bags: list[Path]
    commands_log: Path | None = None


def _free_domain():
    _LOCK_DIR.mkdir(exist_ok=True)
    for domain in range(1 + os.getpid() % 101, 1 + os.getpid() % 101 + 101):
        domain = (domain - 1) % 101 + 1
        handle = open(_LOCK_DIR / f"{domain}.lock", "w")  # noqa: SIM115 - held while recording
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return domain, handle
        except BlockingIOError:
            handle.close()
    raise RuntimeError("no free ROS domain (1..101) on this host")


def record_sim_demos(out_dir: str | Path, n: int = 2, seconds: float = 0.0, seed: int = 0, *,
                     domain_id: int | None = None, prompt: str = "pick up the {object} and put it back",
                     camera_rate_hz: float = 15.0, timeout_s: float = 300.0, export: bool = True,
                     extra_probe=None, max_frame_age_s: float = 0.5) -> SimDemoResult:
    """Record ``n`` scripted demo episodes of at most ``seconds`` (0 = until done) and export them.

    Returns the dataset root (``<out_dir>/dataset``) and the bags. ``domain_id``: the ROS domain to use (default:
    a free one, locked for the duration). ``max_frame_age_s``: the exporter's camera freshness limit (tests on a loaded
    host raise it: the sim's renderer stalls there). Raises RuntimeError with the process logs' tails on failure.
    """
    from lingbot_va_ros.testing.ros_harness import NodeProcess, ros_env

    out_dir = Path(out_dir)
    bags_dir, logs = out_dir / "bags", out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    handle = None
    if domain_id is None:
        domain_id, handle = _free_domain()
    env = ros_env(domain_id, logs, {"LP_NUM_THREADS": "1"})
    config = share_dir() / "config"
    # parameter overrides after the params file: the later value wins
    sim = NodeProcess.module("lingbot_va_ros.nodes.sim_arm", env, logs, name="sim_arm", ros_args=[
        "--params-file", str(config / "sim_arm.yaml"), "-p", f"seed:={seed}", "-p",
        f"camera_rate_hz:={camera_rate_hz}", "-p", "stats_period_s:=0.0"])
    recorder = NodeProcess.module("lingbot_va_ros.nodes.recorder", env, logs, name="recorder", ros_args=[
        "--params-file", str(config / "recorder.yaml"), "-p", f"recording_dir:={bags_dir}",
        "-p", "auto_episodes:=false"])
    demo_args = ["--prompt", prompt, "--source", "scripted", "--episodes", str(n), "--seed", str(seed),
                 "--arm", "sim", "--embodiment", "demo_sim", "--wait-timeout", "120"]
    if seconds:
        demo_args += ["--duration", str(seconds)]
    demo = NodeProcess([sys.executable, "-m", "lingbot_va_ros.teleop.record_demo", *demo_args], env,
                       logs / "record_demo.log", name="record_demo")
    procs = [sim, recorder]
    try:
        for proc in procs:
            proc.start()
        if extra_probe is not None:
            extra_probe(domain_id)
        demo.start()
        try:
            code = demo.proc.wait(timeout=timeout_s)
        except Exception:
            code = None
        if code != 0:
            tails = "\n".join(f"--- {p.name}:\n{p.output()[-3000:]}" for p in (demo, sim, recorder))
            raise RuntimeError(f"lingbot-va-record-demo exited with {code}\n{tails}")
    finally:
        demo.stop()
        for proc in reversed(procs):
            proc.stop()
        if handle is not None:
            handle.close()
    from lingbot_va_ros.recording.bag_reader import find_bags

    bags = find_bags([bags_dir])
    dataset = out_dir / "dataset"
    if export:
        from lingbot_va_ros.dataset.export import ExportParams, export as run_export

        run_export(ExportParams(bags=[str(b) for b in bags], out=str(dataset), embodiment="demo_sim", force=True,
                                max_frame_age_s=max_frame_age_s),
                   log=lambda *_: None)
    return SimDemoResult(dataset, bags)
