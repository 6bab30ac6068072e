"""The result store of a batch run: a folder that survives crashes and resumes.

Layout::

    STORE/
      run.json          the settings the results depend on (checked again on --resume)
      parts/            one Parquet file per finished unit (video): KEY.ok.parquet or
                        KEY.failed.parquet -- the source of truth
      maps.zarr/        with --save-maps: one group per unit (see ``batch.maps``)
      clips.parquet     every per-clip row of the manifest's units, consolidated at the end
      summary.parquet   mean motion share per (method, label), also as summary.csv
      tmp/              in-flight work; removed when a run starts

A unit is committed by writing its part file under a temporary name, fsync-ing it and renaming
it into place (``os.replace`` is atomic), then fsync-ing the folder. A process killed at any
moment therefore leaves each unit either committed whole or not at all, and ``resume`` redoes
exactly the uncommitted ones. The consolidated files are derived from the parts and rewritten
at the end of every run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from motion_relevance.batch.manifest import VideoEntry
from motion_relevance.errors import OutputError

log = logging.getLogger(__name__)

#: One row per (video, method, clip); a failed (video, method) is one row with ``error`` set.
ROW_SCHEMA = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),
        pa.field("video", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("method", pa.string(), nullable=False),
        pa.field("clip", pa.int64()),
        pa.field("start_frame", pa.int64()),
        pa.field("target", pa.int64()),
        pa.field("target_label", pa.string()),
        pa.field("probability", pa.float64()),
        pa.field("sigma", pa.float64(), nullable=False),
        pa.field("motion_share", pa.float64()),
        pa.field("motion_score", pa.float64()),
        pa.field("motion_reliance", pa.float64()),
        pa.field("sparsity", pa.float64()),
        pa.field("seconds", pa.float64(), nullable=False),
        pa.field("error", pa.string()),
    ]
)

#: Columns that measure time and so differ between two runs of the same settings.
TIMING_COLUMNS: tuple[str, ...] = ("seconds",)

#: Version of run.json and the row schema; 2 added the ``motion_score`` column, 3 the
#: ``motion_reliance`` column.
FORMAT = 3

OK, FAILED = "ok", "failed"
_STATUSES = (OK, FAILED)


def _fsync_dir(path: Path) -> None:
    """Persist a rename: fsync the folder that holds the entry (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(tmp)`` so it appears complete or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; free disk space or choose another --out") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def _describe_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key}={json.dumps(old.get(key))}, not {json.dumps(new.get(key))}"
    return ""  # pragma: no cover - only called when they differ


class ResultStore:
    """A batch run's output folder (see the module docstring for the layout)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.parts = self.path / "parts"
        self.tmp = self.path / "tmp"
        self.maps = self.path / "maps.zarr"
        self.clips_file = self.path / "clips.parquet"
        self.summary_file = self.path / "summary.parquet"
        self.summary_csv = self.path / "summary.csv"
        self.run_file = self.path / "run.json"
        self._lock: int | None = None

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def check_target(cls, path: str | os.PathLike[str], *, resume: bool) -> None:
        """Refuse an output folder that a new run would clobber (before any work starts)."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise OutputError(f"{p} is a file; give a folder for the batch results with --out")
        if resume or not p.exists() or not any(p.iterdir()):
            return
        raise OutputError(
            f"{p} already holds results; pass --resume to continue that run, or choose a new --out"
        )

    def open(self, settings: Mapping[str, Any], *, resume: bool) -> None:
        """Create or reopen the store for a run with ``settings``; take the run lock."""
        self.check_target(self.path, resume=resume)
        settings = json.loads(json.dumps(settings))  # normalise (tuples -> lists) for comparing
        if self.run_file.exists():
            try:
                described = json.loads(self.run_file.read_text())
                old, version = described["settings"], described.get("format")
            except (ValueError, KeyError, TypeError, AttributeError):
                raise OutputError(f"{self.run_file} is not a batch run description; choose a new --out") from None
            if version != FORMAT:
                raise OutputError(
                    f"{self.path} was written by an earlier version (store format {version}, rows without the "
                    f"columns of format {FORMAT}: motion_score, motion_reliance) and cannot be resumed; choose a new --out"
                )
            if old != settings:
                raise OutputError(
                    f"{self.path} was made with {_describe_difference(old, settings)}; "
                    "resume with the same settings or choose a new --out"
                )
        try:
            self.parts.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir()
            for folder in (self.path, self.parts):  # files a killed run was writing
                for stale in folder.glob(".*.tmp"):
                    stale.unlink(missing_ok=True)
            if not self.run_file.exists():
                _write_json(self.run_file, {"format": FORMAT, "settings": settings})
        except OSError as exc:
            raise OutputError(f"cannot write to {self.path}: {exc.strerror}; choose another --out") from None

    def _take_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OutputError(
                f"another batch run is writing to {self.path}; wait for it or choose a new --out"
            ) from None
        self._lock = fd

    def close(self) -> None:
        """Remove in-flight leftovers and release the run lock (no-op unless ``open`` took it)."""
        if self._lock is None:
            return
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.close(self._lock)
        self._lock = None

    # -- units ---------------------------------------------------------------------------------

    def _part(self, key: str, status: str) -> Path:
        return self.parts / f"{key}.{status}.parquet"

    def finished(self) -> dict[str, str]:
        """``{unit key: "ok" | "failed"}`` for every committed unit."""
        found: dict[str, str] = {}
        for part in self.parts.glob("*.parquet"):
            stem = part.name[: -len(".parquet")]
            key, _, status = stem.rpartition(".")
            if status not in _STATUSES or key.startswith("."):
                continue
            if found.get(key) == OK:  # a retried unit may briefly have both; "ok" wins
                continue
            found[key] = status
        return found

    def commit(self, key: str, table: pa.Table) -> str:
        """Record a finished unit's rows atomically; returns its status ("ok" or "failed")."""
        table = table.cast(ROW_SCHEMA)
        status = FAILED if table.column("error").null_count < table.num_rows else OK
        part = self._part(key, status)
        atomic_write(part, lambda tmp: pq.write_table(table, tmp))
        other = self._part(key, OK if status == FAILED else FAILED)
        if other.exists():
            other.unlink()
            _fsync_dir(self.parts)
        return status

    def read_unit(self, key: str) -> pa.Table:
        """The committed rows of one unit."""
        for status in _STATUSES:
            part = self._part(key, status)
            if part.exists():
                return pq.read_table(part, schema=ROW_SCHEMA)
        raise OutputError(f"unit {key} has no results in {self.path}; run the batch with --resume")

    # -- consolidation -------------------------------------------------------------------------

    def consolidate(self, entries: Iterable[VideoEntry]) -> pa.Table:
        """Gather the manifest's committed units, in manifest order, into clips.parquet."""
        finished = self.finished()
        keys = [e.key for e in entries]
        stale = set(finished) - set(keys)
        if stale:
            log.warning(
                "%d result file(s) in %s belong to manifest rows that changed or are gone; "
                "they are left out of clips.parquet",
                len(stale),
                self.parts,
            )
        tables = [self.read_unit(k) for k in keys if k in finished]
        table = pa.concat_tables(tables) if tables else ROW_SCHEMA.empty_table()
        atomic_write(self.clips_file, lambda tmp: pq.write_table(table, tmp))
        return table

    def write_summary(self, summary: pa.Table) -> None:
        """Write the aggregate summary as Parquet and CSV."""
        import pyarrow.csv as pacsv

        atomic_write(self.summary_file, lambda tmp: pq.write_table(summary, tmp))
        atomic_write(self.summary_csv, lambda tmp: pacsv.write_csv(summary, tmp))


def read_results(store: str | os.PathLike[str]) -> pa.Table:
    """The consolidated per-clip rows of a finished batch run (``STORE/clips.parquet``)."""
    path = ResultStore(store).clips_file
    if not path.exists():
        raise OutputError(f"{path} does not exist; finish the run with `motion-relevance batch ... --resume`")
    return pq.read_table(path)


def drop_timing(table: pa.Table) -> pa.Table:
    """The rows without the columns that measure time (for comparing two runs)."""
    return table.drop_columns([c for c in TIMING_COLUMNS if c in table.column_names])


__all__ = [
    "FAILED",
    "FORMAT",
    "OK",
    "ROW_SCHEMA",
    "TIMING_COLUMNS",
    "ResultStore",
    "atomic_write",
    "drop_timing",
    "read_results",
]
