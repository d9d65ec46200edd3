"""python -m bench <command>: one entry for every command besides `pytest bench`, and the old names still work."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import COMMANDS, main

REPO = Path(__file__).resolve().parent.parent
OLD_NAMES = {"bench.report": "report", "bench.compare": "compare", "bench.recover": "recover", "bench.cost": "cost",
             "bench.check_gpu": "check-gpu", "bench.check_warmup": "check-warmup",
             "bench.check_telemetry": "check-telemetry", "bench.check_allocator": "check-allocator"}  # fmt: skip


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_its_help(command):
    done = _python("-m", "bench", command, "--help")
    assert done.returncode == 0, done.stderr
    assert f"python -m bench {command}" in done.stdout  # its usage names it as it is run


@pytest.mark.parametrize("module", sorted(OLD_NAMES))
def test_the_old_module_names_run_the_same_commands(module):
    done = _python("-m", module, "--help")
    assert done.returncode == 0, done.stderr
    assert f"python -m bench {OLD_NAMES[module]}" in done.stdout


def test_the_entry_lists_its_commands_and_refuses_an_unknown_one(capsys):
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in COMMANDS)
    assert main(["nope"]) == 2
    assert "'nope' is not a command" in capsys.readouterr().err
    assert main([]) == 2  # no command: the usage, and a usage error's status
