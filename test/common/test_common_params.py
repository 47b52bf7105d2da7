from __future__ import annotations

import pytest
from pydantic import Field

from lingbot_va_ros.common.params import NodeParams, ParameterError, SubParams, flatten, unflatten


class _Limits(SubParams):
    max_step: float = Field(0.05, gt=0, description="rad per tick")


class _Params(NodeParams):
    rate_hz: float = Field(50.0, gt=0, le=1000, description="control rate")
    arm: str = Field("sim", description="arm config")
    limits: _Limits = _Limits()
    cameras: dict[str, dict[str, int]] = Field(default_factory=dict, description="per camera")


def test_flatten_unflatten_round_trip():
    data = {"a": 1, "b": {"c": 2, "d": {"e": [1, 2]}}}
    assert unflatten(flatten(data)) == data
    assert flatten(data) == {"a": 1, "b.c": 2, "b.d.e": [1, 2]}


def test_dotted_and_nested_spellings_validate_the_same():
    a = _Params.from_dict({"limits.max_step": 0.1, "cameras.cam_high.height": 256})
    b = _Params.from_dict({"limits": {"max_step": 0.1}, "cameras": {"cam_high": {"height": 256}}})
    assert a == b and a.limits.max_step == 0.1 and a.cameras["cam_high"]["height"] == 256


def test_errors_name_every_bad_parameter():
    with pytest.raises(ParameterError) as exc:
        _Params.from_dict({"rate_hz": -1, "limits.max_step": 0, "typo": 3})
    text = str(exc.value)
    assert "rate_hz" in text and "limits.max_step" in text and "typo" in text


def test_from_yaml_merges_wildcard_then_node(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    rate_hz: 30.0\n    arm: mock\n"
                 "executor:\n  ros__parameters:\n    arm: piper\n    limits:\n      max_step: 0.2\n")
    p = _Params.from_yaml(f, "executor")
    assert (p.rate_hz, p.arm, p.limits.max_step) == (30.0, "piper", 0.2)


def test_markdown_table_lists_nested_fields():
    table = _Params.markdown_table()
    assert "`limits.max_step`" in table and "rad per tick" in table
