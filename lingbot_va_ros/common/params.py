"""One typed, validated parameter schema per node (pydantic), read from ROS parameters or a params YAML.

A node declares its schema as a subclass of :class:`NodeParams`. The schema is the single place for
defaults, ranges and documentation; ``docs/parameters.md`` is generated from it
(``python -m lingbot_va_ros.common.params``). Nested models map to dotted ROS parameter names
(``safety.max_step``); dict-valued fields (per camera, per joint) are read from the parameter overrides.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

P = TypeVar("P", bound="NodeParams")


class ParameterError(ValueError):
    """A parameter set that does not validate; the message lists every offending parameter."""


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _format_errors(cls: type, exc: ValidationError, source: str) -> str:
    lines = [f"invalid {cls.__name__} parameters ({source}):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"  - {loc}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


class NodeParams(BaseModel):
    """Base class of every node's parameter schema: unknown names are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @classmethod
    def from_dict(cls: type[P], data: Mapping[str, Any], source: str = "dict") -> P:
        nested = unflatten(flatten(data))  # accepts dotted and nested spellings alike
        try:
            return cls.model_validate(nested)
        except ValidationError as exc:
            raise ParameterError(_format_errors(cls, exc, source)) from None

    @classmethod
    def from_yaml(cls: type[P], path: str | Path, node_name: str) -> P:
        """Read a ROS 2 params file (``node: {ros__parameters: ...}``, ``/**`` wildcard merged first)."""
        doc = yaml.safe_load(Path(path).read_text()) or {}
        merged: dict[str, Any] = {}
        for key in ("/**", "**", node_name, f"/{node_name}"):
            section = doc.get(key) or {}
            merged.update(flatten(section.get("ros__parameters", {})))
        for key, section in doc.items():  # namespaced node keys: /ns/node
            if isinstance(key, str) and key.endswith(f"/{node_name}") and key not in ("/**", f"/{node_name}"):
                merged.update(flatten((section or {}).get("ros__parameters", {})))
        return cls.from_dict(merged, source=f"{path} [{node_name}]")

    @classmethod
    def from_node(cls: type[P], node: Any) -> P:
        """Validate the node's parameter overrides and declare every schema default (for ros2 param list).

        The node must be created with ``automatically_declare_parameters_from_overrides=True``.
        """
        overrides = {
            name: param.value
            for name, param in node._parameters.items()  # noqa: SLF001 - rclpy has no public "all params" API
            if name not in ("use_sim_time", "start_type_description_service")
        }
        params = cls.from_dict(overrides, source=f"node {node.get_fully_qualified_name()}")
        from rcl_interfaces.msg import ParameterDescriptor

        docs = cls.field_docs()
        for name, value in flatten(params.model_dump(mode="json")).items():
            if node.has_parameter(name) or value is None or value == [] or isinstance(value, dict):
                continue
            if isinstance(value, list) and len({type(v) for v in value}) > 1:
                continue  # ROS arrays are homogeneous
            node.declare_parameter(name, value, ParameterDescriptor(description=docs.get(name, ""), read_only=True))
        return params

    @classmethod
    def field_docs(cls, prefix: str = "") -> dict[str, str]:
        out: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, NodeParams):
                out.update(ann.field_docs(f"{prefix}{name}."))  # a group: its leaves are the parameters
                continue
            out[f"{prefix}{name}"] = field.description or ""
        return out

    @classmethod
    def markdown_table(cls) -> str:
        rows = ["| parameter | default | description |", "|---|---|---|"]
        defaults = flatten(cls().model_dump(mode="json")) if _has_all_defaults(cls) else {}
        for name, doc in cls.field_docs().items():
            default = defaults.get(name, "(required)" if not defaults else "")
            rows.append(f"| `{name}` | `{default}` | {doc} |")
        return "\n".join(rows)


class SubParams(NodeParams):
    """A nested group of parameters (dotted names)."""


def _has_all_defaults(cls: type[BaseModel]) -> bool:
    try:
        cls()
        return True
    except ValidationError:
        return False
