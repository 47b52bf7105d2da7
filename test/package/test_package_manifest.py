"""package.xml / CMakeLists / setup.py agree and are valid for a colcon workspace."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[2]


def test_package_xml_is_valid_format_3():
    pkg = parse_package(str(ROOT / "package.xml"))  # parses and validates (raises InvalidPackage)
    pkg.validate()
    assert pkg.package_format == 3 and pkg.name == "lingbot_va_ros"
    assert pkg.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [g.name for g in pkg.member_of_groups]


def test_every_interface_dependency_and_import_is_declared():
    pkg = parse_package(str(ROOT / "package.xml"))
    declared = {d.name for d in pkg.build_depends + pkg.exec_depends + pkg.buildtool_depends + pkg.test_depends}
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for dep in re.findall(r"find_package\((\w+)", cmake):
        if dep not in ("ament_cmake_pytest",):
            assert dep in declared, f"CMakeLists find_package({dep}) not declared in package.xml"
        else:
            assert dep in {d.name for d in pkg.test_depends}
    # every ROS message package imported by the Python code is an exec dependency
    used = set()
    for py in (ROOT / "lingbot_va_ros").rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0].endswith(("_msgs", "_srvs")):
                used.add(node.module.split(".")[0])
    missing = sorted(used - declared)
    assert not missing, f"message packages imported but not declared in package.xml: {missing}"


def test_interface_files_listed_in_cmake_exist_and_vice_versa():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    listed = set(re.findall(r'"((?:msg|action|srv)/\w+\.(?:msg|action|srv))"', cmake))
    on_disk = {str(p.relative_to(ROOT)) for d in ("msg", "action", "srv") for p in (ROOT / d).glob("*.*")}
    assert listed == on_disk


def test_installed_executables_exist_and_name_their_module():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    block = cmake.split("install(PROGRAMS", 1)[1].split("DESTINATION", 1)[0]
    for rel in block.split():
        script = ROOT / rel
        assert script.is_file(), rel
        module = re.search(r"from (lingbot_va_ros\.nodes\.\w+) import main", script.read_text()).group(1)
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{rel} -> {module} does not exist"
