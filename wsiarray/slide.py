"""The user-facing :class:`Slide`: a slide's DataTree plus the metadata around it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import xarray as xr

from wsiarray.errors import LevelError
from wsiarray.sources import SlideMetadata, SourceSpec
from wsiarray.tree import ChunksLike

__all__ = ["Slide"]


class Slide:
    """An opened whole-slide image.

    Create it with :func:`wsiarray.open`. Every level is a lazy, dask-backed
    :class:`xarray.DataArray` with dims ``(y, x, c)`` and ``y``/``x`` in millimetres at pixel
    centres; nothing is decoded until computed. A slide pickles (as its path and options).

    Attributes
    ----------
    tree : xarray.DataTree
        ``/level0`` (full resolution) ... ``/levelN`` and ``/associated/<name>``.
    metadata : SlideMetadata
        Normalised metadata (pixel size in mm, magnification, levels, associated images).
    """

    def __init__(
        self,
        tree: xr.DataTree,
        metadata: SlideMetadata,
        spec: SourceSpec,
        chunks: ChunksLike = None,
    ) -> None:
        self.tree = tree
        self.metadata = metadata
        self._spec = spec
        self._chunks = chunks

    @property
    def path(self) -> str:
        """Absolute path of the slide file."""
        return self._spec.path

    @property
    def level_count(self) -> int:
        """Number of pyramid levels in the file."""
        return len(self.metadata.levels)

    @property
    def dimensions(self) -> tuple[int, int]:
        """``(height, width)`` of level 0 in pixels."""
        return self.metadata.levels[0].shape

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(height, width)`` of every level, full resolution first."""
        return tuple(level.shape for level in self.metadata.levels)

    @property
    def level_downsamples(self) -> tuple[tuple[float, float], ...]:
        """``(downsample_y, downsample_x)`` of every level: exact ratios of level 0's size."""
        base_h, base_w = self.dimensions
        return tuple((base_h / h, base_w / w) for h, w in self.level_dimensions)

    @property
    def mm_x(self) -> float | None:
        """Width of a level-0 pixel in millimetres, or ``None`` when the file does not say."""
        return self.metadata.mm_x

    @property
    def mm_y(self) -> float | None:
        """Height of a level-0 pixel in millimetres, or ``None`` when the file does not say."""
        return self.metadata.mm_y

    @property
    def magnification(self) -> float | None:
        """Native (objective) magnification, or ``None``; see ``metadata.magnification_derived``."""
        return self.metadata.magnification

    @property
    def properties(self) -> Mapping[str, str]:
        """All vendor properties, as strings."""
        return self.metadata.properties

    def image(self, level: int = 0) -> xr.DataArray:
        """Return the lazy ``(y, x, c)`` image of a pyramid level (0 is full resolution).

        Raises
        ------
        LevelError
            The slide has no such level.
        """
        if not 0 <= level < self.level_count:
            msg = f"level={level!r} out of range: {self.path} has {self.level_count} level(s) (0..{self.level_count - 1})"
            raise LevelError(msg)
        return self.tree[f"level{level}"]["image"]

    @property
    def levels(self) -> list[xr.DataArray]:
        """The images of all levels, full resolution first."""
        return [self.image(i) for i in range(self.level_count)]

    @property
    def associated(self) -> dict[str, xr.DataArray]:
        """Associated images (label, macro, thumbnail, ...) by name, lazy."""
        if "associated" not in self.tree.children:
            return {}
        return {name: node["image"] for name, node in self.tree["associated"].children.items()}

    def thumbnail(self, max_size: int = 512) -> np.ndarray:
        """Return an RGB(A) thumbnail whose longer side is at most ``max_size`` pixels.

        It is read from the smallest level at least ``max_size`` pixels on its longer side and
        reduced with Pillow's Lanczos filter.
        """
        from PIL import Image

        level = next(
            (
                i
                for i in reversed(range(self.level_count))
                if max(self.level_dimensions[i]) >= max_size
            ),
            0,
        )
        pixels = np.asarray(self.image(level).values)
        height, width = pixels.shape[:2]
        scale = min(1.0, max_size / max(height, width))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if pixels.dtype != np.uint8 or pixels.shape[2] not in (1, 3, 4):
            return pixels[:: max(1, height // size[1]), :: max(1, width // size[0])]
        image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
        return np.asarray(image.resize(size, Image.Resampling.LANCZOS))

    def close(self) -> None:
        """Nothing to release: reading happens through a per-process cache of open files."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        from wsiarray.api import _open_spec

        return (_open_spec, (self._spec, self._chunks))

    def __repr__(self) -> str:
        meta = self.metadata
        rows = [
            f"<wsiarray.Slide {self.path!r}>",
            f"  format: {meta.format} (reader {meta.reader}), dtype {meta.dtype}, channels {list(meta.channels)}",
            f"  pixel size: {_um(meta.mm_x)} x {_um(meta.mm_y)} µm, magnification {meta.magnification}"
            + (" (derived)" if meta.magnification_derived else ""),
        ]
        for i, ((h, w), (dy, dx)) in enumerate(
            zip(self.level_dimensions, self.level_downsamples, strict=True)
        ):
            rows.append(f"  level{i}: {w} x {h} px, downsample {dx:.4g} x {dy:.4g}")
        if meta.associated:
            rows.append("  associated: " + ", ".join(a.name for a in meta.associated))
        return "\n".join(rows)


def _um(mm: float | None) -> str:
    return "?" if mm is None else f"{mm * 1000:.4g}"
