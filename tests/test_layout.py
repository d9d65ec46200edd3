"""The house rules of bench/ (docs/design.md): what each stage may import, and where each module belongs."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"

# What each stage may import of the project (its own modules always). The end-of-run summary reads
# the run's rows through the report, after the last case: the one import of a later stage, and lazy.
ALLOWED = {
    "record": {"record"},
    "measure": {"measure", "record", "fmnist_model"},
    "run": {"run", "measure", "record", "fmnist_model"},
    "report": {"report", "record"},
    "check": {"check", "measure", "record", "fmnist_model"},
    "fmnist_model": {"fmnist_model", "record"},
    "bench": {
        "run",
        "measure",
        "record",
        "fmnist_model",
    },  # conftest.py and the families, bench_*.py
}
LAZY_EXCEPTIONS = {("run/summary.py", "report")}
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
    bad.write_text("from bench.report.figures import ladder\n")
    assert _project_imports(bad) == [("report", True), ("report", True)]
    assert "report" not in ALLOWED["measure"]


def test_bench_has_a_folder_per_stage_and_only_the_suite_at_its_top():
    top = {p.name for p in BENCH.glob("*.py")}
    assert top == TOP_LEVEL, (
        f"unexpected at bench/'s top: {sorted(top - TOP_LEVEL)}; missing: {sorted(TOP_LEVEL - top)}"
    )
    assert {p.name for p in BENCH.iterdir() if p.is_dir() and not p.name.startswith("__")} == {
        "measure", "run", "record", "report", "check"}  # fmt: skip


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
        ("record", ("torch", "pandas", "matplotlib")),
        ("report", ("torch",)),
        # The session never loads the report's libraries while it measures: the summary imports them lazily.
        ("run", ("pandas", "matplotlib", "seaborn", "jinja2")),
        ("measure", ("pandas", "matplotlib", "seaborn", "jinja2")),
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
