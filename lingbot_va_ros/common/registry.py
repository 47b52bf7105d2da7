"""Plugin registries (arm drivers, camera sources, policy backends), chosen by name in YAML.

A name resolves, in order, to: a dotted path ``package.module:Class``; a built-in; an entry point in the
registry's group (third-party packages register ``[project.entry-points."lingbot_va_ros.arm_drivers"]``).
Built-ins are listed here too so a colcon install (no entry-point metadata) finds them.
"""
from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any


class PluginError(LookupError):
    pass


def _import_dotted(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"cannot import plugin module '{module_name}': {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"module '{module_name}' has no attribute '{attr}'") from None


class Registry:
    def __init__(self, group: str, builtins: dict[str, str]):
        self.group = group
        self._builtins = dict(builtins)

    def _entry_points(self) -> dict[str, metadata.EntryPoint]:
        return {ep.name: ep for ep in metadata.entry_points(group=self.group)}

    def available(self) -> list[str]:
        return sorted(set(self._builtins) | set(self._entry_points()))

    def load(self, name: str) -> Any:
        if ":" in name:
            return _import_dotted(name)
        if name in self._builtins:
            return _import_dotted(self._builtins[name])
        eps = self._entry_points()
        if name in eps:
            try:
                return eps[name].load()
            except Exception as exc:  # noqa: BLE001 - report any plugin import failure the same way
                raise PluginError(f"plugin '{name}' ({eps[name].value}) failed to load: {exc}") from exc
        raise PluginError(f"unknown {self.group} plugin '{name}'; available: {', '.join(self.available())} "
                          "(or give 'package.module:Class')")


ARM_DRIVERS = Registry("lingbot_va_ros.arm_drivers", {
    "mock": "lingbot_va_ros.executor.drivers.mock:MockDriver",
    "sim": "lingbot_va_ros.executor.drivers.sim:SimDriver",
    "joint_state_topic": "lingbot_va_ros.executor.drivers.joint_state_topic:JointStateTopicDriver",
    "ros2_control": "lingbot_va_ros.executor.drivers.ros2_control:Ros2ControlDriver",
})
CAMERA_SOURCES = Registry("lingbot_va_ros.camera_sources", {
    "ros_image": "lingbot_va_ros.camera.sources:RosImageSource",
    "ros_compressed": "lingbot_va_ros.camera.sources:RosCompressedImageSource",
    "opencv": "lingbot_va_ros.camera.sources:OpenCvSource",
})
POLICY_BACKENDS = Registry("lingbot_va_ros.policy_backends", {
    "lingbot_va": "lingbot_va_ros.model.backend:LingBotVABackend",
})
