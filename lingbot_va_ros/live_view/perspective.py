"""What the rqt perspective (config/rqt/lingbot_va.perspective) shows: its image views and plots, read from the
file itself, so figures rendered from a bag show exactly the topics and fields the perspective opens."""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class View:
    plugin: str                  # "rqt_image_view/ImageView", "rqt_plot/Plot", ...
    title: str                   # the dock widget title
    topics: tuple[str, ...]      # image topic, or plotted field paths like /joint_states/position[0]


def _repr(keys: dict, name: str, default=None):
    entry = keys.get(name)
    return ast.literal_eval(entry["repr"]) if entry and entry.get("type") == "repr" else default


def perspective_views(path: str | Path) -> list[View]:
    """The running plugins of an rqt perspective file, in the order the file lists them."""
    doc = json.loads(Path(path).read_text())
    manager = doc["groups"]["pluginmanager"]
    views = []
    for group_name, group in manager["groups"].items():
        m = re.fullmatch(r"plugin__(\w+)__(\w+)__(\d+)", group_name)
        if not m:
            continue
        plugin = f"{m.group(1)}/{m.group(2)}"
        dock = next((g for k, g in group["groups"].items() if k.startswith("dock_widget__")), {"keys": {}})
        settings = group["groups"].get("plugin", {"keys": {}})["keys"]
        if plugin == "rqt_image_view/ImageView":
            topics = (_repr(settings, "topic", ""),)
        elif plugin == "rqt_plot/Plot":
            topics = tuple(_repr(settings, "topics", []))
        else:
            topics = ()
        views.append(View(plugin, _repr(dock["keys"], "dock_widget_title", group_name), topics))
    return views


def split_field_path(path: str, topics: set[str]) -> tuple[str, list[str | int]]:
    """'/lingbot_va/command/position[0]' -> ('/lingbot_va/command', ['position', 0]) given the known topics."""
    parts = path.strip("/").split("/")
    for cut in range(len(parts), 0, -1):
        topic = "/" + "/".join(parts[:cut])
        if topic in topics:
            fields: list[str | int] = []
            for part in parts[cut:]:
                m = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", part)
                if not m:
                    raise ValueError(f"cannot read field '{part}' of plot path {path}")
                fields.append(m.group(1))
                if m.group(2) is not None:
                    fields.append(int(m.group(2)))
            return topic, fields
    raise KeyError(f"no recorded topic is a prefix of the plot path {path}")


def field_value(msg, fields: list[str | int]):
    """Follow a split field path into a (deserialized) message."""
    value = msg
    for f in fields:
        value = value[f] if isinstance(f, int) else getattr(value, f)
    return value
