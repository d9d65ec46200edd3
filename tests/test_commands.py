"""python -m bench <command> (or fmnist-bench <command>): one entry for every command besides `pytest bench`."""

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from bench.__main__ import COMMANDS, main

REPO = Path(__file__).resolve().parent.parent


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_its_help(command):
    done = _python("-m", "bench", command, "--help")
    assert done.returncode == 0, done.stderr
    assert f"python -m bench {command}" in done.stdout  # its usage names it as it is run


def test_the_console_script_is_the_same_entry():
    # pip install makes `fmnist-bench <command>` beside `python -m bench <command>`: one main for both.
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("fmnist-bench") == "bench.__main__:main"
    script = Path(sys.executable).parent / "fmnist-bench"
    if not script.exists():
        pytest.skip(f"{script} is not installed here (pip install -e . makes it)")
    done = subprocess.run(
        [str(script), "compare", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "python -m bench compare" in done.stdout, done.stderr


def test_the_entry_lists_its_commands_and_refuses_an_unknown_one(capsys):
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in COMMANDS)
    assert main(["nope"]) == 2
    assert "'nope' is not a command" in capsys.readouterr().err
    assert main([]) == 2  # no command: the usage, and a usage error's status
