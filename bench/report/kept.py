"""The pages and pictures a fleet's report keeps: drawn once, sealed with this user's key, verified before use.

A machine's page depends only on its rows (and the reference runs), so it is drawn once and kept in
the report's cache (.report-cache/drawn/) for the reports after it. A results tree may come from
anyone, and its cache with it, so a kept page is used only where it is what this user's report drew:
each drawn folder is named by an HMAC, under the user's own key, of what it shows, and holds a
manifest (.done) of its files' SHA-256, sealed by the same key. Before a kept file goes into a
report it is read (never through a link) and held against its manifest; only the files the manifest
names, as regular files, are ever placed. A page edited, a manifest forged or copied from another
cache, a link planted in a folder: none is used, and the page is drawn again. The key is made once
per user, readable by that user alone, in $XDG_CONFIG_HOME/fmnist-bench/report-key (~/.config by
default), beside the machine's id.

A cache that cannot help only costs time: a folder that cannot be written (read-only, another
user's, a file where a folder should be) is warned about once, and the page is drawn for this
report alone. Drawing is spread over the cores in spawned processes, which end with the report,
however it ends (bench/report/leftovers.py removes what a killed one left).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import stat
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.report.cache import CacheWarning
from bench.report.leftovers import left_behind, remove, temporary_prefix

__all__ = ["Kept", "user_key"]

_KEEP_DAYS = 14  # a drawn page or picture no report used for this long leaves the cache
_DRAWING = ".drawing"  # a drawing's temporary folder, in its shard until it is whole
_SCRATCH = "fmnist-report"  # pages drawn for one report alone, in the system's temporary folder
_MAX_MANIFEST = 2**20  # a manifest names a dozen files
# a page's pictures are a few hundred kB: a larger file is not one the report drew
_MAX_FILE = 256 * 2**20
# a name in one folder: never a path, . or ..
_FILE_NAME = re.compile("\\.?[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}")
_KEY_FILE = "report-key"


def _read(path: Path, limit: int) -> tuple[bytes, os.stat_result]:
    """A regular file's bytes and what it is, never through a link (O_NOFOLLOW), never a FIFO or a device;
    OSError or ValueError say why not."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > limit:
            raise ValueError(f"larger than {limit:,} bytes")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit:,} bytes")
    return data, info


def _config_folder() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME") or ""
    # (a relative one is ignored: XDG)
    return Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"


