"""The manifest of a batch run: which videos to explain, and their class labels.

A manifest is a CSV file (header row required) or a JSONL file (one JSON object per line) with a
``path`` column and an optional ``label`` column; other columns are ignored. Relative paths are
resolved against the manifest's folder, so a dataset folder with its manifest can be moved as a
whole. Every data row is one *unit* of the run (the same video listed twice is explained twice).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from motion_relevance.errors import InvalidInputError

#: Suffixes read as JSON Lines; anything else is read as CSV.
JSONL_SUFFIXES: tuple[str, ...] = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class VideoEntry:
    """One row of a manifest: a video to explain and its label."""

    row: int
    """0-based position among the manifest's data rows."""
    video: str
    """The path as written in the manifest (kept in the results)."""
    path: str
    """The path resolved against the manifest's folder (absolute)."""
    label: str | None = None

    @property
    def key(self) -> str:
        """Stable name of this unit: row number and a digest of its path and label.

        A manifest edited between a run and its resume changes the key of every edited row, so
        stale results are never mistaken for the new row's.
        """
        digest = hashlib.sha1(f"{self.video}\0{self.label}".encode()).hexdigest()[:10]
        return f"{self.row:07d}-{digest}"


def _label(value: object, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInputError(f"{where}: label must be a string or an integer, got {value!r}")
    text = str(value).strip()
    return text or None


def _entry(row: int, video: object, label: object, base: Path, where: str) -> VideoEntry:
    if not isinstance(video, str) or not video.strip():
        raise InvalidInputError(f"{where}: the path column is empty; give the video's path")
    video = video.strip()
    path = Path(os.path.expanduser(video))
    if not path.is_absolute():
        path = base / path
    return VideoEntry(row=row, video=video, path=str(path.absolute()), label=_label(label, where))


def _read_csv(path: Path, text: str) -> list[VideoEntry]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if "path" not in columns:
        found = ", ".join(repr(c) for c in columns) or "none"
        raise InvalidInputError(
            f"manifest {path} has no 'path' column (columns: {found}); "
            "the first line must be a header such as 'path,label'"
        )
    reader.fieldnames = columns
    entries = []
    for row, record in enumerate(reader):
        where = f"{path} line {reader.line_num}"
        if None in record:
            raise InvalidInputError(f"{where} has more fields than the header; quote paths with commas")
        entries.append(_entry(row, record.get("path"), record.get("label"), path.parent, where))
    return entries


def _read_jsonl(path: Path, text: str) -> list[VideoEntry]:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{where} is not valid JSON ({exc.msg}); write one object per line") from None
        if not isinstance(record, dict):
            raise InvalidInputError(f'{where} must be a JSON object such as {{"path": "a.mp4", "label": "run"}}')
        if "path" not in record:
            raise InvalidInputError(f"{where} has no 'path' key; give each video's path")
        entries.append(_entry(len(entries), record["path"], record.get("label"), path.parent, where))
    return entries


def read_manifest(path: str | os.PathLike[str]) -> tuple[VideoEntry, ...]:
    """Read a CSV or JSONL manifest (``path`` column, optional ``label``) into entries."""
    p = Path(path)
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise InvalidInputError(f"manifest {p} {what}; give a CSV or JSONL file of video paths")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(f"manifest {p} is not UTF-8 text; save it as a UTF-8 CSV or JSONL file") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read manifest {p}: {exc.strerror}") from None
    reader = _read_jsonl if p.suffix.lower() in JSONL_SUFFIXES else _read_csv
    entries = reader(p, text)
    if not entries:
        raise InvalidInputError(f"manifest {p} lists no videos; add one row per video")
    return tuple(entries)


__all__ = ["JSONL_SUFFIXES", "VideoEntry", "read_manifest"]
