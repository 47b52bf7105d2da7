"""Start nodes as separate processes and talk to them over real DDS, with deadlines instead of sleeps.

- :func:`ros_env` builds an isolated environment (own ROS_DOMAIN_ID, localhost-only discovery, the
  project's Fast DDS profile) so parallel test runs never see each other's graphs.
- :class:`NodeProcess` runs ``python -m module --ros-args ...`` in its own process group, logs to a file
  and is always stopped (SIGINT, then SIGTERM, then SIGKILL) so nothing outlives a test.
- :class:`RosProbe` is an rclpy node in a private context on that domain, spun on a background thread,
  with helpers that wait for matched endpoints and for expected messages with a deadline.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from lingbot_va_ros.common.paths import share_dir


def ros_env(domain_id: int, log_dir: str | os.PathLike | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(share_dir() / "config" / "fastdds_shm.xml"),
        "PYTHONUNBUFFERED": "1",
    })
    if log_dir is not None:
        env["ROS_LOG_DIR"] = str(log_dir)
    if extra:
        env.update(extra)
    return env


def apply_ros_env_to_this_process(domain_id: int, log_dir: str | None = None) -> None:
    """Same isolation for the test process itself (must run before rclpy.init)."""
    for key, value in ros_env(domain_id, log_dir).items():
        if key.startswith(("ROS_", "FASTDDS_")):
            os.environ[key] = value


class NodeProcess:
    """One node (or any command) in its own process group, output captured to a log file."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log_path: str | os.PathLike, name: str | None = None):
        self.argv = list(argv)
        self.env = env
        self.log_path = Path(log_path)
        self.name = name or Path(self.argv[0]).name
        self.proc: subprocess.Popen | None = None

    @classmethod
    def module(cls, module: str, env: dict[str, str], log_dir: str | os.PathLike, *, args: Sequence[str] = (),
               ros_args: Sequence[str] = (), params_file: str | os.PathLike | None = None,
               name: str | None = None) -> "NodeProcess":
        argv = [sys.executable, "-m", module, *args]
        ros = list(ros_args)
        if params_file is not None:
            ros += ["--params-file", str(params_file)]
        if ros:
            argv += ["--ros-args", *ros]
        name = name or module.rsplit(".", 1)[-1]
        return cls(argv, env, Path(log_dir) / f"{name}.log", name)

    def start(self) -> "NodeProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 5.0) -> int | None:
        """Graceful stop of the whole process group; escalates so nothing is left behind."""
        if self.proc is None:
            return None
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
                if sig != signal.SIGKILL:
                    os.killpg(self.proc.pid, signal.SIGCONT)  # a SIGSTOPped node must be able to exit
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        try:  # stray children of the group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> "NodeProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# Every wait here is a liveness check ("eventually X"), never a speed check: a busy CI host can stall any single
# step for seconds, so under pytest (test/conftest.py sets this) a deadline is never shorter than this floor.
# Passing tests do not wait longer (a wait returns as soon as its condition holds); how fast things happen is
# measured by benchmarks/. Outside the suite (benchmarks, the demo runner) the given deadlines apply unchanged.
MIN_DEADLINE_ENV = "LINGBOT_TEST_MIN_DEADLINE_S"


def deadline_s(timeout: float) -> float:
    """``timeout`` raised to the suite's minimum deadline (see MIN_DEADLINE_ENV)."""
    try:
        floor = float(os.environ.get(MIN_DEADLINE_ENV, "0") or 0.0)
    except ValueError:
        floor = 0.0
    return max(float(timeout), floor)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.02,
               on_timeout: Callable[[], str] | None = None) -> Any:
    """Poll a condition with a deadline; the failure message says what was awaited."""
    timeout = deadline_s(timeout)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{extra}")
        time.sleep(poll)


class Inbox:
    """Thread-safe store of the messages one subscription received. ``keep`` stores a digest of each message
    instead (long runs: an hour of Observations with their images would hold ~10 GB)."""

    def __init__(self, keep: Callable[[Any], Any] | None = None) -> None:
        self.messages: list[Any] = []
        self.stamps: list[float] = []
        self._keep = keep
        self._cond = threading.Condition()

    def __call__(self, msg: Any) -> None:
        if self._keep is not None:
            msg = self._keep(msg)
        with self._cond:
            self.messages.append(msg)
            self.stamps.append(time.monotonic())
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Any], bool] | None = None, count: int = 1, timeout: float = 10.0,
                 what: str = "messages") -> list[Any]:
        """Block until ``count`` received messages satisfy ``predicate``; returns them."""
        timeout = deadline_s(timeout)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [m for m in self.messages if predicate is None or predicate(m)]
                if len(hits) >= count:
                    return hits
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.1f}s: {len(hits)}/{count} {what} "
                                       f"({len(self.messages)} received in total)")
                self._cond.wait(left)

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()
            self.stamps.clear()


class RosProbe:
    """A test-side rclpy node in a private context, spun by a background executor thread."""

    def __init__(self, domain_id: int, name: str = "test_probe"):
        import rclpy
        from rclpy.context import Context
        from lingbot_va_ros.nodes.runtime import make_executor

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        # single-threaded: a multi-threaded executor spins a core on a busy topic, starving the nodes under test
        self.executor = make_executor(1, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True, name=f"{name}_spin")
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except (ExternalShutdownException, Exception):  # noqa: BLE001 - shutdown races are not test failures
            pass

    def subscribe(self, msg_type: Any, topic: str, qos: Any = 10, raw: bool = False,
                  keep: Callable[[Any], Any] | None = None) -> Inbox:
        inbox = Inbox(keep)
        self.node.create_subscription(msg_type, topic, inbox, qos, raw=raw)
        return inbox

    def publisher(self, msg_type: Any, topic: str, qos: Any = 10):
        return self.node.create_publisher(msg_type, topic, qos)

    def wait_for_subscribers(self, publisher: Any, count: int = 1, timeout: float = 15.0) -> None:
        wait_until(lambda: publisher.get_subscription_count() >= count, timeout,
                   f"{count} subscriber(s) on {publisher.topic_name}")

    def wait_for_publishers(self, topic: str, count: int = 1, timeout: float = 15.0) -> None:
        wait_until(lambda: self.node.count_publishers(topic) >= count, timeout, f"{count} publisher(s) on {topic}")

    def wait_for_service(self, client: Any, timeout: float = 15.0) -> None:
        timeout = deadline_s(timeout)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} not available after {timeout}s")

    def call(self, client: Any, request: Any, timeout: float = 10.0) -> Any:
        future = client.call_async(request)
        wait_until(future.done, timeout, f"response from {client.srv_name}")
        return future.result()

    def close(self) -> None:
        import rclpy

        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            if self.context.ok():
                rclpy.shutdown(context=self.context)
        self._thread.join(timeout=2.0)

    def __enter__(self) -> "RosProbe":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
