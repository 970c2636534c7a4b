"""What every reader hands to the rest of wsiarray: metadata value objects and the source ABC."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from wsiarray.errors import LevelError

if TYPE_CHECKING:
    import zarr

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

    A source serves each level through a read-only zarr v3 store (``store``, one array per
    level named ``"0"``, ``"1"``, ...) and reads associated images. It holds open file
    handles, so it is not pickled: pickle the path and options instead (see
    :class:`wsiarray.sources.SourceSpec`), which is what wsiarray's dask graphs do.

    Subclasses set ``name``, implement :meth:`claims`, ``__init__``, :attr:`metadata`,
    :attr:`store`, :meth:`level_axes` and :meth:`read_associated`.
    """

    name: ClassVar[str]

    def __init__(self, path: Path, /, **options: Any) -> None:
        self.path = path
        self.options = options

    @classmethod
    @abc.abstractmethod
    def claims(cls, path: Path, header: bytes, /) -> bool:
        """Say from the path and its first bytes whether this reader should try the file."""

    @property
    @abc.abstractmethod
    def metadata(self) -> SlideMetadata:
        """Normalised metadata."""

    @property
    @abc.abstractmethod
    def store(self) -> zarr.abc.store.Store:
        """Read-only zarr v3 store with one array per level (``"0"`` is full resolution)."""

    @abc.abstractmethod
    def level_axes(self, level: int, /) -> str:
        """Axes of the level's zarr array, from ``"Y"``, ``"X"``, ``"S"`` (samples) and ``"C"``.

        Other axes must have length 1.
        """

    @abc.abstractmethod
    def read_associated(self, name: str, /) -> np.ndarray:
        """Return the associated image ``name`` as a ``(height, width, bands)`` array."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles."""

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
        """Read rows and columns of a level as a ``(y, x, c)`` array in the stored dtype."""
        axes = self.level_axes(level)
        index: list[slice | int] = []
        for axis in axes:
            if axis == "Y":
                index.append(rows)
            elif axis == "X":
                index.append(cols)
            elif axis in "SC":
                index.append(slice(None))
            else:
                index.append(0)
        block = np.asarray(self.level_array(level)[tuple(index)])
        kept = [a for a in axes if a in "YXSC"]
        if len(kept) == 2:
            block = block[..., np.newaxis]
            kept.append("S")
        band = next(a for a in kept if a in "SC")
        return np.transpose(block, [kept.index("Y"), kept.index("X"), kept.index(band)])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"
