"""The process-wide cache of open slides: bounded, and closing the sources it evicts.

Dask tasks carry a :class:`~wsiarray.sources.SourceSpec`, not an open file; each process
(the notebook's, every ``distributed`` worker) keeps the slides it reads open here. The
cache holds at most :data:`CACHE_SIZE` idle sources and closes each one it evicts: a cohort
of thousands of slides keeps a bounded number of file descriptors open. A source is used
inside :meth:`SourceCache.use`, which counts its users: one evicted while a thread still
reads it is closed when that thread is done, never under it. (xarray keeps the same concern
in its own module, ``backends/file_manager.py``, for the same reason.)
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from wsiarray.errors import SlideChangedError
from wsiarray.sources._base import SlideMetadata, SlideSource
from wsiarray.sources._registry import open_source
from wsiarray.sources._spec import SourceSpec
from wsiarray.sources._store import redact

__all__ = ["CACHE_SIZE", "SourceCache", "source_cache"]

#: Slides kept open per process. A TIFF slide holds one file descriptor, an OpenSlide one a
#: few: 32 stays far below the common limit of 1024 (and a tight 256) with room for the rest.
CACHE_SIZE = 32


class _Entry:
    """A cached source, how many threads use it, and whether the cache let it go.

    (A plain class: a dataclass costs ~2 ms of code generation at import, on the first read.)
    """

    __slots__ = ("evicted", "source", "users")

    def __init__(self, source: SlideSource) -> None:
        self.source, self.users, self.evicted = source, 0, False


class SourceCache:
    """Open sources by :class:`SourceSpec`, at most ``size`` of them idle at a time.

    Parameters
    ----------
    size : int
        How many sources to keep open. Sources in use when evicted stay open until their
        last user is done, so at most ``size`` plus the number of reading threads are open.
    opener : callable
        ``opener(path, reader=..., options=...)`` opens a source (default
        :func:`~wsiarray.sources.open_source`).

    Notes
    -----
    Thread-safe. Opening a file happens outside the cache's lock, so slow opens do not
    serialise reads of other slides; two threads opening the same spec at once keep one
    source and close the other.
    """

    def __init__(
        self, size: int = CACHE_SIZE, *, opener: Callable[..., SlideSource] = open_source
    ) -> None:
        self.size = size
        self._opener = opener
        self._entries: OrderedDict[SourceSpec, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def open(
        self,
        path: str | os.PathLike[str],
        /,
        *,
        reader: str = "auto",
        options: Mapping[str, Any] | None = None,
    ) -> tuple[SourceSpec, SlideMetadata]:
        """Open a slide, keep its source, and return its spec and metadata.

        Raises
        ------
        WsiArrayError
            What the opener (:func:`~wsiarray.sources.open_source`) raises.
        """
        source = self._opener(path, reader=reader, options=options)
        spec = SourceSpec.create(source.path, source.name, source.options, source.stamp())
        entry = self._keep(spec, source)
        self._release(entry)
        return spec, entry.source.metadata

    @contextlib.contextmanager
    def use(self, spec: SourceSpec, /) -> Iterator[SlideSource]:
        """The open source of ``spec`` (reopened if it was evicted), kept open while in use.

        Raises
        ------
        SlideChangedError
            The file was replaced or modified since ``spec`` was made.
        """
        entry = self._acquire(spec)
        try:
            yield entry.source
        finally:
            self._release(entry)

    def clear(self) -> None:
        """Close every idle source (those in use close when their users are done)."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
            idle = [entry for entry in entries if self._evict(entry)]
        for entry in idle:
            entry.source.close()

    def __len__(self) -> int:
        return len(self._entries)

    def _acquire(self, spec: SourceSpec) -> _Entry:
        # one stat per use (~2 µs; a tile decode takes ~200): a file modified in place under
        # an open source would otherwise be read at its old offsets
        if spec.changed():
            self._forget(spec)
            msg = (
                f"{spec.path} has changed (or gone) since it was opened: its size or modification "
                "time differs. Open it again with wsiarray.open to read the new file. (On a "
                "cluster, each worker's copy must keep the original's size and modification "
                "time: copy with rsync -a or cp -p.)"
            )
            raise SlideChangedError(msg)
        with self._lock:
            entry = self._entries.get(spec)
            if entry is not None:
                self._entries.move_to_end(spec)
                entry.users += 1
                return entry
        source = self._opener(spec.path, reader=spec.reader, options=dict(spec.options))
        if source.stamp() not in (None, spec.stamp):
            source.close()
            msg = (
                f"{redact(spec.path)} has changed since it was opened: the object's size or "
                "ETag differs. Open it again with wsiarray.open to read the new object."
            )
            raise SlideChangedError(msg)
        return self._keep(spec, source)

    def _keep(self, spec: SourceSpec, source: SlideSource) -> _Entry:
        """Store ``source`` under ``spec`` (or use the one another thread stored first), in use."""
        with self._lock:
            entry = self._entries.get(spec)
            duplicate = entry is not None
            if entry is None:
                entry = self._entries[spec] = _Entry(source)
            self._entries.move_to_end(spec)
            entry.users += 1
            idle = []
            while len(self._entries) > self.size:
                _, oldest = self._entries.popitem(last=False)
                if self._evict(oldest):
                    idle.append(oldest)
        if duplicate:
            source.close()
        for evicted in idle:
            evicted.source.close()
        return entry

    def _forget(self, spec: SourceSpec) -> None:
        """Evict the source of ``spec``, if any (closed now, or when its last user is done)."""
        with self._lock:
            entry = self._entries.pop(spec, None)
            close = entry is not None and self._evict(entry)
        if close:
            entry.source.close()  # type: ignore[union-attr]

    @staticmethod
    def _evict(entry: _Entry) -> bool:
        """Mark ``entry`` evicted (lock held); true if nobody uses it, so it closes now."""
        entry.evicted = True
        return entry.users == 0

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            entry.users -= 1
            close = entry.evicted and entry.users == 0
        if close:
            entry.source.close()

    def __repr__(self) -> str:
        return f"<SourceCache {len(self._entries)}/{self.size} open>"


#: The process-wide cache that wsiarray's arrays and slides read through.
source_cache = SourceCache()
