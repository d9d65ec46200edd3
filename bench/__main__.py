"""The commands besides `pytest bench`: python -m bench <command> [ARGS] (python -m bench --help lists them)."""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main", "run", "text_streams"]

# command -> (module whose main(argv) runs it, what it does). Imported only when run: the report's
# commands never import torch, the measuring ones need it.
COMMANDS = {
    "report": ("bench.report.cli", "every saved run under PATHS to tables, plots and one page"),
    "compare": (
        "bench.report.compare",
        "two saved runs of one machine, case by case, with their noise",
    ),
    "recover": (
        "bench.format.journal",
        "the journals of killed runs to saved runs marked incomplete",
    ),
    "cost": (
        "bench.run.cost",
        "how long a run with these options will take here, before running it",
    ),
    "check-gpu": (
        "bench.check.gpu",
        "the training step as CUDA graphs and its variants, interleaved; energy",
    ),
    "check-warmup": (
        "bench.check.warmup",
        "does a short warm-up leave the timed rounds unchanged?",
    ),
    "check-telemetry": (
        "bench.check.telemetry",
        "does the telemetry sampler move the timings it observes?",
    ),
    "check-allocator": ("bench.check.allocator", "what does keeping freed blocks buy?"),
    "check-limits": (
        "bench.check.limits",
        "how far do the limits move when other work holds the cores?",
    ),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {said}" for name, (_module, said) in COMMANDS.items()]
    return (
        "usage: python -m bench <command> [ARGS], or fmnist-bench <command> [ARGS]\n"
        "       (python -m bench <command> --help for its own)\n\ncommands:\n"
        + "\n".join(lines)
        + "\n\nThe suite itself: pytest bench --benchmark-autosave (pytest bench --help)."
    )


def text_streams() -> None:
    """What a command prints is never its crash: a character the terminal's encoding lacks (a file name that
    is not UTF-8 under PYTHONIOENCODING=utf-8, a name in a script an ASCII locale lacks) is written
    escaped."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def run(command: str, argv: list[str] | None = None) -> int:
    """Run one command's main with `argv` (default: the rest of the command line)."""
    text_streams()
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(sys.argv[1:] if argv is None else argv)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] not in COMMANDS:
        print(f"python -m bench: {args[0]!r} is not a command\n\n{_usage()}", file=sys.stderr)
        return 2
    return run(args[0], args[1:])


if __name__ == "__main__":
    sys.exit(main())
