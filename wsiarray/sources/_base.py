"""What every reader hands to the rest of wsiarray: metadata value objects and the source ABC."""

from __future__ import annotations

import abc
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from wsiarray.errors import LevelError

if TYPE_CHECKING:
    import zarr

    from wsiarray.sources._store import ChunkStore

__all__ = ["AssociatedInfo", "LevelInfo", "SlideMetadata", "SlideSource"]


@dataclass(frozen=True, slots=True)
class LevelInfo:
    """Geometry of one pyramid level.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` in pixels of this level.
    tile : tuple of int
        ``(tile_height, tile_width)`` of the native storage unit (tile or strip).
    chunks : tuple of int, optional
        ``(rows, cols)`` of a chunk of the level's zarr array: whole tiles; the tile by default.
    """

    shape: tuple[int, int]
    tile: tuple[int, int]
    chunks: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.chunks == (0, 0):
            object.__setattr__(self, "chunks", self.tile)


@dataclass(frozen=True, slots=True)
class AssociatedInfo:
    """An associated image (label, macro, thumbnail): its name and ``(height, width, bands)``."""

    name: str
    shape: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class SlideMetadata:
    """Normalised metadata of a slide, the same for every reader.

    Physical sizes are in millimetres per pixel of level 0; ``None`` means the file does not
    say (never a guess). ``magnification_derived`` is true when the magnification was not in
    the file but computed as ``0.01 / mm_x`` (10x is 1 µm per pixel, large_image's rule).
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


class SlideSource(abc.ABC):
    """A slide file opened by one reader.

    A reader implements :meth:`read_block` (pixels of a rectangle of one level) and
    :meth:`read_associated`; the base class serves every level through a read-only zarr v3
    store built on ``read_block`` (:attr:`store`, one array per level named ``"0"``, ``"1"``,
    ..., dims ``(y, x, c)``, chunks of :attr:`LevelInfo.chunks`).

    :meth:`read`, what dask tasks call, reads with ``read_block`` directly: the store's
    chunks are made by the same call, so both give identical pixels, but zarr 3's
    synchronous API runs every chunk through one event-loop thread and capped a 2-core
    whole-level read at ~310 MP/s where direct reads in dask's threads reach ~490 MP/s
    (the decoder's limit). A 256-px patch decodes only the tiles it touches.

    A source holds open file handles, so it is not pickled: pickle the path and options
    instead (see :class:`wsiarray.sources.SourceSpec`), as wsiarray's dask graphs do.
    Subclasses set ``name`` and :attr:`metadata` and implement :meth:`claims`, ``__init__``,
    :meth:`read_block` and :meth:`read_associated`; ``read_block`` must be thread-safe.
    """

    name: ClassVar[str]
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
        """Return pixels ``[y0:y1, x0:x1]`` of ``level`` (inside the level) as ``(h, w, c)``."""

    @abc.abstractmethod
    def read_associated(self, name: str, /) -> np.ndarray:
        """Return the associated image ``name`` as a ``(height, width, bands)`` array."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles."""

    @functools.cached_property
    def store(self) -> ChunkStore:
        """Read-only zarr v3 store with one array per level (``"0"`` is full resolution)."""
        from wsiarray.sources._store import ArraySpec, ChunkStore

        meta = self.metadata
        specs = [
            ArraySpec((*lv.shape, len(meta.channels)), lv.chunks, meta.dtype) for lv in meta.levels
        ]
        return ChunkStore(specs, self._read_chunk, label=self.path.name)

    def _read_chunk(self, level: int, row: int, col: int) -> np.ndarray:
        (height, width), (rows, cols) = (
            self.metadata.levels[level].shape,
            self.metadata.levels[level].chunks,
        )
        y0, x0 = row * rows, col * cols
        return self.read_block(level, y0, min(y0 + rows, height), x0, min(x0 + cols, width))

    def level_array(self, level: int, /) -> zarr.Array:
        """Return the zarr array of ``level`` (opened once, then cached)."""
        n = len(self.metadata.levels)
        if not 0 <= level < n:
            msg = f"level={level!r} out of range for {self.path.name}, which has {n} level(s) (0..{n - 1})"
            raise LevelError(msg)
        cache: dict[int, zarr.Array] = self.__dict__.setdefault("_level_arrays", {})
        if level not in cache:
            import zarr

            cache[level] = zarr.open_array(store=self.store, path=str(level), mode="r")
        return cache[level]

    def read(self, level: int, rows: slice, cols: slice, /) -> np.ndarray:
        """Read ``[rows, cols]`` of a level (unit-step slices) as a ``(y, x, c)`` array."""
        info = self.metadata.levels[level]
        y0, y1, _ = rows.indices(info.shape[0])
        x0, x1, _ = cols.indices(info.shape[1])
        if y1 <= y0 or x1 <= x0:
            return np.empty(
                (max(0, y1 - y0), max(0, x1 - x0), len(self.metadata.channels)), self.metadata.dtype
            )
        return self.read_block(level, y0, y1, x0, x1)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"
