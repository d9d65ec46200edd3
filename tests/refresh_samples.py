"""Rewrite the end-of-run samples in README.md and docs/report.md from their runs, as the summary words them now.

tests/test_docs.py holds each sample to what `end_summary` says for the run its comment names; after a change of
wording, run this from the repo root (python tests/refresh_samples.py) and read the diff before committing it.
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run.summary import end_summary  # noqa: E402

SAMPLED = (ROOT / "README.md", ROOT / "docs" / "report.md")
_BLOCK = re.compile(
    r"(<!--\s*sample:\s*(\S+?)(?:,\s*first\s+(\d+)\s+lines)?\s*-->\n```\n)(.*?)(```)", re.S
)


def refreshed(doc: Path) -> str:
    def block(match: re.Match) -> str:
        run = json.loads((doc.parent / match.group(2)).read_text(encoding="utf-8"))
        lines = end_summary(run)
        if match.group(3):
            lines = [*lines[: int(match.group(3))], "..."]
        return match.group(1) + "\n".join(lines) + "\n" + match.group(5)

    return _BLOCK.sub(block, doc.read_text(encoding="utf-8"))


if __name__ == "__main__":
    for doc in SAMPLED:
        doc.write_text(refreshed(doc), encoding="utf-8")
        print(f"rewrote the samples in {doc.relative_to(ROOT)}")
