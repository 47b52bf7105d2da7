"""Operator CLI (``lingbot-va``): run an episode with a prompt, cancel it, e-stop / re-arm, show status.

    lingbot-va run "stack the bowls" [--chunks N] [--duration S]    # Ctrl-C cancels the episode
    lingbot-va cancel                                                # cancels every running episode
    lingbot-va estop | rearm
    lingbot-va status [--watch]

Talks to a running graph (launch file or lingbot-va-demo) over DDS in the current ROS_DOMAIN_ID; ``--action``
names another RunEpisode server (e.g. /robot1/lingbot_va/run_episode) and ROS remapping arguments after
``--ros-args`` apply to the topics and services.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 3


def _split_ros_args(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        return argv[:i], argv[i:]
    return argv, []


class Operator:
    def __init__(self, ros_args: list[str]):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(args=["lingbot-va", *ros_args], context=self.context)
        self.node = rclpy.create_node("lingbot_va_operator", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    # -- commands --------------------------------------------------------------------------------------------
    def run(self, prompt: str, chunks: int, duration: float, episode_id: str, timeout: float, action: str) -> int:
        from rclpy.action import ActionClient

        from lingbot_va_ros.action import RunEpisode

        client = ActionClient(self.node, RunEpisode, action)
        if not client.wait_for_server(timeout_sec=timeout):
            print(f"no RunEpisode server on {client._action_name} (is the inference node running?)", file=sys.stderr)
            return EXIT_UNREACHABLE

        def feedback(fb):
            f = fb.feedback
            print(f"chunk {f.chunk_index:4d}  latency {1e3 * f.latency_s:7.1f} ms  cache {100 * f.cache_fill:5.1f}%  "
                  f"{f.mode:11s} {f.state:18s} misses {f.deadline_misses}", flush=True)

        future = client.send_goal_async(RunEpisode.Goal(prompt=prompt, max_chunks=chunks, max_duration_s=duration,
                                                        episode_id=episode_id), feedback_callback=feedback)
        self.spin_until(future.done, timeout)
        handle = future.result()
        if handle is None or not handle.accepted:
            print("goal not accepted", file=sys.stderr)
            return EXIT_FAILED
        result_future = handle.get_result_async()
        try:
            self.spin_until(result_future.done, float("inf"))
        except KeyboardInterrupt:
            print("\ncancelling the episode ...", flush=True)
            cancel = handle.cancel_goal_async()
            self.spin_until(cancel.done, 10)
            self.spin_until(result_future.done, 30)
        if not result_future.done():
            print("no result", file=sys.stderr)
            return EXIT_FAILED
        r = result_future.result().result
        print(f"{r.outcome}: {r.reason} (episode {r.episode_id}, {r.chunks} chunks, {r.duration_s:.1f} s"
              f"{', recorded in ' + r.recording_path if r.recording_path else ''})")
        return EXIT_OK if r.outcome in ("completed", "cancelled") else EXIT_FAILED

    def cancel(self, timeout: float, action: str) -> int:
        from action_msgs.srv import CancelGoal

        # A zero goal id and zero stamp cancel every goal of the server (action_msgs/CancelGoal semantics).
        client = self.node.create_client(CancelGoal, f"{action}/_action/cancel_goal")
        if not client.wait_for_service(timeout_sec=timeout):
            print("no RunEpisode server reachable", file=sys.stderr)
            return EXIT_UNREACHABLE
        future = client.call_async(CancelGoal.Request())
        self.spin_until(future.done, timeout)
        res = future.result()
        print(f"cancelling {len(res.goals_canceling)} episode(s)" if res else "no response")
        return EXIT_OK if res is not None else EXIT_FAILED

    def estop(self, timeout: float) -> int:
        from std_msgs.msg import Bool

        from lingbot_va_ros.common import qos, topics

        pub = self.node.create_publisher(Bool, topics.E_STOP, qos.RELIABLE)
        if not self.spin_until(lambda: pub.get_subscription_count() > 0, timeout):
            print(f"nobody listens on {topics.E_STOP} (is the executor running?) - use the hardware e-stop",
                  file=sys.stderr)
            return EXIT_UNREACHABLE
        pub.publish(Bool(data=True))
        state = self._executor_state(timeout)
        print("e-stop sent" + (f"; executor: {state.get('state')} ({state.get('reason', '')})" if state else ""))
        return EXIT_OK

    def rearm(self, timeout: float) -> int:
        from std_srvs.srv import Trigger

        from lingbot_va_ros.common import topics

        client = self.node.create_client(Trigger, topics.REARM)
        if not client.wait_for_service(timeout_sec=timeout):
            print(f"no {topics.REARM} service (is the executor running?)", file=sys.stderr)
            return EXIT_UNREACHABLE
        future = client.call_async(Trigger.Request())
        self.spin_until(future.done, timeout)
        res = future.result()
        print(("re-armed: " if res.success else "re-arm refused: ") + res.message)
        return EXIT_OK if res.success else EXIT_FAILED

    def _executor_state(self, timeout: float) -> dict:
        from std_msgs.msg import String

        from lingbot_va_ros.common import qos, topics

        box: list[dict] = []
        sub = self.node.create_subscription(String, topics.EXECUTOR_STATE, lambda m: box.append(json.loads(m.data)),
                                            qos.LATCHED)
        self.spin_until(lambda: box, timeout)
        self.node.destroy_subscription(sub)
        return box[-1] if box else {}

    def status(self, timeout: float) -> int:
        from diagnostic_msgs.msg import DiagnosticArray

        from lingbot_va_ros.common import qos, topics

        diags: dict[str, dict] = {}

        def on_diag(msg):
            for s in msg.status:
                diags[s.name] = {"level": int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level),
                                 "message": s.message, **{kv.key: kv.value for kv in s.values}}

        self.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, on_diag, qos.RELIABLE)
        executor = self._executor_state(timeout)
        self.spin_until(lambda: any(k.startswith("lingbot_va/inference") for k in diags), timeout)
        print("executor: " + (json.dumps(executor, indent=2) if executor else "(no state published)"))
        for name in sorted(diags):
            d = diags[name]
            level = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}.get(d.pop("level"), "?")
            print(f"{name} [{level}] {d.pop('message', '')}")
            for k, v in d.items():
                print(f"    {k}: {v}")
        return EXIT_OK if executor or diags else EXIT_UNREACHABLE


def main(argv: list[str] | None = None) -> int:
    args_in, ros_args = _split_ros_args(list(sys.argv[1:] if argv is None else argv))
    ap = argparse.ArgumentParser(prog="lingbot-va", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the graph")
    ap.add_argument("--action", default=None, help="RunEpisode action name (default /lingbot_va/run_episode)")
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an episode with a prompt (Ctrl-C cancels)")
    run.add_argument("prompt")
    run.add_argument("--chunks", type=int, default=0)
    run.add_argument("--duration", type=float, default=0.0)
    run.add_argument("--episode-id", default="")
    sub.add_parser("cancel", help="cancel every running episode")
    sub.add_parser("estop", help="latch a controlled stop on the executor")
    sub.add_parser("rearm", help="clear a latched e-stop / fault")
    sub.add_parser("status", help="executor state and every node's diagnostics")
    args = ap.parse_args(args_in)
    import os

    from lingbot_va_ros.common.paths import share_dir

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(share_dir() / "config" / "fastdds_shm.xml"))
    from lingbot_va_ros.common import topics

    action = args.action or topics.RUN_EPISODE
    op = Operator(ros_args)
    try:
        if args.command == "run":
            return op.run(args.prompt, args.chunks, args.duration, args.episode_id, args.timeout, action)
        if args.command == "cancel":
            return op.cancel(args.timeout, action)
        return {"estop": op.estop, "rearm": op.rearm, "status": op.status}[args.command](args.timeout)
    finally:
        op.close()


if __name__ == "__main__":
    raise SystemExit(main())
