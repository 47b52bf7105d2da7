"""Common process lifecycle for every node executable: init, spin, clean shutdown on SIGINT/SIGTERM."""
from __future__ import annotations

import signal
import sys
from typing import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node


def node_options() -> dict:
    """kwargs for Node.__init__: parameters come from overrides and are validated by the node's schema."""
    return {"automatically_declare_parameters_from_overrides": True, "allow_undeclared_parameters": True}


def make_executor(num_threads: int = 1, context=None) -> Executor:
    """The executor that spins a node: single-threaded unless a callback must block (``num_threads`` > 1).

    rclpy's MultiThreadedExecutor (Kilted) re-builds its wait set several times per received message and keeps a
    list of every pending callback task that it scans on each wake-up: a recorder taking 3 cameras and 100 Hz joint
    states spent a whole core in that loop (102 % CPU, 121 of 2892 messages kept) where a single-threaded executor
    uses 8-11 % and keeps them (benchmarks/bench_ros_executor.py, docs/benchmarks/ros_executor.md). Nodes whose heavy work runs in their own threads
    (control loop, physics, decoding, disk flushes in short callbacks) therefore spin single-threaded.
    """
    if num_threads <= 1:
        return SingleThreadedExecutor(context=context)
    return MultiThreadedExecutor(num_threads=num_threads, context=context)


def run_node(factory: Callable[[], Node], num_threads: int = 1, argv: list[str] | None = None) -> int:
    """Create the node, spin it (``make_executor``), and tear everything down exactly once.

    Startup errors (bad parameters, missing checkpoint) are printed as one clear line and give exit 2.
    """
    rclpy.init(args=argv if argv is not None else sys.argv)
    node: Node | None = None
    # SIGTERM (launch, process supervisors) behaves like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        try:
            node = factory()
        except Exception as exc:  # noqa: BLE001 - any startup failure is reported the same way
            print(f"[FATAL] {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return 2
        executor = make_executor(num_threads)
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return 0
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
