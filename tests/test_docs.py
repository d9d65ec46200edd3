"""The README and docs/ held to the code: every suite option and its default, every link, every command shown, the README's length."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
OPTIONS_MD = ROOT / "docs" / "options.md"
# The README is a guide, the reference lives in docs/ (STYLE.md: pytest-benchmark's is about 190 lines).
README_MAX_LINES = 200
# `python -m bench <command>` is the entry point; until bench/__main__.py exists each command is
# still its own module (bench.check_gpu for check-gpu), and that is what the commands run.
ENTRY_POINT = ROOT / "bench" / "__main__.py"
# One line per option: argparse wraps help at the terminal's width and may break words at hyphens.
ENV = {**os.environ, "COLUMNS": "1000"}

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SAMPLE = re.compile(r"<!--\s*sample:\s*(\S+?)(?:,\s*first\s+\d+\s+lines)?\s*-->")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_DEFAULT = re.compile(r"\(default: ([^()]*)\)")


def _python(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _squash(text: str) -> str:
    return " ".join(text.replace("`", "").split())


# --- reading Markdown ---------------------------------------------------------------------------


def split_markdown(text: str) -> tuple[list[str], list[list[str]]]:
    """The prose lines (fenced code blanked, so line numbers hold) and the fenced code blocks' lines."""
    prose, blocks, block = [], [], None
    for line in text.splitlines():
        if _FENCE.match(line):
            if block is None:
                block = []
            else:
                blocks.append(block)
                block = None
            prose.append("")
        elif block is not None:
            block.append(line)
            prose.append("")
        else:
            prose.append(line)
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lowercased, punctuation dropped, spaces to hyphens."""
    text = _CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link renders as its text
    text = re.sub(r"[*]|(?<!\w)_|_(?!\w)|<[^>]+>", "", text)  # emphasis and inline HTML
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file, a repeated one numbered as GitHub numbers it."""
    prose, _ = split_markdown(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for line in prose:
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Each relative link or image in a Markdown file that does not resolve, and why (with its line)."""
    prose, _ = split_markdown(path.read_text(encoding="utf-8"))
    problems = []
    for number, line in enumerate(prose, 1):
        text = _CODE_SPAN.sub(lambda m: "code", line)  # a link written in code is not a link
        targets = [m.group(2) for m in _LINK.finditer(text)] + _SAMPLE.findall(line)
        for target in targets:
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.name}:{number}: {target}"
            if not dest.is_relative_to(root.resolve()):
                problems.append(f"{where}: outside the repository")
            elif not dest.exists():
                problems.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where}: no heading '#{anchor}' in {dest.name}")
            elif (
                anchor
                and dest.suffix != ".md"
                and f'id="{anchor}"' not in dest.read_text(errors="replace")
            ):
                problems.append(f"{where}: no id '{anchor}' in {dest.name}")
    return problems


# --- the suite's options --------------------------------------------------------------------------


def suite_options(help_text: str) -> dict[str, str | None]:
    """`pytest bench --help`'s fmnist-bench group: each option and its `(default: X)` text (None: a flag)."""
    lines = help_text.splitlines()
    start = lines.index("fmnist-bench:") + 1
    helps: dict[str, list[str]] = {}
    current = None
    for line in lines[start:]:
        if not line.strip():
            break
        m = re.match(r"\s{2}(--[a-z][a-z0-9-]*)", line)
        if m:
            current = m.group(1)
            helps[current] = [line[m.end() :]]
        elif current is not None:
            helps[current].append(line)
    out = {}
    for option, text in helps.items():
        defaults = _DEFAULT.findall(" ".join(text))
        out[option] = " ".join(defaults[-1].split()) if defaults else None
    return out


def documented_options(markdown: str) -> dict[str, str]:
    """docs/options.md's table of the suite's options: each option and its default cell (backticks dropped)."""
    section = markdown.split("## The suite's options", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        if not line.startswith("| `--"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        option = _LONG_OPTION.search(cells[0]).group(0)
        out[option] = _squash(cells[1].replace("\\|", "|"))
    return out


def option_problems(options: dict[str, str | None], documented: dict[str, str]) -> list[str]:
    """Options missing from the docs, documented with another default, or documented but gone."""
    problems = []
    for option, default in options.items():
        if option not in documented:
            problems.append(f"{option}: not in docs/options.md")
        elif documented[option] != (default if default is not None else "off"):
            problems.append(
                f"{option}: docs/options.md says {documented[option]!r}, --help says {default!r}"
            )
    problems += [
        f"{option}: in docs/options.md, not in --help"
        for option in documented
        if option not in options
    ]
    return problems


# --- the commands shown ---------------------------------------------------------------------------


def shown_commands(paths: list[Path]) -> dict[str, list[str]]:
    """The `python -m bench ...` and `pytest bench ...` lines of the code blocks, by command: bench <cmd>, a module, or pytest bench."""
    out: dict[str, list[str]] = {}
    for path in paths:
        _, blocks = split_markdown(path.read_text(encoding="utf-8"))
        for line in (line for block in blocks for line in block):
            for part in line.strip().removeprefix("$ ").split("&&"):
                try:
                    words = shlex.split(part, comments=True)
                except ValueError:
                    continue
                if words[:3] == ["python", "-m", "bench"] and len(words) > 3:
                    key = f"bench {words[3]}"
                elif (
                    words[:2] == ["python", "-m"]
                    and len(words) > 2
                    and words[2].startswith("bench.")
                ):
                    key = words[2]
                elif words[:2] == ["pytest", "bench"] or words[:4] == [
                    "python",
                    "-m",
                    "pytest",
                    "bench",
                ]:
                    key = "pytest bench"
                else:
                    continue
                out.setdefault(key, []).append(part.split("#", 1)[0].strip())
    return out


def help_command(key: str) -> list[str]:
    """The arguments after `python` that print the command's --help, through the entry point once it exists."""
    if key == "pytest bench":
        return ["-m", "pytest", "bench", "--help"]
    if key.startswith("bench "):
        command = key.removeprefix("bench ")
        if ENTRY_POINT.exists():
            return ["-m", "bench", command, "--help"]
        return ["-m", f"bench.{command.replace('-', '_')}", "--help"]
    return ["-m", key, "--help"]


def unknown_options(lines: list[str], help_text: str, pytest_help: str) -> list[str]:
    """Long options the lines use that the command's --help does not list (after a bare `--`: pytest bench's)."""
    problems = []
    for line in lines:
        own, _, passed = line.partition(" -- ")
        for text, known in ((own, help_text), (passed, pytest_help)):
            for option in _LONG_OPTION.findall(text):
                if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", known):
                    problems.append(f"{line}: {option}")
    return problems


COMMANDS = shown_commands(DOCS)


@pytest.fixture(scope="module")
def pytest_help() -> str:
    done = _python("-m", "pytest", "bench", "--help")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# --- (a) every suite option in docs/options.md, with its default -----------------------------------


def test_options_page_lists_every_option_with_its_default(pytest_help):
    options = suite_options(pytest_help)
    assert "--devices" in options and "--quick" in options, "the fmnist-bench group was not parsed"
    assert (
        option_problems(options, documented_options(OPTIONS_MD.read_text(encoding="utf-8"))) == []
    )


def test_pytest_benchmark_options_named_in_the_docs_exist(pytest_help):
    named = {o for path in DOCS for o in _LONG_OPTION.findall(path.read_text(encoding="utf-8"))}
    benchmark = sorted(o for o in named if o.startswith("--benchmark-"))
    assert "--benchmark-autosave" in benchmark
    assert [o for o in benchmark if not re.search(rf"(?<![\w-]){o}(?![\w-])", pytest_help)] == []


def test_option_check_finds_a_wrong_default_a_missing_option_and_a_stale_one():
    options = {"--devices": "every device", "--quick": None, "--telemetry": "on"}
    page = (
        "## The suite's options\n\n| option | default | meaning |\n| --- | --- | --- |\n"
        "| `--devices cpu` | every device | x |\n| `--quick` | off | x |\n| `--gone` | 1 | x |\n"
        "| `--warmup-batches N\\|all` | 3 | x |\n\n## Other\n| `--telemetry` | on | x |\n"
    )
    documented = documented_options(page)
    assert documented == {
        "--devices": "every device",
        "--quick": "off",
        "--gone": "1",
        "--warmup-batches": "3",
    }
    assert option_problems(options, documented) == [
        "--telemetry: not in docs/options.md",
        "--gone: in docs/options.md, not in --help",
        "--warmup-batches: in docs/options.md, not in --help",
    ]
    assert option_problems({"--devices": "all of them"}, {"--devices": "every device"}) != []


def test_help_parser_reads_defaults_across_wrapped_lines():
    text = (
        "fmnist-bench:\n  --devices=DEVICES     what (default: every\n                        device)\n"
        "  --quick               smoke run\n  --ladder=LADDER       default: a; full: b (default:\n"
        "                        default)\n\nnext:\n  --other (default: 1)\n"
    )
    assert suite_options(text) == {
        "--devices": "every device",
        "--quick": None,
        "--ladder": "default",
    }


# --- (b) every relative link and image resolves --------------------------------------------------


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(path):
    assert broken_links(path) == []


def test_link_check_finds_broken_links_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "# A page\n\n## The `--quick` run's time\n\n## Twice\n\n## Twice\n"
    )
    (tmp_path / "pic.png").write_bytes(b"")
    doc = tmp_path / "README.md"
    doc.write_text(
        "[ok](docs/a.md#the---quick-runs-time) [ok](docs/a.md#twice-1) ![ok](pic.png) [ok](#top) [web](https://x.org/y)\n"
        "`[in code](nowhere.md)`\n```\n[in a block](nowhere.md)\n```\n"
        "[gone](docs/b.md) ![gone](docs/pic.png) [bad anchor](docs/a.md#twice-2) [out](../elsewhere.md)\n"
        "<!-- sample: results/none.json -->\n# Top\n"
    )
    problems = broken_links(doc, root=tmp_path)
    assert [p.split(": ")[1] for p in problems] == [
        "docs/b.md",
        "docs/pic.png",
        "docs/a.md#twice-2",
        "../elsewhere.md",
        "results/none.json",
    ]


# The end-of-run answer as the docs show it: a machine without a GPU in the README (its verdict) and in the report's doc
# (whole), one with a GPU in the report's doc.
SAMPLED = (README, ROOT / "docs" / "report.md")


def test_samples_name_committed_runs():
    for doc in SAMPLED:
        samples = _SAMPLE.findall(doc.read_text(encoding="utf-8"))
        assert samples, doc
        # A committed run, named relative to the doc as its links are.
        assert all(
            (doc.parent / s).resolve().is_relative_to(ROOT / "results" / "reference")
            for s in samples
        ), doc


def sample_blocks(text: str) -> list[tuple[str, str, str]]:
    """(run file, its first lines shown or "", the code block after it) for each sample comment: a sample of
    the first N lines says so (`<!-- sample: RUN, first N lines -->`) and ends in "..."."""
    return re.findall(
        r"<!--\s*sample:\s*(\S+?)(?:,\s*first\s+(\d+)\s+lines)?\s*-->\n```\n(.*?)```", text, re.S
    )


def sample_of(run: dict, first: str) -> str:
    """What a sample block holds for `run`: the whole end-of-run answer, or its first lines then "..."."""
    from bench.run.summary import end_summary

    lines = end_summary(run)
    if first:
        lines = [*lines[: int(first)], "..."]
    return "\n".join(lines) + "\n"


def test_the_samples_are_what_the_end_of_run_answer_says_for_their_runs():
    import json

    blocks = [
        (doc.parent / p, first, b)
        for doc in SAMPLED
        for p, first, b in sample_blocks(doc.read_text(encoding="utf-8"))
    ]
    assert len(blocks) >= 2
    for path, first, block in blocks:
        run = json.loads(path.read_text(encoding="utf-8"))
        assert block == sample_of(run, first), (
            f"the docs' sample of {path} is not what the summary says"
        )
    cpu = [b for _, _, b in blocks if b.startswith("No GPU here. Reference: another machine's")]
    gpu = [b for _, _, b in blocks if "GPU speedup over the CPU" in b]
    assert cpu and gpu
    # the README's first sample: the verdict, a ratio with its interval, in its first lines
    readme = sample_blocks((ROOT / "README.md").read_text(encoding="utf-8"))[0][2]
    assert re.search(r"\d\.\d\dx (faster|slower) \(.*\d-\d", "\n".join(readme.splitlines()[:6]))


# --- (c) every command shown runs ------------------------------------------------------------------


def test_commands_are_found():
    assert {"pytest bench", "bench report", "bench compare"} <= set(COMMANDS), sorted(COMMANDS)
    assert not [k for k in COMMANDS if k.startswith("bench.")], "write `python -m bench <command>`"


def test_command_collection_reads_blocks_only(tmp_path):
    doc = tmp_path / "a.md"
    doc.write_text(
        "python -m bench report\n```bash\n$ python -m bench check-gpu --rounds 3   # a comment\n"
        "cd x && pytest bench --quick\npython -m bench.cost a.json\npython -m pytest\n```\n"
    )
    assert shown_commands([doc]) == {
        "bench check-gpu": ["python -m bench check-gpu --rounds 3"],
        "pytest bench": ["pytest bench --quick"],
        "bench.cost": ["python -m bench.cost a.json"],
    }
    assert help_command("bench check-gpu") == (
        ["-m", "bench", "check-gpu", "--help"]
        if ENTRY_POINT.exists()
        else ["-m", "bench.check_gpu", "--help"]
    )
    assert unknown_options(
        ["x --rounds 3 --nope -- --devices cpu --also-nope"], "--rounds", "--devices"
    ) == [
        "x --rounds 3 --nope -- --devices cpu --also-nope: --nope",
        "x --rounds 3 --nope -- --devices cpu --also-nope: --also-nope",
    ]


@pytest.mark.parametrize("key", sorted(COMMANDS))
def test_shown_command_runs_with_help(key, pytest_help):
    if key == "pytest bench":
        help_text = pytest_help
    else:
        done = _python(*help_command(key))
        assert done.returncode == 0, (
            f"python {' '.join(help_command(key))}:\n{done.stdout}{done.stderr}"
        )
        help_text = done.stdout
    assert unknown_options(COMMANDS[key], help_text, pytest_help) == []


def test_quick_suite_collects(tmp_path):
    # --benchmark-storage: pytest-benchmark creates its storage folder even when it only collects.
    done = _python(
        "-m", "pytest", "bench", "--collect-only", "-q", "--quick", "-p", "no:cacheprovider",
        f"--benchmark-storage=file://{tmp_path}",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\d+ tests? collected", done.stdout), done.stdout


# --- (d) the README stays a guide ------------------------------------------------------------------


def test_readme_is_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= README_MAX_LINES


def test_readme_keeps_ci_test_command():
    # .ci/run runs the test command written in the README's Development section.
    development = README.read_text(encoding="utf-8").split("## Development", 1)[1]
    assert "python -m pytest" in development


def test_the_format_history_in_the_docs_is_the_format_modules():
    from bench.format.records import FORMAT_VERSION, HISTORY

    docs = " ".join((ROOT / "docs" / "saved-runs.md").read_text(encoding="utf-8").split())
    assert sorted(HISTORY) == list(range(1, FORMAT_VERSION + 1))  # every version has its entry
    for version, text in HISTORY.items():
        assert f"{version}. {' '.join(text.split())}" in docs, (
            f"docs/saved-runs.md lacks format {version}'s history"
        )


def test_the_field_reference_in_the_docs_is_written_from_the_records():
    from bench.format.reference import markdown

    text = (ROOT / "docs" / "saved-runs.md").read_text(encoding="utf-8")
    assert markdown() in text, (
        "docs/saved-runs.md's field reference is not the records': run python -m bench.format.reference"
    )


def test_the_field_reference_names_every_field_of_every_record():
    from bench.format.reference import _records, markdown

    written = markdown()
    for _path, record in _records():
        assert f"#### {record.__name__}\n" in written
        for name, spec in record.specs().items():
            if spec.kind != "rest":
                assert f"| `{spec.name or name}` |" in written, (record.__name__, name)
