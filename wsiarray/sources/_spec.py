"""What dask graphs carry instead of open files: a slide's path, reader, options and file stamp."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR
from typing import Any

from wsiarray.sources._store import is_remote, redact

__all__ = ["SourceSpec", "is_url"]


def is_url(path: object) -> bool:
    """Whether ``path`` is a URL (``s3://``, ``https://``, a DICOMweb series) rather than a
    local path."""
    return isinstance(path, str) and is_remote(path)


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Everything needed to reopen a slide, and to notice that its file changed.

    ``stamp`` (file size and modification time) makes a changed file a different spec, so a
    cached source of the old file is never used for it, and a source reopened for a spec
    whose file has changed since is refused (:meth:`changed`). For a zarr store directory the
    stamp is the root metadata file's: an export writes that file last, and a directory's
    own mtime does not change when files deeper inside it do.

    The cache checks the stamp at every use (one ``stat``), so a file modified in place
    under an open source is refused rather than read at its old offsets.

    A URL (an object in storage, a DICOMweb series) is kept as given, with the object's
    version (size and ETag) as the stamp where the reader knows it, else ``(0, 0)``. It is
    not checked at every use (that would cost a request per read) but when a process opens
    the object again (:class:`~wsiarray.sources.SourceCache`).
    """

    path: str
    reader: str
    options: tuple[tuple[str, Any], ...] = ()
    stamp: tuple[Any, ...] = (0, 0)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        reader: str,
        options: Mapping[str, Any],
        stamp: tuple[Any, ...] | None = None,
    ) -> SourceSpec:
        """Build a spec for an existing file, with its current size and mtime as ``stamp``
        (for a URL: ``stamp``, the object's version as its source read it, if any)."""
        if is_url(path):
            return cls(str(path), reader, tuple(sorted(options.items())), stamp or (0, 0))
        resolved = Path(path).resolve()
        return cls(str(resolved), reader, tuple(sorted(options.items())), _stamp(resolved))

    def __repr__(self) -> str:
        # a signed URL's query grants access: never shown
        return (
            f"SourceSpec(path={redact(self.path)!r}, reader={self.reader!r}, "
            f"options={self.options!r}, stamp={self.stamp!r})"
        )

    def changed(self) -> bool:
        """Whether the file's size or modification time differs from the stamp (or it is gone)."""
        if is_url(self.path):
            return False
        try:
            return _stamp(Path(self.path)) != self.stamp
        except OSError:
            return True


def _stamp(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    if S_ISDIR(stat.st_mode):  # a zarr store (ngff, and its numpy dataclasses, only then)
        from wsiarray.ngff import root_metadata

        stat = (root_metadata(path) or path).stat()
    return stat.st_size, stat.st_mtime_ns