def user_key() -> tuple[bytes | None, str]:
    """(this user's key for sealing kept pages, where it is kept), or (None, why there is none): made once, then
    read back; a key another user owns or could read is not one (it could seal pages for this user).
    """
    try:
        path = _config_folder() / "fmnist-bench" / _KEY_FILE
    except RuntimeError as exc:  # no HOME and no passwd entry
        return None, f"no config folder to keep the report's key in ({exc})"
    for _attempt in range(2):  # a second look: another report may have made it in between
        try:
            data, info = _read(path, 4096)
        except FileNotFoundError:
            data = None
        except (OSError, ValueError) as exc:
            return None, f"{path} cannot be read ({exc})"
        if data is not None:
            if info.st_uid != os.geteuid() or info.st_mode & 0o077:
                return None, f"{path} is another user's, or others may read it"
            try:
                return bytes.fromhex(data.decode("ascii").strip()), str(path)
            except (UnicodeDecodeError, ValueError):
                return None, f"{path} holds no key (remove it to make a new one)"
        made = secrets.token_hex(32)
        tmp = path.with_name(f".{_KEY_FILE}-{made[:16]}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(made + "\n")
            os.link(tmp, path)  # whole, and never over another's: two first reports keep one key
        except FileExistsError:
            continue
        except OSError as exc:
            return None, f"the report's key cannot be kept in {path} ({exc.strerror or exc})"
        finally:
            try:
                tmp.unlink()
            except OSError:
                pass
        return bytes.fromhex(made), str(path)
    return None, f"{path} exists but cannot be read as a file"


def _seal(key: bytes, name: str, files: dict[str, str]) -> str:
    """What only this user's report can write: an HMAC of a folder's name and its files' hashes."""
    text = name + "\0" + json.dumps(files, sort_keys=True)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _Place:
    """Where a key's drawing goes (sent to the drawing processes): the cache's drawn/ folder, or None where it
    cannot be used; the scratch folder of this report; the key that names and seals each drawing."""

    root: Path | None
    scratch: Path
    key: bytes

    def name(self, key: str) -> str:
        return hmac.new(self.key, key.encode(), hashlib.sha256).hexdigest()

    def folder(self, root: Path, key: str) -> Path:
        name = self.name(key)
        return root / name[:2] / name


def _manifest(place: _Place, folder: Path) -> dict[str, str] | None:
    """The files a drawn folder holds, as its sealed manifest names them; None where it is not a folder this
    user's report drew (no manifest, not sealed by this user's key, not the manifest of this
    folder)."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return None
        data, _info = _read(folder / ".done", _MAX_MANIFEST)
        manifest = json.loads(data)
        files, sealed = manifest["files"], manifest["seal"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(files, dict) or not isinstance(sealed, str):
        return None
    if not all(
        isinstance(n, str) and _FILE_NAME.fullmatch(n) and isinstance(h, str)
        for n, h in files.items()
    ):
        return None
    if not hmac.compare_digest(sealed, _seal(place.key, folder.name, files)):
        return None
    return files


def _draw_into(
    place: _Place, root: Path, key: str, function: Callable, args: tuple, *, again: bool = False
) -> Path:
    """function(folder, *args) into a new folder, sealed and then moved into place whole; that place. `again`: the
    folder there is sealed but not what was drawn (a file changed since), and is replaced whatever
    it is."""
    final = place.folder(root, key)
    shard = final.parent
    shard.mkdir(parents=True, exist_ok=True)
    if shard.is_symlink() or not shard.is_dir():  # (a shard made a link: never written through)
        raise NotADirectoryError(errno.ENOTDIR, "not a folder of the cache's own", str(shard))
    work = Path(tempfile.mkdtemp(prefix=temporary_prefix(_DRAWING), dir=shard))
    try:
        function(work, *args)
        files = {}
        for drawn in sorted(work.iterdir()):
            if not _FILE_NAME.fullmatch(drawn.name) or drawn.is_symlink() or not drawn.is_file():
                raise ValueError(f"a drawing wrote {drawn.name!r}, not a file the report keeps")
            files[drawn.name] = hashlib.sha256(drawn.read_bytes()).hexdigest()
            # a report's file changed in place (a hard link) must not change later reports'
            drawn.chmod(292)
        manifest = {"files": files, "seal": _seal(place.key, final.name, files)}
        (work / ".done").write_text(json.dumps(manifest), encoding="utf-8")
        work.chmod(0o755)  # mkdtemp's folder is private; a shared results tree's reports share it
        try:
            work.rename(final)
        except OSError:
            # not a drawing of this user's as drawn: ours replaces it
            if again or _manifest(place, final) is None:
                aside = Path(tempfile.mkdtemp(prefix=temporary_prefix(_DRAWING), dir=shard))
                final.replace(aside)  # (onto the empty folder just made: a name no one else takes)
                work.rename(final)
                remove([aside])
            # else another report of this user drew it meanwhile, sealed: theirs is kept
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _draw_one(job) -> tuple[str, str, str | None]:
    """(key, where it was drawn, why not in the cache): a drawing the cache cannot take is made in the scratch
    folder, for this report alone."""
    place, key, function, args = job
    error = None
    if place.root is not None:
        try:
            return key, str(_draw_into(place, place.root, key, function, args)), None
        except OSError as exc:
            error = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    return key, str(_draw_into(place, place.scratch, key, function, args)), error


def _worker_started(parent: int) -> None:
    """In each drawing process: Ctrl-C reaches the terminal's whole process group, and the report ends its
    workers itself; and on Linux a worker is sent SIGTERM when the report's process ends, however it
    ends (SIGKILL too), never left orphaned, holding its memory and the resource tracker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the report ended before the request was made
            os._exit(1)


def _in_workers(jobs: list, workers: int, each: Callable) -> None:
    """_draw_one over `jobs` in `workers` spawned processes, each result given to `each` as it comes."""
    before = set(multiprocessing.active_children())
    # spawn, not fork: the report may run in a process that has started threads (torch's, a test's).
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_started,
        initargs=(os.getpid(),),
    )
    try:
        for result in pool.map(_draw_one, jobs, chunksize=4):
            each(result)
    except BaseException:
        # Stopped (Ctrl-C, or SIGTERM made one by the command) or failed: the workers end now, with
        # the report.
        for child in set(multiprocessing.active_children()) - before:
            child.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


