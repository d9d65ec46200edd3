"""The house rules of bench/ (docs/design.md): what each stage may import, and where each module belongs."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"

# What each stage may import of the project (its own modules always): the contract (format) is everyone's;
# what the answer and the report derive (analysis) is the run's, the report's and the checks'; the report's
# page and plots are the report's alone. The end-of-run summary imports the analysis modules that need pandas
# inside its function, after the last case: the run stage's modules import none at their top.
ALLOWED = {
    "format": {"format"},
    "analysis": {"analysis", "format"},
    "measure": {"measure", "format", "fmnist_model"},
    "run": {"run", "measure", "analysis", "format", "fmnist_model"},
    "report": {"report", "analysis", "format"},
    "check": {"check", "measure", "analysis", "format", "fmnist_model"},
    "fmnist_model": {"fmnist_model", "format"},
    # conftest.py and the families, bench_*.py; __main__.py imports each command's module when it runs.
    "bench": {"run", "measure", "format", "fmnist_model"},
}
LAZY_EXCEPTIONS: set[tuple[str, str]] = set()
# Every top-level module of bench/ besides __init__: the families, conftest and the command entry.
TOP_LEVEL = {
    "bench_inference.py",
    "bench_limits.py",
    "bench_train.py",
    "bench_transfer.py",
    "conftest.py",
    "__main__.py",
    "__init__.py",
}


def _stage(path: Path) -> str:
    rel = path.relative_to(REPO)
    if rel.parts[0] == "fmnist_model":
        return "fmnist_model"
    return rel.parts[1] if len(rel.parts) > 2 else "bench"


def _project_imports(path: Path) -> list[tuple[str, bool]]:
    """(stage imported, whether at module level) for each import of the project in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom) and node.level
        ):  # the workload's own modules; bench/ names its stages
            assert path.parent.name == "fmnist_model", (
                f"{path}: a relative import; name the stage (bench....)"
            )
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "fmnist_model":
                found.append(("fmnist_model", id(node) in top))
            elif parts[0] == "bench" and len(parts) > 1 and parts[1] in ALLOWED:
                found.append((parts[1], id(node) in top))
    return found


def _modules():
    return sorted([*BENCH.rglob("*.py"), *(REPO / "fmnist_model").glob("*.py")])


def test_no_stage_imports_a_later_one():
    wrong = []
    for path in _modules():
        stage, rel = (
            _stage(path),
            path.relative_to(BENCH).as_posix() if BENCH in path.parents else path.name,
        )
        for imported, at_top in _project_imports(path):
            if imported in ALLOWED[stage]:
                continue
            if (rel, imported) in LAZY_EXCEPTIONS and not at_top:
                continue
            wrong.append(f"{path.relative_to(REPO)} ({stage}) imports bench.{imported}")
    assert not wrong, "\n".join(wrong)


def test_the_rules_catch_an_import_up_the_stages(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from bench.report.page import write_report\n")
    assert _project_imports(bad) == [("report", True), ("report", True)]
    assert "report" not in ALLOWED["measure"] and "analysis" not in ALLOWED["format"]


def test_bench_has_a_folder_per_stage_and_only_the_suite_at_its_top():
    top = {p.name for p in BENCH.glob("*.py")}
    assert top == TOP_LEVEL, (
        f"unexpected at bench/'s top: {sorted(top - TOP_LEVEL)}; missing: {sorted(TOP_LEVEL - top)}"
    )
    stages = {p.name for p in BENCH.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert stages == {"format", "analysis", "measure", "run", "report", "check"}


def test_conftest_is_wiring():
    # Wiring only: the options, then one plugin object (a module's length elsewhere is no rule: split by job).
    assert len((BENCH / "conftest.py").read_text().splitlines()) <= 80


def test_every_module_says_its_job_in_its_first_line():
    missing = [
        p.relative_to(REPO).as_posix()
        for p in BENCH.rglob("*.py")
        if not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert not missing, missing


@pytest.mark.parametrize(
    ("stage", "forbidden"),
    [
        ("format", ("torch", "pandas", "matplotlib", "seaborn", "jinja2", "pyarrow")),
        ("analysis", ("torch", "matplotlib", "seaborn", "jinja2")),
        ("report", ("torch",)),
        # The session never loads the report's libraries while it measures: the summary imports them lazily.
        ("run", ("pandas", "matplotlib", "seaborn", "jinja2", "pyarrow")),
        ("measure", ("pandas", "matplotlib", "seaborn", "jinja2", "pyarrow")),
    ],
)
def test_what_a_stage_imports_at_run_time(stage, forbidden):
    # Every module of the stage imported in a fresh interpreter: none of `forbidden` may come with them.
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (BENCH / stage).rglob("*.py")
        if p.name != "__main__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print([m for m in {list(forbidden)!r} if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.strip() == "[]", f"bench.{stage} imported {done.stdout.strip()}"


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _imports_of(path: Path) -> set[str]:
    """The project's modules `path` imports, anywhere in it (a function's import makes a circle too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_of(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_of(path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # the workload's relative imports
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                )
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {m.strip(".") for m in found if m.split(".")[0] in ("bench", "fmnist_model")}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle of imports among the modules of `graph`, each once, as a path that comes back to its start."""
    found, seen = [], set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == path[0]:
                cycle = path + [nxt]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    found.append(cycle)
            elif nxt not in path and nxt > path[0]:
                walk(nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def test_no_module_imports_itself_through_others():
    paths = [*BENCH.rglob("*.py"), *(REPO / "fmnist_model").glob("*.py")]
    modules = {_module_of(p): p for p in paths}
    graph = {
        name: {m for m in _imports_of(p) if m in modules and m != name}
        for name, p in modules.items()
    }
    assert _circles(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_a_bench_session_loads_no_plotting_library(tmp_path):
    # After a whole quick run and its end-of-run answer, in the same process: no matplotlib, no seaborn, no
    # jinja2 (the report's), though the answer is worded from the analysis the report shares.
    plugin = tmp_path / "loaded.py"
    plugin.write_text(
        "import sys\n"
        "def pytest_unconfigure(config):\n"
        f"    open({str(tmp_path / 'loaded.txt')!r}, 'w').write(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "-p", "loaded", "--quick",
         "--devices", "cpu", "-k", "limits and operation", "--data-root", str(tmp_path / "no-data"),
         f"--benchmark-json={tmp_path / 'run.json'}"],
        cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{REPO}"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "is the GPU faster here?" in done.stdout  # the answer was worded
    loaded = set((tmp_path / "loaded.txt").read_text().split())
    assert not loaded & {"matplotlib", "seaborn", "jinja2"}, sorted(
        loaded & {"matplotlib", "seaborn", "jinja2"}
    )
