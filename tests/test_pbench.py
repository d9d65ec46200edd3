"""Each touch of pytest-benchmark's internals (bench/run/pbench.py), held to the installed version.

A pytest-benchmark release that moves one of them fails here, naming it, before a run fails in
ways no single module owns. The end-to-end runs (test_suite.py, test_interrupt.py) use them for real.
"""

import inspect
from pathlib import Path

import pytest
import pytest_benchmark
from pytest_benchmark import fixture, session, stats, utils
from pytest_benchmark.storage.file import FileStorage

from bench.run import pbench


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def test_the_installed_version_is_within_those_the_touches_were_checked_against():
    installed = _version(pytest_benchmark.__version__)
    checked = sorted(map(_version, pbench.CHECKED_WITH))
    # Within 5.x, from the oldest checked: a newer 5.x is held by the tests below; a 6 needs a new check.
    assert installed[0] == checked[-1][0] == 5 and installed >= checked[0], (
        f"pytest-benchmark {pytest_benchmark.__version__}: bench/run/pbench.py was checked with {pbench.CHECKED_WITH}"
    )


def test_the_session_is_on_the_config_as_benchmarksession():
    # pytest_benchmark.plugin.pytest_configure: config._benchmarksession = BenchmarkSession(config)
    source = inspect.getsource(pytest_benchmark.plugin.pytest_configure)
    assert "config._benchmarksession = BenchmarkSession(config)" in source


def test_the_session_saves_through_storage_save_and_save_json():
    source = inspect.getsource(session.BenchmarkSession.handle_saving)
    assert "self.storage.save(output_json, save)" in source, (
        "FileStorage.save is no longer how a run is saved"
    )
    assert "self.save_json(output_json)" in source, (
        "save_json is no longer how --benchmark-json is written"
    )
    assert _params(FileStorage.save) == ["self", "output_json", "save"]
    assert _params(session.BenchmarkSession.save_json) == ["self", "output_json"]
    assert hasattr(FileStorage, "get"), "the suite tells a file storage by its get()"


def test_the_session_keeps_its_benchmarks_and_run_names_where_the_suite_reads_them():
    source = inspect.getsource(session.BenchmarkSession.__init__)
    for attribute in (
        "self.benchmarks",
        "self.json",
        "self.save",
        "self.autosave",
        "self.logger",
        "self.storage",
    ):
        assert attribute in source, f"BenchmarkSession no longer sets {attribute}"
    assert callable(session.BenchmarkSession.get_machine_info)


def test_a_fixture_can_be_marked_skipped_and_its_stats_read():
    source = inspect.getsource(fixture.BenchmarkFixture.__init__)
    assert "self.skipped = False" in source and "self.stats = None" in source
    assert "include_data" in _params(stats.Metadata.as_dict)


def test_the_utilities_the_suite_uses_are_where_they_were():
    assert _params(utils.safe_dumps)[0] == "obj" and callable(utils.get_machine_id)
    assert pbench.dumps(
        {"x": float("inf"), "p": Path("a")}, ensure_ascii=True
    )  # what json alone cannot write
    assert pbench.machine_folder(Path("/r")).parent == Path("/r")


def test_the_default_storage_is_pytest_benchmarks_own():
    # The suite tells "not given" from the option's value: it must still be pytest-benchmark's default.
    from pytest_benchmark import plugin

    assert f'default="{pbench.DEFAULT_STORAGE}"' in inspect.getsource(plugin).replace("'", '"')


@pytest.mark.parametrize(
    ("storage", "folder"),
    [
        ("file://./r", Path("r").resolve()),
        ("r2", Path("r2").resolve()),
        ("elasticsearch+http://h", None),
    ],
)
def test_storage_folder(storage, folder):
    assert pbench.storage_folder(storage) == folder


def test_an_unstarted_case_is_marked_skipped_a_started_one_left_alone():
    class Fixture:
        stats, skipped = None, False

    unstarted, started = Fixture(), Fixture()
    started.stats = object()
    pbench.drop_unstarted(unstarted)
    pbench.drop_unstarted(started)
    pbench.drop_unstarted(None)
    assert unstarted.skipped and not started.skipped


def test_a_finished_case_is_read_through_its_metadata():
    source = inspect.getsource(stats.Metadata.__init__)
    assert "self.stats = Stats()" in source and "self.fullname = fixture.fullname" in source
    assert "self.data" in inspect.getsource(stats.Stats.__init__)
    assert (
        pbench.finished_stats(None) is None
        and pbench.finished_stats(type("F", (), {"stats": None})()) is None
    )


def test_its_tables_follow_the_sessions_quiet_and_its_header_is_recognised():
    # BenchmarkSession.display draws the tables only where self.quiet is false (hide_tables sets it).
    source = inspect.getsource(session.BenchmarkSession.display)
    assert "if not self.quiet:" in source and "results_table.display" in source
    assert "self.quiet" in inspect.getsource(session.BenchmarkSession.__init__)
    # pytest_report_header returns the one line the suite rewords.
    fake = type("Config", (), {})()
    fake._benchmarksession = type("Session", (), {})()
    fake._benchmarksession.options = {
        "disable_gc": False,
        "min_rounds": 5,
        "min_time": 5e-06,
        "max_time": 1.0,
        "calibration_precision": 10,
        "warmup": False,
        "warmup_iterations": 100000,
        "timer": "perf_counter",
    }
    line = pytest_benchmark.plugin.pytest_report_header(fake)
    assert pbench.is_its_header(line) and not pbench.is_its_header([line])
    assert pbench.header_said().startswith(f"benchmark: {pytest_benchmark.__version__} (")
    assert len(pbench.header_said()) <= 100


@pytest.mark.parametrize(
    "asked, hidden",
    [
        ({}, True),
        ({"benchmark_histogram": "/tmp/h"}, False),
        ({"benchmark_compare": "0001"}, False),
        ({"benchmark_cprofile": "tottime"}, False),
    ],
)
def test_the_tables_are_hidden_unless_what_they_draw_was_asked_for(asked, hidden):
    # pytest-benchmark draws a histogram's files, a comparison's columns and cProfile's lists in its tables'
    # display: hiding the tables would leave them out with no word.
    from types import SimpleNamespace

    none = {"benchmark_histogram": None, "benchmark_compare": None, "benchmark_cprofile": None}
    option = SimpleNamespace(**{**none, **asked})
    config = SimpleNamespace(option=option, _benchmarksession=SimpleNamespace(quiet=False))
    pbench.hide_tables(config)
    assert config._benchmarksession.quiet is hidden
