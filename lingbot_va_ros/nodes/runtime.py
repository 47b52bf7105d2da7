"""Common process lifecycle for every node executable: init, spin, clean shutdown on SIGINT/SIGTERM."""
from __future__ import annotations

import signal
import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node


def node_options() -> dict:
    """kwargs for Node.__init__: parameters come from overrides and are validated by the node's schema."""
    return {"automatically_declare_parameters_from_overrides": True, "allow_undeclared_parameters": True}


def run_node(factory: Callable[[], Node], num_threads: int = 4, argv: list[str] | None = None) -> int:
    """Create the node, spin it on a multi-threaded executor, and tear everything down exactly once.

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
        executor = MultiThreadedExecutor(num_threads=num_threads)
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
