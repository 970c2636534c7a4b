"""Slide readers and the registry that picks one for a file.

Built-in readers: ``tifffile`` (TIFF family), ``openslide`` (anything OpenSlide opens),
``pil`` (plain images) and ``zarr`` (OME-Zarr store directories). Third parties add readers
through the ``wsiarray.readers`` entry point group: the entry point's name is the reader
name, its value a :class:`~wsiarray.sources.SlideSource` subclass.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsiarray.errors import (
    ReaderUnavailableError,
    SlideNotFoundError,
    TruncatedFileError,
    UnsupportedFormatError,
    WsiArrayError,
)
from wsiarray.sources._base import AssociatedInfo, LevelInfo, SlideMetadata, SlideSource

__all__ = [
    "AssociatedInfo",
    "LevelInfo",
    "SlideMetadata",
    "SlideSource",
    "SourceSpec",
    "available_readers",
    "cached_source",
    "open_source",
]

ENTRY_POINT_GROUP = "wsiarray.readers"
BUILTIN_READERS = {
    "tifffile": "wsiarray.sources.tifffile_:TifffileSource",
    "openslide": "wsiarray.sources.openslide_:OpenSlideSource",
    "pil": "wsiarray.sources.pil_:PilSource",
    "zarr": "wsiarray.sources.zarr_:OmeZarrSource",
}
HEADER_BYTES = 512
#: A directory holding one of these (zarr v3, then v2) is a zarr store, handed to the readers.
ZARR_METADATA = ("zarr.json", ".zattrs", ".zgroup")
#: Open slides kept per process for dask tasks (each holds a few file handles).
CACHE_SIZE = 32


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Everything needed to reopen a slide: what dask graphs carry instead of file handles.

    ``stamp`` (file size and modification time) makes a changed file a different spec, so
    a cached handle to the old file is never used for it. For a zarr store directory it is
    the root metadata file's: an export writes that file last, and a directory's own mtime
    does not change when files deeper inside it do.
    """

    path: str
    reader: str
    options: tuple[tuple[str, Any], ...] = ()
    stamp: tuple[int, int] = (0, 0)

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], reader: str, options: Mapping[str, Any]
    ) -> SourceSpec:
        """Build a spec for an existing file, with its size and mtime as ``stamp``."""
        resolved = Path(path).resolve()
        stat = (_zarr_metadata(resolved) or resolved).stat()
        return cls(
            str(resolved), reader, tuple(sorted(options.items())), (stat.st_size, stat.st_mtime_ns)
        )


def available_readers() -> dict[str, str]:
    """Return ``{reader name: "module:Class"}`` for built-in and entry-point readers, in try order."""
    return BUILTIN_READERS | _plugin_readers()


def _plugin_readers() -> dict[str, str]:
    """Third-party readers. Scanning entry points imports importlib.metadata and reads every
    installed package's metadata (~50 ms), so it happens only when no built-in reader serves."""
    from importlib.metadata import entry_points

    return {
        ep.name: ep.value
        for ep in entry_points(group=ENTRY_POINT_GROUP)
        if ep.name not in BUILTIN_READERS
    }


def _reader_targets() -> Iterator[tuple[str, str]]:
    """``(name, "module:Class")`` in try order, scanning entry points only once built-ins are tried."""
    yield from BUILTIN_READERS.items()
    yield from _plugin_readers().items()


def _reader_class(name: str, target: str | None = None) -> type[SlideSource]:
    if target is None:
        readers = BUILTIN_READERS if name in BUILTIN_READERS else available_readers()
        if name not in readers:
            msg = f"no reader named {name!r}; available readers: {', '.join(readers)}"
            raise ReaderUnavailableError(msg)
        target = readers[name]
    module_name, _, attr = target.partition(":")
    try:
        module = __import__(module_name, fromlist=[attr])
        return getattr(module, attr)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as exc:
        msg = f"the {name!r} reader ({target}) cannot be loaded: {exc}"
        raise ReaderUnavailableError(msg) from exc


