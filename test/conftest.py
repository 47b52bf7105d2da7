"""Suite-wide fixtures: per-test ROS domain isolation and guaranteed process cleanup."""
from __future__ import annotations

import fcntl
import itertools
import os
import tempfile
from pathlib import Path

import pytest

from lingbot_va_ros.testing.ros_harness import (MIN_DEADLINE_ENV, NodeProcess, RosProbe, apply_ros_env_to_this_process,
                                                ros_env)

# Waits are liveness checks: no deadline in the suite is shorter than this (see ros_harness.deadline_s). A test
# that bounds how fast something happens is a benchmark (benchmarks/), not a test.
os.environ.setdefault(MIN_DEADLINE_ENV, "60")

_LOCK_DIR = Path(tempfile.gettempdir()) / "lingbot_va_ros_test_domains"
_DOMAINS = list(range(1, 102))  # 0-101: the ports of higher ids collide with the ephemeral range
_start = itertools.count(os.getpid() % len(_DOMAINS))


@pytest.fixture
def ros_domain():
    """A ROS_DOMAIN_ID no other test on this host is using, held by an flock for the test's duration.

    The lock makes concurrent pytest runs (xdist workers, several developers' runs, CI beside a developer)
    pick disjoint domains, so no test ever sees another's graph. Successive tests rotate through the ids,
    so discovery data left by a killed node of an earlier test never matches a later one."""
    _LOCK_DIR.mkdir(exist_ok=True)
    first = next(_start)
    for k in range(len(_DOMAINS)):
        domain = _DOMAINS[(first + k) % len(_DOMAINS)]
        handle = open(_LOCK_DIR / f"{domain}.lock", "w")  # noqa: SIM115 - held until the test ends
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield domain
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    raise RuntimeError("every ROS domain 1..101 is in use by other tests on this host")


@pytest.fixture(autouse=True)
def _scheduling_unchanged():
    """No test may leave the test process at another scheduling policy: every node it starts afterwards would
    inherit it (libsvtav1 once left it at SCHED_FIFO 99, and each node started later then starved the host)."""
    before = (os.sched_getscheduler(0), os.sched_getparam(0))
    yield
    after = (os.sched_getscheduler(0), os.sched_getparam(0))
    if (after[0], after[1].sched_priority) != (before[0], before[1].sched_priority):
        os.sched_setscheduler(0, before[0], before[1])
        pytest.fail(f"the test changed the process's scheduling policy/priority from {before[0]}/"
                    f"{before[1].sched_priority} to {after[0]}/{after[1].sched_priority}")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """In-process model tests use tiny tensors: extra intra-op threads only spin on a shared 2-core machine."""
    import torch

    torch.set_num_threads(1)


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
