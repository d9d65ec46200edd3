"""The report's cache beside the results: each run file's rows, kept in Parquet, read again only when the file changes.

A run file costs the report about 70 ms to read and build rows from; a fleet of 5,000 files, six
minutes. What the report needs of a file (bench.analysis.rows.file_frame: its rows, typed, with every
figure that depends on that run alone) is kept in one Parquet file, keyed by the run file's real
path, size, modification and change times, inode and whether it is a reference run. A changed or new
file is read again, a removed one dropped; a file whose reading warned is never kept, so its warning
is said on every report. The cache is stamped with the report's own code and libraries: a report of
another version reads every file again. See docs/design.md for why Parquet.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import tempfile
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pandas as pd

from bench.format.store import REPORT_CACHE, RunFileWarning, is_reference
from bench.report.leftovers import left_behind, remove, temporary_prefix

__all__ = ["CACHE_FOLDER", "CacheWarning", "RowCache", "code_stamp"]

# Where the cache lives by default: inside the (first) results folder the report reads (never read
# as runs).
CACHE_FOLDER = REPORT_CACHE
_ROWS = "rows.parquet"
_TEMPORARY = ".rows"  # a new rows.parquet, until it is whole
_META = b"fmnist_bench_cache"
_FILE = "_file"  # the column naming the run file a cached row came from (its real path)
# What a cache may be before it is read (_checked): a thousand machines' five runs make one of about
# 60 MB.
_MAX_BYTES = 2**30
_MAX_FOOTER = 64 * 2**20  # its list of run files: about 200 bytes each
_LIBRARIES = ("pandas", "numpy", "pyarrow", "matplotlib", "jinja2", "jsonschema")


class CacheWarning(UserWarning):
    """The cache could not be read or written: the report goes on, reading the run files themselves (not a
    RunFileWarning: no run file is at fault)."""


# The code a cached row or kept page is made by: every module the rows and pages come from.
_HERE = Path(__file__).resolve().parent
_STAMPED = (_HERE.parent / "format", _HERE.parent / "analysis", _HERE, _HERE / "templates")


@functools.cache
def code_stamp() -> str:
    """What the cache's contents depend on: the source of the saved-run contract (bench/format), of the analysis
    that builds a run file's rows and a page's figures (bench/analysis) and of the report (its templates too),
    and the versions of the libraries that build and store them. Any change reads every file again."""
    digest = hashlib.sha256()
    for folder in _STAMPED:
        for source in sorted(folder.glob("*.py")) + sorted(folder.glob("*.j2")):
            digest.update(f"{folder.name}/{source.name}".encode() + b"\0")
            digest.update(source.read_bytes() + b"\0")
    for library in _LIBRARIES:
        try:
            digest.update(f"{library}={metadata.version(library)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{library}=none\0".encode())
    return digest.hexdigest()


def _identity(path: Path) -> tuple[str, list] | None:
    """A run file's key (its real path) and what must not have changed: its size, modification and change times
    in ns, inode (a file replaced by another of the same size and time is another file), reference
    or not."""
    try:
        real = os.path.realpath(path)
        # a name that is not text (bytes that are not UTF-8) cannot be a key: read every time
        real.encode("utf-8")
        st = os.stat(real)
    except (OSError, UnicodeError):
        return None
    return real, [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, is_reference(real)]


def _checked(path: Path, info: os.stat_result):
    """(its stamp's record, the Parquet file, its data unread) where `path` is this version's cache and holds no
    more than the run files it lists could give; None where another version wrote it; ValueError
    saying why not.

    A cache may come with a results tree from anyone: 1.7 MB of compressed zeros can decode to
    gigabytes. So before any data is read, from the file's size and footer alone (pyarrow reads the
    footer, never the data): its size, its footer's, its stamp, and its rows and values against the
    run files it lists that are still as it saw them (a copy of a tree cannot keep their inodes and
    change times): at most one row per 64 bytes of them, and one value per 2 bytes (a number in JSON
    takes two). What it can then cost is a few times what reading those files costs."""
    import pyarrow.parquet as pq

    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    if info.st_size > _MAX_BYTES:
        raise ValueError(f"{info.st_size / 2**20:,.0f} MiB, larger than any the report writes")
    with path.open("rb") as fh:
        fh.seek(max(info.st_size - 8, 0))
        tail = fh.read(8)
    if len(tail) < 8 or tail[4:] != b"PAR1":
        raise ValueError("not a Parquet file")
    if int.from_bytes(tail[:4], "little") > min(_MAX_FOOTER, info.st_size):
        raise ValueError("its footer is larger than any the report writes")
    parquet = pq.ParquetFile(path)
    metadata = parquet.metadata
    meta = json.loads((metadata.metadata or {}).get(_META, b"{}"))
    if not isinstance(meta, dict) or meta.get("stamp") != code_stamp():
        return None
    files = meta.get("files")
    if not isinstance(files, dict):
        raise ValueError("it lists no run files")
    holds = 0  # the bytes of the run files it lists that are still as it saw them
    for real, kept in files.items():
        now = _identity(Path(real))
        if now is not None and now == (real, kept):
            holds += now[1][0]
    if metadata.num_rows > holds // 64:
        raise ValueError(f"{metadata.num_rows:,} rows, more than the run files it lists could give")
    values = 0
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group)
        for column in range(rows.num_columns):
            chunk = rows.column(column)
            if "." not in chunk.path_in_schema and chunk.num_values > rows.num_rows:
                raise ValueError(f"{chunk.path_in_schema}: more values than rows")
            values += chunk.num_values
    if values - metadata.num_rows * metadata.num_columns > holds // 2:
        raise ValueError(f"{values:,} values, more than the run files it lists could give")
    return meta, parquet


class RowCache:
    """The rows of every run file read, under `folder` (created when first written)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        # how many run files this report read itself (a miss), and how many it took from here
        self.read_files = 0
        self.kept_files = 0

    @property
    def path(self) -> Path:
        return self.folder / _ROWS

    def _load(self, columns: list[str]) -> tuple[dict[str, list], pd.DataFrame | None]:
        """(each kept file's identity, the kept rows): nothing where the cache is absent or of another version; a
        warning and nothing where it is broken or not what this version writes (`columns`: a file
        frame's)."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            info = exc
        try:
            if isinstance(info, OSError):
                raise info
            checked = _checked(self.path, info)
            if checked is None:
                return {}, None  # another version of the report wrote it: every file is read again
            meta, parquet = checked
            files, counts, dtypes = meta["files"], meta["counts"], meta["dtypes"]
            frame = parquet.read().to_pandas()
            if sorted(frame.columns) != sorted([*columns, _FILE]) or sorted(dtypes) != sorted(
                frame.columns
            ):
                raise ValueError("its columns are not the report's")
            if frame[_FILE].value_counts().to_dict() != {
                f: n for f, n in counts.items() if n
            } or set(counts) != set(files):
                raise ValueError("its rows are not the files it lists")
            # Each column back as the report built it: Parquet gives lists as arrays, text as
            # pandas' string type.
            for column, dtype in dtypes.items():
                if str(frame[column].dtype) != dtype:
                    values = frame[column]
                    frame[column] = (
                        values.astype(object).where(values.notna(), None)
                        if dtype == "object"
                        else (values.astype(dtype))
                    )
            frame["round_times"] = [
                None if v is None else [float(x) for x in v] for v in frame["round_times"]
            ]
        except Exception as exc:  # a broken cache is never worse than no cache
            warnings.warn(
                f"{self.path}: the report's cache is unreadable ({exc}): every run file is read again",
                CacheWarning,
                stacklevel=3,
            )
            return {}, None
        return files, frame[[*columns, _FILE]]

    def frames(
        self,
        found: list[tuple[Path, Path]],
        read: Callable[[Path, Path], pd.DataFrame | None],
        shown: Callable[[Path, Path], str],
        columns: list[str],
    ) -> list[pd.DataFrame]:
        """The frames of every (file, root) in `found`: kept ones from the cache, the rest from `read`, whose
        clean results are then kept. `shown` names a file as this report does (it may differ between
        reports); `columns` are a file frame's."""
        files, kept = self._load(columns)
        wanted: dict[str, str] = {}  # real path -> the name this report gives it
        # real path -> its place among `found`: rows come out in the files' order
        order: dict[str, int] = {}
        out, new, new_files = [], [], {}
        for place, (path, root) in enumerate(found):
            identity = _identity(path)
            if identity is not None and identity[0] in wanted:
                continue  # the same file under two names: read once, as find_run_files does for folders
            if identity is not None and files.get(identity[0]) == identity[1]:
                wanted[identity[0]], order[identity[0]] = shown(path, root), place
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                frame = read(path, root)
            for warning in caught:  # said again, to whoever listens
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
            if frame is None:
                continue
            self.read_files += 1
            out.append(frame.assign(_order=place))
            # A file that warned (a field passed over, a date that is not one) is never kept: it
            # warns every time.
            if identity is not None and not any(
                issubclass(w.category, RunFileWarning) for w in caught
            ):
                new.append(frame.assign(**{_FILE: identity[0]}))
                new_files[identity[0]] = identity[1]
                wanted[identity[0]] = shown(path, root)
        if kept is not None and wanted:
            mine = kept[kept[_FILE].isin(wanted.keys()) & ~kept[_FILE].isin(new_files.keys())]
            self.kept_files = mine[_FILE].nunique()
            out.append(
                mine.assign(run_file=mine[_FILE].map(wanted), _order=mine[_FILE].map(order)).drop(
                    columns=[_FILE]
                )
            )
        self._save(files, kept, new, new_files, set(wanted))
        out = [part for part in out if not part.empty]
        if not out:
            return []
        both = pd.concat(out, ignore_index=True).sort_values("_order", kind="stable")
        return [both.drop(columns=["_order"]).reset_index(drop=True)]

    def _save(
        self,
        files: dict,
        kept: pd.DataFrame | None,
        new: list[pd.DataFrame],
        new_files: dict,
        seen: set[str],
    ) -> None:
        """Write the cache again where it changed: new files added, and files gone or changed dropped (a kept file
        another report read, still as it was, stays)."""
        still = {}
        for real, identity in files.items():
            if real in new_files:
                continue
            if real in seen or _identity(Path(real)) == (real, identity):
                still[real] = identity
        if not new and len(still) == len(files):
            return
        parts = new + ([kept[kept[_FILE].isin(still.keys())]] if kept is not None and still else [])
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq

            frame = pd.concat(parts, ignore_index=True) if parts else None
            if frame is None:
                return
            table = pa.Table.from_pandas(frame, preserve_index=False)
            files = {**still, **new_files}
            counts = frame[_FILE].value_counts().to_dict()
            meta = {
                **(table.schema.metadata or {}),
                _META: json.dumps(
                    {
                        "stamp": code_stamp(),
                        "files": files,
                        "counts": {f: counts.get(f, 0) for f in files},
                        "dtypes": frame.dtypes.astype(str).to_dict(),
                    }
                ).encode(),
            }
            self.folder.mkdir(parents=True, exist_ok=True)
            remove(left_behind(self.folder, _TEMPORARY))  # a killed report's
            handle, temp = tempfile.mkstemp(
                prefix=temporary_prefix(_TEMPORARY), suffix=".tmp", dir=self.folder
            )
            os.close(handle)
            try:
                pq.write_table(table.replace_schema_metadata(meta), temp)
                # mkstemp's file is private; a shared results tree's reports share it
                os.chmod(temp, 420)
                # whole or not at all: a report reading it meanwhile sees the old one
                os.replace(temp, self.path)
            finally:
                if os.path.exists(temp):
                    os.unlink(temp)
        except Exception as exc:  # the report is written all the same, from the files
            warnings.warn(
                f"{self.path}: the report's cache was not written ({exc}): the run files are read again next time",
                CacheWarning,
                stacklevel=3,
            )