def _zarr_metadata(path: Path) -> Path | None:
    """The root metadata file of a zarr store directory, or ``None`` for anything else."""
    if not path.is_dir():
        return None
    return next((path / name for name in ZARR_METADATA if (path / name).is_file()), None)


def _check_path(path: Path) -> bytes:
    """The first bytes of a file, or a zarr store directory's root metadata, for ``claims``."""
    if not path.exists():
        msg = f"no such file: {path}"
        raise SlideNotFoundError(msg)
    if path.is_dir():
        metadata = _zarr_metadata(path)
        if metadata is not None:
            return metadata.read_bytes()
        msg = (
            f"{path} is a directory, not a slide file. Pass the slide file itself: for MIRAX the "
            ".mrxs file beside its data folder, for DICOM WSI one of the folder's instance files. "
            "The only directories wsiarray opens are OME-Zarr stores (zarr.json at the top)."
        )
        raise UnsupportedFormatError(msg)
    with path.open("rb") as fh:
        header = fh.read(HEADER_BYTES)
    if not header:
        msg = f"{path} is empty (0 bytes); it is not a slide. Copy it again."
        raise UnsupportedFormatError(msg)
    return header


def open_source(
    path: str | os.PathLike[str],
    /,
    *,
    reader: str = "auto",
    options: Mapping[str, Any] | None = None,
) -> SlideSource:
    """Open ``path`` with the named reader, or with the first reader that can read it.

    With ``reader="auto"`` each reader that recognises the file's first bytes is tried in
    order (tifffile, openslide, pil, zarr, then third-party readers); the first that opens the
    file wins. A directory is tried only when it is a zarr store (its root metadata stands
    in for the first bytes).

    Raises
    ------
    SlideNotFoundError
        The path does not exist.
    UnsupportedFormatError
        No reader can read the file; the message says what each reader answered.
    TruncatedFileError
        The file is cut short.
    ReaderUnavailableError
        The named reader does not exist or cannot be imported.
    """
    file = Path(path).expanduser()
    header = _check_path(file)
    options = dict(options or {})
    if reader != "auto":
        return _try_open(_reader_class(reader), file, options)
    answers = []
    for name, target in _reader_targets():
        cls = _reader_class(name, target)
        if not cls.claims(file, header):
            answers.append(f"{name}: does not recognise the content")
            continue
        try:
            return _try_open(cls, file, options)
        except TruncatedFileError:
            raise
        except UnsupportedFormatError as exc:
            answers.append(f"{name}: {exc}")
    msg = f"{file} is not a slide any reader can open (first bytes {header[:8]!r}). " + "; ".join(
        answers
    )
    raise UnsupportedFormatError(msg)


def _try_open(cls: type[SlideSource], path: Path, options: dict[str, Any]) -> SlideSource:
    try:
        return cls(path, **options)
    except WsiArrayError:
        raise
    except Exception as exc:  # a reader library's own error: say which reader and why
        msg = f"{cls.name} cannot read {path}: {type(exc).__name__}: {exc}"
        raise UnsupportedFormatError(msg) from exc


_cache: OrderedDict[SourceSpec, SlideSource] = OrderedDict()
_cache_lock = threading.Lock()


def cached_source(spec: SourceSpec, /, source: SlideSource | None = None) -> SlideSource:
    """Return an open source for ``spec``, reusing one per process (the dask worker cache).

    The cache keeps the :data:`CACHE_SIZE` most recently used slides. Passing ``source``
    stores an already opened source under ``spec``. Evicted sources are not closed (a
    thread may still be reading); their files close when they are garbage-collected.
    """
    with _cache_lock:
        if source is not None:
            _cache[spec] = source
        if spec in _cache:
            _cache.move_to_end(spec)
            return _cache[spec]
    opened = open_source(spec.path, reader=spec.reader, options=dict(spec.options))
    with _cache_lock:
        opened = _cache.setdefault(spec, opened)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return opened
