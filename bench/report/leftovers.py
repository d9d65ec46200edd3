"""A report's temporary files and folders: named by host and process, so the next report removes a killed one's.

A report writes each thing whole: a new output folder beside --out, a new rows.parquet, a drawing
in the cache, each under a temporary name first, then renamed. A report killed outright (SIGKILL,
the out-of-memory killer, a power cut) leaves those temporaries behind; their names say which host
and process made them, so a later report removes the ones whose process is gone.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from bench.format.store import alive

__all__ = ["left_behind", "remove", "temporary_prefix"]

# Which machine made a temporary: a process id means something only on the machine that gave it.
_HOST = hashlib.sha256(platform.node().encode("utf-8", "surrogatepass")).hexdigest()[:8]
# Another machine's temporary (a results tree on shared storage) cannot be asked about its process:
# a report takes minutes at a thousand machines, so one a day old was killed.
_STALE_S = 86400


def temporary_prefix(head: str) -> str:
    """The start of a temporary's name: `head`, this host and this process (tempfile adds a random part)."""
    return f"{head}-{_HOST}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    """Whether a process of this id runs here, a zombie counted as ended."""
    if not alive(pid):
        return False
    try:  # Linux: a zombie has ended (its parent died before reaping it, and no init reaps it in a container)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def left_behind(folder: Path, head: str) -> Iterator[Path]:
    """The temporaries in `folder` named by temporary_prefix(`head`) whose report is gone: this host's whose
    process has ended, any host's a day old. Only this user's: another's is theirs to remove."""
    named = re.compile(re.escape(head) + r"-([0-9a-f]{8})-([0-9]{1,10})-")
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no such folder, or not one we may read: nothing of ours there
        return
    now = time.time()
    for entry in entries:
        found = named.match(entry.name)
        if found is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:  # removed meanwhile
            continue
        if info.st_uid != os.geteuid():
            continue
        host, pid = found.group(1), int(found.group(2))
        if (host == _HOST and not _alive(pid)) or now - info.st_mtime > _STALE_S:
            yield Path(entry.path)


def remove(paths) -> None:
    """Remove each path, a folder with what it holds (a link is removed, never followed)."""
    for path in paths:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:  # another report removed it first, or it cannot be: left
            continue