class Kept:
    """Folders drawn once and kept, sealed, in `cache`/drawn/ (or, with no cache or none usable, drawn into a
    scratch folder for this report alone)."""

    def __init__(self, cache: Path | None):
        key, why = user_key() if cache is not None else (None, "")
        root = None
        if cache is not None and key is None:
            self._warn(
                f"{cache}: pages cannot be kept without the report's own key ({why}): every page is drawn "
                "again next time"
            )
        elif cache is not None:
            try:
                (cache / "drawn").mkdir(parents=True, exist_ok=True)
                if (cache / "drawn").is_symlink():  # (planted: nothing is written through it)
                    raise NotADirectoryError(
                        errno.ENOTDIR, "a link, not a folder of the cache's own"
                    )
                root = cache / "drawn"
            except OSError as exc:
                self._warn(
                    f"{cache}: the report's cache cannot be written ({exc}): every page is drawn again next time"
                )
        system_temporary = Path(tempfile.gettempdir())
        remove(left_behind(system_temporary, _SCRATCH))  # a killed report's scratch folder
        scratch = Path(tempfile.mkdtemp(prefix=temporary_prefix(_SCRATCH), dir=system_temporary))
        self.place = _Place(root, scratch, key if key is not None else secrets.token_bytes(32))
        # key -> the folder it was drawn or kept in, for this report
        self.placed: dict[str, Path] = {}
        self.jobs: dict[str, tuple[Callable, tuple]] = {}
        self.said: set[str] = set()
        if root is not None:
            for shard in _folders(root):
                remove(left_behind(shard, _DRAWING))  # a killed report's drawings

    def _warn(self, message: str) -> None:
        warnings.warn(message, CacheWarning, stacklevel=3)

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self.said:
            self.said.add(kind)
            self._warn(message)

    def draw(self, jobs: list[tuple[str, Callable, tuple]]) -> None:
        """Run each (key, function, args) not kept yet: function(folder, *args), in parallel on this machine's
        cores where there are many. Kept ones are marked used now, so that no report prunes them
        meanwhile."""
        todo, now = [], time.time()
        for key, function, args in jobs:
            self.jobs[key] = (function, args)
            if key in self.placed:
                continue
            folder = None if self.place.root is None else self.place.folder(self.place.root, key)
            if folder is not None and _manifest(self.place, folder) is not None:
                self.placed[key] = folder
                try:
                    os.utime(folder / ".done", (now, now), follow_symlinks=False)
                except OSError:  # a cache that cannot be written: its pages are used all the same
                    pass
            else:
                todo.append((self.place, key, function, args))
        if not todo:
            return
        started, done = time.perf_counter(), 0

        def drawn(result: tuple[str, str, str | None]) -> None:
            nonlocal done
            key, folder, error = result
            self.placed[key] = Path(folder)
            if error is not None:
                self._warn_once(
                    "write",
                    f"{self.place.root}: a page could not be kept in the report's cache "
                    f"({error}): drawn for this report alone",
                )
            done += 1
            _progress(done, len(todo), started)

        workers = min(os.cpu_count() or 1, len(todo))
        if workers > 1 and len(todo) >= 8:
            _in_workers(todo, workers, drawn)
        else:
            for job in todo:
                drawn(_draw_one(job))

    def link(self, key: str, into: Path) -> dict[str, bytes]:
        """The drawn folder's files into `into`, each held against its sealed manifest as it is placed (a hard
        link where the file is this user's and the file system allows, else a copy of the bytes
        checked); the hidden ones (.said.txt) returned, checked, instead. A folder that is not what
        was drawn is drawn again."""
        folder = self.placed[key]
        files = _manifest(self.place, folder)
        hidden = None if files is None else _place_files(folder, files, into)
        if hidden is None:  # changed since it was drawn: a file edited, removed or made a link
            self._warn_once(
                "changed",
                f"{folder}: a kept page is not what the report drew (a file changed or "
                "made a link): drawn again, and so is any other",
            )
            function, args = self.jobs[key]
            try:
                if self.place.root is None:
                    raise OSError("no cache")
                folder = _draw_into(self.place, self.place.root, key, function, args, again=True)
            except OSError:
                folder = _draw_into(self.place, self.place.scratch, key, function, args)
            self.placed[key] = folder
            files = _manifest(self.place, folder)
            hidden = None if files is None else _place_files(folder, files, into)
            if hidden is None:
                raise OSError(f"{folder}: a page drawn just now does not read back as it was drawn")
        return hidden

    def prune(self) -> None:
        """Drop what no report used for _KEEP_DAYS days (draw() marks what a report uses)."""
        if self.place.root is None:
            return
        now = time.time()
        for shard in _folders(self.place.root):
            for folder in _folders(shard):
                try:
                    if now - os.lstat(folder / ".done").st_mtime > _KEEP_DAYS * 86400:
                        shutil.rmtree(folder, ignore_errors=True)
                except OSError:  # another report pruned it first, or a drawing under way
                    continue

    def close(self) -> None:
        shutil.rmtree(self.place.scratch, ignore_errors=True)


