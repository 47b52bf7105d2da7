"""The executor node's parameter schema (one place for defaults, ranges and documentation).

Robot-specific settings (driver, joint order, rate, limits) live in the arm YAML named by ``arm``; this
schema holds the behaviour that is the same for every arm. Defaults are conservative: the watchdogs are on,
three bad chunks in a row latch a fault, and seams are cross-faded.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from lingbot_va_ros.common.params import NodeParams, SubParams


class SeamParams(SubParams):
    policy: Literal["hard", "crossfade", "frozen_prefix"] = Field(
        "crossfade", description="how a new chunk takes over from the current plan: 'hard' switches at once; "
        "'crossfade' blends linearly over crossfade_ticks from the replaced plan (or, after a hold, from the "
        "held command); 'frozen_prefix' (RTC-style) first keeps frozen_actions already-committed actions of "
        "the replaced plan, then cross-fades. A clean continuation of a tiled timeline is never blended.")
    crossfade_ticks: int = Field(4, ge=1, le=100, description="length of the blend, in actions")
    frozen_actions: int = Field(2, ge=0, le=100, description="frozen_prefix: committed actions kept from the "
                                "replaced plan before blending")


class ValidationParams(SubParams):
    max_rows: int = Field(1024, ge=1, le=100000, description="largest accepted chunk (rows)")
    max_bad_chunks: int = Field(3, ge=1, le=1000, description="this many rejected chunks in a row latch a "
                                "fault (controlled stop, re-arm required)")
    period_tolerance: float = Field(0.05, ge=0.0, le=1.0, description="relative mismatch allowed between a "
                                    "chunk's control_period and the executor period")
    limit_tolerance: float = Field(0.05, ge=0.0, le=1.0, description="a chunk with a target outside a joint's "
                                   "limits by more than this fraction of its range is rejected (smaller "
                                   "excursions are clamped at the final write)")
    gripper_limit_tolerance: float = Field(1.0, ge=0.0, le=1.0, description="limit_tolerance for the arm's "
                                           "gripper_joints: a gripper target past open or closed is clamped to the "
                                           "limit, as gripper drivers saturate it (policies close past closed to "
                                           "grasp; post-trained tiny sim checkpoints asked for 11 % below closed "
                                           "and 29 % above open); rejected only beyond this fraction of the range "
                                           "(a unit or normalisation error)")
    check_row_jumps: bool = Field(True, description="reject chunks whose consecutive rows differ by more than "
                                  "the joint's max_first_jump")


class WatchdogParams(SubParams):
    heartbeat_timeout: float = Field(0.3, ge=0.0, le=10.0, description="s without an inference heartbeat "
                                     "(/lingbot_va/heartbeat, >= 10 Hz) before the active chunk is cut and the "
                                     "arm decelerates to hold; 0 disables the check (bench tests only)")
    state_timeout: float = Field(0.2, gt=0.0, le=10.0, description="s without a joint state from the driver "
                                 "before a fault")
    gap_timeout: float = Field(0.1, ge=0.0, le=10.0, description="s holding with no chunk covering the next "
                               "action before it is reported (gap or starved)")
    stale_requires_rearm: bool = Field(False, description="a stale heartbeat latches a fault (re-arm needed) "
                                       "instead of resuming on the next fresh chunk")
    state_range_tolerance: float = Field(0.05, ge=0.0, le=1.0, description="a measured position outside the "
                                         "limits by more than this fraction of the range faults")
    overrun_warn_ticks: int = Field(3, ge=1, le=10000, description="consecutive late ticks that raise a warning")
    overrun_fault_ticks: int = Field(20, ge=1, le=100000, description="consecutive late ticks that latch a fault "
                                     "(Franka's 20-packet rule)")


class TimingParams(SubParams):
    spin_s: float = Field(0.0003, ge=0.0, le=0.005, description="busy-wait before each deadline, s (absorbs "
                          "the kernel's wake-up latency)")
    realtime_priority: int = Field(50, ge=0, le=99, description="SCHED_FIFO priority requested for the control "
                                   "thread, as ros2_control's controller_manager does (0 = normal scheduling); "
                                   "without rtprio rights it falls back to normal scheduling with a warning")
    cpu_affinity: list[int] = Field(default_factory=list, description="CPUs for the control thread (empty = any)")
    gil_switch_interval: float = Field(0.001, gt=0.0, le=0.05, description="sys.setswitchinterval for the "
                                       "process: how long another Python thread may hold the GIL before the "
                                       "control thread gets it")


class ExecutorParams(NodeParams):
    arm: str = Field("sim", min_length=1, description="arm YAML: a name in config/arms/ or a path")
    urdf: str = Field("", description="URDF with joint limits, overriding the arm YAML's 'urdf' ('' = the YAML's)")
    rate_hz: float = Field(0.0, ge=0.0, le=2000.0, description="control rate, Hz (0 = the arm YAML's rate_hz); "
                           "one action is executed per tick")
    actions_per_keyframe: int = Field(4, ge=1, le=1000, description="an ActionTick follows every this many "
                                      "executed actions (action_per_frame / 4; RoboTwin: 4)")
    action_spaces: list[str] = Field(default_factory=lambda: ["joint", "ee_relative"], min_length=1,
                                     description="accepted chunk action spaces (joint, ee_relative)")
    diagnostics_period: float = Field(1.0, gt=0.0, le=60.0, description="s between /diagnostics and the "
                                      "periodic executor_state refresh")
    seam: SeamParams = Field(default_factory=SeamParams)
    validation: ValidationParams = Field(default_factory=ValidationParams)
    watchdog: WatchdogParams = Field(default_factory=WatchdogParams)
    timing: TimingParams = Field(default_factory=TimingParams)

    @field_validator("action_spaces")
    @classmethod
    def _known_spaces(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"joint", "ee_relative"})
        if unknown:
            raise ValueError(f"unknown action spaces {unknown} (known: joint, ee_relative)")
        return value
