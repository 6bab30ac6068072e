"""Output folders that appear complete or not at all.

``StagedDir(target)`` makes a hidden temporary folder beside ``target``; the caller writes into
``.path`` and calls ``commit()`` (rename into place, replacing an earlier output) or
``abort()`` (delete everything, including parent folders it had to create). Renames within
one parent folder are atomic, so nobody ever sees a half-written output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from motion_relevance.errors import OutputError


class StagedDir:
    """A temporary folder beside ``target`` that becomes ``target`` on ``commit``.

    Raises ``OutputError`` at once when ``target`` cannot be written, before any work is done.
    """

    def __init__(self, target: str | os.PathLike[str], *, marker: str = "summary.json") -> None:
        self.target = Path(target).expanduser().absolute()
        if self.target.exists() and not self.target.is_dir():
            raise OutputError(f"output path {self.target} exists and is not a folder; choose another output folder (--out)")
        if self.target.is_dir() and any(self.target.iterdir()) and not (self.target / marker).exists():
            raise OutputError(
                f"output folder {self.target} is not empty and is not an earlier output; "
                "choose a new or empty folder (--out)"
            )
        self._created: list[Path] = []
        try:
            missing = [p for p in (self.target.parent, *self.target.parent.parents) if not p.exists()]
            for p in reversed(missing):
                p.mkdir()
                self._created.append(p)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.partial-", dir=self.target.parent))
            umask = os.umask(0)
            os.umask(umask)
            self.path.chmod(0o777 & ~umask)  # mkdtemp makes it private; outputs are ordinary folders
        except OSError as exc:
            self._remove_created()
            raise OutputError(
                f"cannot write to {self.target}: {exc.strerror or exc}; choose a writable output folder (--out)"
            ) from None

    def _remove_created(self) -> None:
        for p in reversed(self._created):
            with contextlib.suppress(OSError):
                p.rmdir()

    def commit(self) -> Path:
        """Move the finished folder into place (replacing an earlier output)."""
        old = None
        try:
            if self.target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.old-", dir=self.target.parent))
                os.replace(self.target, old / "previous")
            os.replace(self.path, self.target)
        except OSError as exc:
            if old is not None and (old / "previous").exists() and not self.target.exists():
                os.replace(old / "previous", self.target)
            raise OutputError(f"cannot move the output into {self.target}: {exc.strerror or exc}") from None
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return self.target

    def abort(self) -> None:
        """Delete everything written so far (and folders this object created)."""
        shutil.rmtree(self.path, ignore_errors=True)
        self._remove_created()



__all__ = ["StagedDir"]
