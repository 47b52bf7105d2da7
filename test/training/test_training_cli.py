"""``lingbot-va-train`` command line: exit 2 with a message naming the problem for bad input."""
from __future__ import annotations

import pytest

from lingbot_va_ros.training.cli import main


def test_bad_input_exits_2_with_a_clear_message(tmp_path, tiny_base, synthetic_dataset, capsys):
    assert main(["tiny_cpu", "--set", "num_stepz=3"]) == 2
    assert "num_stepz" in capsys.readouterr().err
    assert main(["no_such_config"]) == 2
    assert "no config 'no_such_config'" in capsys.readouterr().err
    assert main(["tiny_cpu", "--force", "--resume"]) == 2
    assert main(["tiny_cpu", "--dataset", str(synthetic_dataset), "--output", str(tmp_path / "o")]) == 1
    assert "base_checkpoint is not set" in capsys.readouterr().err
    assert main(["tiny_cpu", "--dataset", str(tmp_path / "missing"), "--base-checkpoint", str(tiny_base),
                 "--output", str(tmp_path / "o")]) == 1
    assert "cannot read the dataset" in capsys.readouterr().err
    assert main(["tiny_cpu", "--dataset", str(synthetic_dataset), "--base-checkpoint", str(tmp_path / "nobase"),
                 "--output", str(tmp_path / "o2")]) == 2
    assert "does not exist" in capsys.readouterr().err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert main(["tiny_cpu", "--dataset", str(synthetic_dataset), "--base-checkpoint", str(tiny_base),
                 "--output", str(taken)]) == 2
    assert "--force" in capsys.readouterr().err and (taken / "notes.txt").read_text() == "mine"
    assert main(["tiny_cpu", "--dataset", str(synthetic_dataset), "--base-checkpoint", str(tiny_base),
                 "--output", str(tmp_path / "fresh"), "--set", "episodes=[7]"]) == 1
    assert "episodes [7] are not in the dataset" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--help"])
def test_help(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main([flag])
    assert exc.value.code == 0 and "torchrun" in capsys.readouterr().out