def _folders(folder: Path) -> list[Path]:
    """The folders in `folder`, links passed over (never followed out of the cache)."""
    try:
        return [Path(e.path) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _place_files(folder: Path, files: dict[str, str], into: Path) -> dict[str, bytes] | None:
    """Each file of `files` from `folder` into `into` if it holds what its hash says; None (and nothing left in
    `into`) where one does not, or is not a regular file."""
    into.mkdir(parents=True, exist_ok=True)
    hidden, placed = {}, []
    try:
        for name, digest in files.items():
            try:
                data, info = _read(folder / name, _MAX_FILE)
            except (OSError, ValueError):
                remove(placed)
                return None
            if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), digest):
                remove(placed)
                return None
            if name.startswith("."):
                hidden[name] = data
                continue
            _put(folder / name, info, data, into / name)
            placed.append(into / name)
    except BaseException:
        remove(placed)
        raise
    return hidden


def _put(source: Path, info: os.stat_result, data: bytes, target: Path) -> None:
    """`data` (read from `source`, whose stat is `info`) as `target`: a hard link to the very file read where it
    is this user's (another user could change theirs later), else a new file of the bytes checked.
    """
    if info.st_uid == os.geteuid():
        try:
            os.link(source, target, follow_symlinks=False)
            linked = os.lstat(target)
            if (linked.st_ino, linked.st_dev) == (info.st_ino, info.st_dev):
                return
            target.unlink()  # replaced between the reading and the linking: the bytes checked instead
        except FileExistsError:
            raise
        except OSError:  # no hard links here (another file system, FAT): a copy
            pass
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _progress(done: int, total: int, started: float) -> None:
    if total >= 20 and (done == total or done % max(1, total // 10) == 0):
        print(
            f"report: drew {done:,} of {total:,} pages and pictures ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
