import pytest

from lingbot_va_ros.common.registry import PluginError, Registry


def test_dotted_path_and_builtin_and_unknown():
    reg = Registry("lingbot_va_ros.test_group", {"params": "lingbot_va_ros.common.params:NodeParams"})
    from lingbot_va_ros.common.params import NodeParams, SubParams

    assert reg.load("params") is NodeParams
    assert reg.load("lingbot_va_ros.common.params:SubParams") is SubParams
    with pytest.raises(PluginError, match="available: params"):
        reg.load("nope")
    with pytest.raises(PluginError, match="cannot import"):
        reg.load("no_such_module_xyz:Thing")
