"""The operator CLI against real nodes over DDS: run/cancel an episode, e-stop / re-arm, status."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.timeout(120)]


def _cli(env, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "lingbot_va_ros.bringup.operator_cli", "--timeout", "20", *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_run_and_cancel_an_episode(launch, node_env):
    launch("lingbot_va_ros.testing.interface_peer")
    peer = ["--action", "/peer/run_episode"]
    done = _cli(node_env, *peer, "run", "stack the bowls", "--chunks", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed" in done.stdout and done.stdout.count("chunk ") == 3
    # an unlimited episode, cancelled from a second CLI call
    running = subprocess.Popen([sys.executable, "-m", "lingbot_va_ros.bringup.operator_cli", "--timeout", "20", *peer,
                                "run", "wipe the plate"], env=node_env, stdout=subprocess.PIPE, text=True)
    try:
        first = running.stdout.readline()
        assert first.startswith("chunk"), first
        cancel = _cli(node_env, *peer, "cancel")
        assert cancel.returncode == 0 and "cancelling 1 episode" in cancel.stdout, cancel.stdout + cancel.stderr
        out, _ = running.communicate(timeout=30)
        assert "cancelled" in out and running.returncode == 0
    finally:
        if running.poll() is None:
            running.kill()


def test_estop_status_rearm_against_the_executor(launch, node_env):
    launch("lingbot_va_ros.nodes.executor", ros_args=["-p", "arm:=mock"])
    stop = _cli(node_env, "estop")
    assert stop.returncode == 0 and "e-stop sent" in stop.stdout, stop.stdout + stop.stderr
    status = _cli(node_env, "status")
    assert status.returncode == 0 and "e_stop" in status.stdout, status.stdout
    rearm = _cli(node_env, "rearm")
    assert rearm.returncode == 0 and "re-armed" in rearm.stdout, rearm.stdout + rearm.stderr
    again = _cli(node_env, "rearm")
    assert "nothing latched" in again.stdout


def test_unreachable_graph_is_reported(node_env):
    res = _cli(node_env, "--timeout", "1", "rearm", timeout=30)
    assert res.returncode == 3 and "executor running" in res.stderr
