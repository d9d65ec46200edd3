"""pytest's entry to the suite: the fmnist-bench options, then one plugin object that does the rest.

The hooks are methods of bench.run.plugin.Suite, registered here for a `pytest bench` session
(pytest-benchmark's own pattern); the fixtures the cases ask for are bench/run/fixtures.py.
docs/design.md says what each stage of bench/ does and may import.
"""

import pytest

from bench.run.options import add_options
from bench.run.plugin import configure


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    configure(config)
