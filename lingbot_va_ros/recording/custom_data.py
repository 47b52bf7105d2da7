"""The episode metadata a bag carries in rosbag2's ``custom_data`` (metadata.yaml), and how it is encoded.

rosbag2 custom_data is a flat string -> string map. Keys are namespaced ``lingbot_va.<key>``; values that are
not strings are stored as JSON and listed in ``lingbot_va.json_fields`` so they decode back to their type.

Keys written by the recorder and the runner (see docs/recording.md):
``episode_id, prompt, pipeline_mode, checkpoint, checkpoint_hash, embodiment, seed, configs (JSON list of
{path, sha256}), outcome, reason, started_at, stopped_at, recording_state (complete | repaired | incomplete),
recorder`` plus anything else the runner passes in the start command's ``metadata``.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

PREFIX = "lingbot_va."
JSON_FIELDS_KEY = f"{PREFIX}json_fields"


def encode_custom_data(values: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    json_fields: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        name = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if isinstance(value, str):
            out[PREFIX + name] = value
        else:
            out[PREFIX + name] = json.dumps(value, sort_keys=True, default=str)
            json_fields.append(name)
    if json_fields:
        out[JSON_FIELDS_KEY] = ",".join(sorted(json_fields))
    return out


def merge_custom_data(current: Mapping[str, str], update: Mapping[str, Any]) -> dict[str, str]:
    """``current`` (already encoded) updated with new plain values; keeps the JSON field list consistent."""
    merged = dict(current)
    json_fields = set(filter(None, merged.pop(JSON_FIELDS_KEY, "").split(",")))
    encoded = encode_custom_data(update)
    new_json_fields = set(filter(None, encoded.pop(JSON_FIELDS_KEY, "").split(",")))
    for key in encoded:  # a key re-set to a plain string is no longer JSON
        json_fields.discard(key[len(PREFIX):])
    json_fields |= new_json_fields
    merged.update(encoded)
    if json_fields:
        merged[JSON_FIELDS_KEY] = ",".join(sorted(json_fields))
    return merged


def decode_custom_data(custom_data: Mapping[str, str] | None) -> dict[str, Any]:
    """metadata.yaml custom_data -> {key without prefix: value}; foreign keys (no prefix) are kept as they are."""
    custom_data = dict(custom_data or {})
    json_fields = set(filter(None, custom_data.pop(JSON_FIELDS_KEY, "").split(",")))
    out: dict[str, Any] = {}
    for key, value in custom_data.items():
        if not key.startswith(PREFIX):
            out[key] = value
            continue
        name = key[len(PREFIX):]
        if name in json_fields:
            try:
                out[name] = json.loads(value)
                continue
            except (TypeError, ValueError):
                pass
        out[name] = value
    return out
