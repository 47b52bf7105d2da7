"""Suite-wide fixtures: per-test ROS domain isolation and guaranteed process cleanup."""
from __future__ import annotations

import itertools
import os

import pytest

from lingbot_va_ros.testing.ros_harness import NodeProcess, RosProbe, apply_ros_env_to_this_process, ros_env

_DOMAINS_PER_WORKER = 24
_counter = itertools.count()


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


@pytest.fixture
def ros_domain() -> int:
    """A ROS_DOMAIN_ID in 1..96, unique among concurrently running tests; rotated per test so a killed
    node's stale discovery data from an earlier test never matches a later one."""
    worker = _worker_index() % 4
    return 1 + worker * _DOMAINS_PER_WORKER + next(_counter) % _DOMAINS_PER_WORKER


@pytest.fixture
def ros_log_dir(tmp_path):
    d = tmp_path / "ros_logs"
    d.mkdir()
    return d


@pytest.fixture
def node_env(ros_domain, ros_log_dir):
    apply_ros_env_to_this_process(ros_domain, str(ros_log_dir))
    return ros_env(ros_domain, ros_log_dir)


@pytest.fixture
def probe(ros_domain, node_env):
    p = RosProbe(ros_domain)
    yield p
    p.close()


@pytest.fixture
def launch(node_env, ros_log_dir):
    """Start node processes; every one is stopped at teardown and must not survive it."""
    started: list[NodeProcess] = []

    def _launch(module: str, **kwargs) -> NodeProcess:
        proc = NodeProcess.module(module, node_env, ros_log_dir, **kwargs).start()
        started.append(proc)
        return proc

    yield _launch
    for proc in reversed(started):
        proc.stop()
    leftovers = [p.name for p in started if p.alive()]
    assert not leftovers, f"processes survived teardown: {leftovers}"


def pytest_runtest_makereport(item, call):  # attach node logs to failures
    if call.when == "call" and call.excinfo is not None and "ros_log_dir" in item.fixturenames:
        log_dir = item.funcargs.get("ros_log_dir")
        if log_dir:
            for log in sorted(log_dir.glob("*.log")):
                text = log.read_text(errors="replace")[-4000:]
                item.add_report_section("call", f"node log {log.name}", text)
