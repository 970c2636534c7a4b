"""What every reader hands to the rest of wsiarray: metadata value objects and the source ABC."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from wsiarray.geometry import Resolution

__all__ = [
    "AssociatedInfo",
    "LevelInfo",
    "PlaneAxis",
    "SlideMetadata",
    "SlideSource",
    "WrappedSource",
]


@dataclass(frozen=True, slots=True)
class LevelInfo:
    """Geometry of one pyramid level.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` in pixels of this level.
    tile : tuple of int
        ``(tile_height, tile_width)`` of the native storage unit (tile or strip): dask
        chunks are whole tiles (:func:`wsiarray.chunks.dask_chunks`).
    tile_offset : tuple of int
        Where the tile grid starts, ``(rows, columns)``: tiles begin at
        ``tile_offset + k * tile``. 0 but in a slide shown flipped, whose first tile is the
        stored last, partial one (:mod:`wsiarray.sources._orientation`).
    """

    shape: tuple[int, int]
    tile: tuple[int, int]
    tile_offset: tuple[int, int] = (0, 0)


@dataclass(frozen=True, slots=True)
class AssociatedInfo:
    """An associated image (label, macro, thumbnail): its name and ``(height, width, bands)``."""

    name: str
    shape: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class PlaneAxis:
    """A dimension of a slide beyond ``(y, x, c)``: focal planes (``z``) or time points (``t``).

    Parameters
    ----------
    name : {"z", "t"}
        The dimension's name.
    values : tuple of float
        The coordinate of each plane: ``z`` in mm, ``t`` in seconds; plane indices
        (``0, 1, ...``) where the file does not say.
    units : str
        ``"mm"``, ``"s"``, or ``"index"`` where the file does not say.
    """

    name: str
    values: tuple[float, ...]
    units: str


@dataclass(frozen=True, slots=True)
class SlideMetadata:
    """Normalised metadata of a slide, the same for every reader.

    Physical sizes are in millimetres per pixel of level 0; ``None`` means the file does not
    say (never a guess). ``magnification_derived`` is true when the magnification was not in
    the file but computed as ``0.01 / mm_x`` (10x is 1 µm per pixel, large_image's rule).

    ``orientation`` is how the reader's stored pixels are turned (the TIFF/EXIF Orientation
    value, 1 = upright): a reader describes its levels as stored, and
    :func:`~wsiarray.sources.open_source` shows them upright, so every source it returns
    reports 1 (:mod:`wsiarray.sources._orientation`). ``icc_profile`` is the embedded ICC
    profile of the pixels served (level 0's), or None when the file has none. ``planes`` are
    the dimensions beyond ``(y, x, c)``, outermost first (empty for a 2-D slide); a reader
    with planes takes a plane's indices in :meth:`SlideSource.read_block`'s ``plane``.
    """

    format: str
    reader: str
    levels: tuple[LevelInfo, ...]
    dtype: str
    channels: tuple[str, ...]
    mm_x: float | None = None
    mm_y: float | None = None
    magnification: float | None = None
    magnification_derived: bool = False
    background: tuple[int, ...] = (255, 255, 255)
    properties: Mapping[str, str] = field(default_factory=dict)
    associated: tuple[AssociatedInfo, ...] = ()
    orientation: int = 1
    icc_profile: bytes | None = field(default=None, repr=False)
    planes: tuple[PlaneAxis, ...] = ()
    #: What the reader found suspicious in a file it opened (each also a
    #: :class:`~wsiarray.DamagedFileWarning` at open).
    warnings: tuple[str, ...] = ()

    @property
    def resolution(self) -> Resolution:
        """Pixel size and magnification of level 0."""
        return Resolution(self.mm_x, self.mm_y, self.magnification)

    @property
    def level_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(height, width)`` of every level, full resolution first."""
        return tuple(level.shape for level in self.levels)


class SlideSource(abc.ABC):
    """A slide file opened by one reader.

    A reader implements :meth:`read_block` (pixels of a rectangle of one level, read from
    the native tiles it covers) and :meth:`read_associated`; :meth:`read` is what wsiarray's
    arrays call. ``read_block`` must be thread-safe: dask calls it from many threads at once.

    A source holds open file handles, so it is not pickled: pickle its
    :class:`wsiarray.sources.SourceSpec` instead, as wsiarray's dask graphs do, and read
    through :data:`wsiarray.sources.source_cache`, which closes the files of the sources it
    evicts. Subclasses set ``name`` and :attr:`metadata`, implement :meth:`claims`,
    ``__init__``, :meth:`read_block` and :meth:`read_associated`, and :meth:`close` if they
    hold files.
    """

    name: ClassVar[str]
    #: Whether the reader opens URLs of objects in storage (``s3://``, ``https://``, any
    #: fsspec protocol), reading byte ranges (:mod:`wsiarray.sources._store`).
    remote: ClassVar[bool] = False
    #: Normalised metadata; set by the subclass's ``__init__``.
    metadata: SlideMetadata

    def __init__(self, path: Path, /, **options: Any) -> None:
        self.path = path
        self.options = options

    @classmethod
    @abc.abstractmethod
    def claims(cls, path: Path, header: bytes, /) -> bool:
        """Say from the path and its first bytes whether this reader should try the file."""

    @abc.abstractmethod
    def read_block(self, level: int, y0: int, y1: int, x0: int, x1: int, /) -> np.ndarray:
        """Return pixels ``[y0:y1, x0:x1]`` of ``level`` (inside the level) as ``(h, w, c)``.

        A reader whose metadata has ``planes`` takes a keyword ``plane``: the plane's index
        along each of them (it is passed only to such readers).
        """

    @abc.abstractmethod
    def read_associated(self, name: str, /) -> np.ndarray:
        """Return the associated image ``name`` as a ``(height, width, bands)`` array."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles."""

    def stamp(self) -> tuple[Any, ...] | None:
        """The version of an object read from a URL (size and ETag), or None: a local file's
        is its size and mtime, which :class:`~wsiarray.sources.SourceSpec` reads itself."""
        return None

    def read(
        self, level: int, rows: slice, cols: slice, /, plane: tuple[int, ...] = ()
    ) -> np.ndarray:
        """Read ``[rows, cols]`` of a level (unit-step slices) as a ``(y, x, c)`` array.

        ``plane`` is the index along each of ``metadata.planes`` (empty for a 2-D slide).
        """
        info = self.metadata.levels[level]
        y0, y1, _ = rows.indices(info.shape[0])
        x0, x1, _ = cols.indices(info.shape[1])
        if y1 <= y0 or x1 <= x0:
            return np.empty(
                (max(0, y1 - y0), max(0, x1 - x0), len(self.metadata.channels)), self.metadata.dtype
            )
        if plane:
            return self.read_block(level, y0, y1, x0, x1, plane=plane)  # type: ignore[call-arg]
        return self.read_block(level, y0, y1, x0, x1)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class WrappedSource(SlideSource):
    """A reader's source shown through another: its pixels changed block by block (turned
    upright, converted to sRGB), everything else its own.

    Subclasses set :attr:`metadata` and implement :meth:`read_block`; the reader's name,
    associated images, version stamp and files are the wrapped source's.

    Parameters
    ----------
    stored : SlideSource
        The source wrapped, closed with this one.
    **options
        Options beyond the wrapped source's that reopening the slide needs (they go into
        the spec a dask graph carries).
    """

    def __init__(self, stored: SlideSource, **options: Any) -> None:
        super().__init__(stored.path, **stored.options, **options)
        self.stored = stored
        self.name = stored.name  # type: ignore[misc]

    @classmethod
    def claims(cls, path: Path, header: bytes, /) -> bool:
        # docstring inherited: never picked for a file, only wrapped around a reader's source
        return False

    def read_associated(self, name: str, /) -> np.ndarray:
        # docstring inherited: associated images stay as stored
        return self.stored.read_associated(name)

    def close(self) -> None:
        # docstring inherited
        self.stored.close()

    def stamp(self) -> tuple[Any, ...] | None:
        # docstring inherited
        return self.stored.stamp()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.stored!r})"
