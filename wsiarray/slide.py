"""The user-facing :class:`Slide`: a slide's DataTree plus the metadata around it."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np

from wsiarray import geometry
from wsiarray._typing import ChunksLike
from wsiarray.errors import LevelError, RegionError, ScaleError
from wsiarray.sources import SlideMetadata, SourceSpec, cached_source

if TYPE_CHECKING:
    import xarray as xr

    from wsiarray.tiling import TileGrid

__all__ = ["DIRECT_PIXELS", "Slide"]

#: Regions with at most this many output pixels are read directly, not through dask.
DIRECT_PIXELS = 4096 * 4096


class Slide:
    """An opened whole-slide image.

    Create it with :func:`wsiarray.open`. Every level is a lazy, dask-backed
    :class:`xarray.DataArray` with dims ``(y, x, c)`` and ``y``/``x`` in millimetres at pixel
    centres; nothing is decoded until computed. A slide pickles (as its path and options).

    Attributes
    ----------
    metadata : SlideMetadata
        Normalised metadata (pixel size in mm, magnification, levels, associated images).
    """

    def __init__(
        self, metadata: SlideMetadata, spec: SourceSpec, chunks: ChunksLike = None
    ) -> None:
        self.metadata = metadata
        self._spec = spec
        self._chunks = chunks

    @functools.cached_property
    def tree(self) -> xr.DataTree:
        """``/level0`` (full resolution) ... ``/levelN`` and ``/associated/<name>``, lazy.

        Built on first use (importing xarray and dask), so that :meth:`read` alone stays light.
        """
        from wsiarray.tree import build_tree

        return build_tree(self._spec, self.metadata, chunks=self._chunks)

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
    def background_pixel(self) -> tuple[int, ...]:
        """The background colour as one value per channel (0 for channels it does not name)."""
        bands = len(self.metadata.channels)
        return tuple((list(self.metadata.background) + [0] * bands)[:bands])

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
        self._check_level(level)
        return self.tree[f"level{level}"]["image"]

    def read(self, left: int, top: int, width: int, height: int, *, level: int = 0) -> np.ndarray:
        """Pixels of a rectangle of a file level as a plain ``(height, width, c)`` numpy array.

        The fastest way to one patch: no xarray, no dask (neither is even imported). The
        rectangle is in pixels of ``level``, clipped to the level.

        Raises
        ------
        LevelError
            No such level.
        RegionError
            The rectangle is empty or outside the level.
        """
        level_height, level_width = self.level_dimensions[self._check_level(level)]
        window = geometry.PixelWindow(top, top + height, left, left + width).clipped(
            level_height, level_width
        )
        if window.shape[0] <= 0 or window.shape[1] <= 0:
            msg = (
                f"the rectangle left={left}, top={top}, width={width}, height={height} is empty or "
                f"outside level {level}, which is {level_width} x {level_height} pixels"
            )
            raise RegionError(msg)
        return cached_source(self._spec).read(
            level, slice(window.y0, window.y1), slice(window.x0, window.x1)
        )

    def level(
        self,
        level: int | None = None,
        *,
        magnification: float | None = None,
        mm: float | None = None,
        downsample: float | None = None,
        upsample: bool = False,
    ) -> xr.DataArray:
        """The lazy ``(y, x, c)`` image at exactly the asked resolution.

        Parameters
        ----------
        level : int, optional
            A level of the file (0 is full resolution).
        magnification : float, optional
            Objective magnification, e.g. ``10`` for 10x.
        mm : float, optional
            Pixel size in millimetres (``0.001`` is 1 µm per pixel).
        downsample : float, optional
            Level-0 pixels per output pixel (``4`` is a quarter of the full resolution).
        upsample : bool
            Allow a resolution finer than level 0 (pixels are replicated).

        Returns
        -------
        xarray.DataArray
            The file's level where one matches (within 0.1 %); otherwise the coarsest finer
            level, area-averaged to the exact resolution (block means for integer factors,
            antialiased area weights otherwise; seam-free across dask chunks), in the
            stored dtype (rounded). Coordinates and attrs (``downsample_x/y``,
            ``magnification``, ``mm_x``, ``mm_y``) describe the result.

        Raises
        ------
        LevelError
            No such file level.
        MissingResolutionError
            ``magnification`` or ``mm`` on a slide that does not record them.
        ScaleError
            Finer than level 0 without ``upsample=True``.
        """
        return self._image_at(self._downsample(level, magnification, mm, upsample, downsample))

    def region(
        self,
        left: float,
        top: float,
        width: float,
        height: float,
        *,
        units: str = "base_pixels",
        level: int | None = None,
        magnification: float | None = None,
        mm: float | None = None,
        pad: bool = False,
        upsample: bool = False,
    ) -> xr.DataArray:
        """A rectangle of the slide at any resolution, as a labelled ``(y, x, c)`` DataArray.

        Parameters
        ----------
        left, top, width, height : float
            The rectangle, in ``units``.
        units : {"base_pixels", "level_pixels", "mm", "um", "fraction"}
            ``base_pixels`` are level-0 pixels; ``level_pixels`` are pixels at the asked
            resolution; ``fraction`` is a fraction of the slide's width and height.
            Aliases: ``base``, ``px``, ``pixels``, ``µm``, ``micron`` ...
        level : int, optional
            Output at this file level (default: full resolution).
        magnification : float, optional
            Output magnification, as in :meth:`level`.
        mm : float, optional
            Output pixel size in millimetres, as in :meth:`level`.
        pad : bool
            Pad the parts outside the slide with the background colour instead of clipping.
        upsample : bool
            Allow an output resolution finer than level 0, as in :meth:`level`.

        Returns
        -------
        xarray.DataArray
            Lazy. Up to 4096 x 4096 output pixels it reads directly (``.values`` decodes
            just the tiles it needs, in the calling thread, without dask); larger regions
            are dask arrays read in parallel. Pixel bounds are floor of the start and
            ceil of the end, so the asked area is always covered.

        Raises
        ------
        RegionError
            The rectangle is empty, or entirely outside the slide (without ``pad``).
        UnitError
            Unknown unit.
        MissingResolutionError
            Physical units or magnification on a slide that does not record them.
        """
        downsample = self._downsample(level, magnification, mm, upsample)
        image = self._image_at(downsample)
        ds_y, ds_x = image.attrs["downsample_y"], image.attrs["downsample_x"]
        box = geometry.region_to_base(
            left,
            top,
            width,
            height,
            units,
            base_shape=self.dimensions,
            mm_x=self.mm_x,
            mm_y=self.mm_y,
            downsample=(ds_y, ds_x),
        )
        window = geometry.window_at(box, ds_y, ds_x)
        if window.shape[0] <= 0 or window.shape[1] <= 0:
            msg = f"the region {width!r} x {height!r} {units} is empty at this resolution"
            raise RegionError(msg)
        inside = window.clipped(image.shape[0], image.shape[1])
        if (inside.shape[0] == 0 or inside.shape[1] == 0) and not pad:
            msg = (
                f"the region left={left!r}, top={top!r}, width={width!r}, height={height!r} "
                f"({units}) lies outside the slide, which is {self.dimensions[1]} x "
                f"{self.dimensions[0]} base pixels; pass pad=True for background pixels"
            )
            raise RegionError(msg)
        if window.shape[0] * window.shape[1] <= DIRECT_PIXELS:
            image = self._image_at(downsample, direct=True)
        result = image.isel(y=slice(inside.y0, inside.y1), x=slice(inside.x0, inside.x1))
        if pad and inside != window:
            result = self._pad(result, window, inside, ds_y, ds_x)
        return result

    def tiles(
        self,
        size: int | tuple[int, int],
        overlap: int | tuple[int, int] = 0,
        *,
        edges: bool = False,
        region: tuple[float, float, float, float] | None = None,
        units: str = "base_pixels",
        level: int | None = None,
        magnification: float | None = None,
        mm: float | None = None,
        offset: tuple[int, int] = (0, 0),
        mask: xr.DataArray | None = None,
        min_tissue: float = 0.5,
    ) -> TileGrid:
        """A grid of tiles at a resolution: tile iteration as slicing.

        Parameters
        ----------
        size : int or (int, int)
            Tile size in pixels at the grid's resolution (rows, columns).
        overlap : int or (int, int)
            Pixels shared by neighbouring tiles (rows, columns).
        edges : bool
            Shift the grid by half the overlap so the tiles' cores cover the region exactly.
        region : (left, top, width, height), optional
            Part of the slide to tile, in ``units`` (as :meth:`region`); all of it by default.
        units : str
            Unit of ``region``, as in :meth:`region` (``base_pixels`` by default).
        level : int, optional
            The grid's resolution as a file level, as in :meth:`level`.
        magnification : float, optional
            The grid's resolution as a magnification.
        mm : float, optional
            The grid's resolution as a pixel size in millimetres.
        offset : (int, int)
            Shift of the grid's origin from the region's top-left corner, in pixels.
        mask : xarray.DataArray, optional
            A tissue mask (:func:`wsiarray.tissue_mask`): iteration, ``len`` and ``map``
            then keep only tiles at least ``min_tissue`` covered (``grid.tissue`` has the
            fractions).
        min_tissue : float
            Minimum covered fraction of a kept tile, with ``mask``.

        Returns
        -------
        TileGrid
            ``len``, ``grid[ty, tx]``, iteration over :class:`~wsiarray.tiling.Tile`,
            ``to_dataarray()`` and ``map(fn)``.
        """
        from wsiarray.tiling import TileGrid

        image = self.level(level, magnification=magnification, mm=mm)
        height, width = image.shape[:2]
        window = geometry.PixelWindow(0, height, 0, width)
        if region is not None:
            box = geometry.region_to_base(
                *region,
                units,
                base_shape=self.dimensions,
                mm_x=self.mm_x,
                mm_y=self.mm_y,
                downsample=(image.attrs["downsample_y"], image.attrs["downsample_x"]),
            )
            window = geometry.window_at(
                box, image.attrs["downsample_y"], image.attrs["downsample_x"]
            ).clipped(height, width)
            if window.shape[0] <= 0 or window.shape[1] <= 0:
                msg = f"the region {region!r} ({units}) is empty or outside the slide"
                raise RegionError(msg)
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
        return TileGrid(
            self,
            image,
            (window.y0, window.y1, window.x0, window.x1),
            size=pair(size),
            overlap=pair(overlap),
            edges=edges,
            offset=tuple(offset),
            mask=mask,
            min_tissue=min_tissue if mask is not None else 0.0,
        )

    def _pad(
        self,
        image: xr.DataArray,
        window: geometry.PixelWindow,
        inside: geometry.PixelWindow,
        ds_y: float,
        ds_x: float,
    ) -> xr.DataArray:
        """Pad with the background colour out to ``window``, extending the coordinates."""
        background = self.background_pixel
        if image.size == 0:  # wholly outside the slide: only background
            fill = np.broadcast_to(
                np.asarray(background, image.dtype), (*window.shape, len(background))
            )
            import xarray as xr

            padded = xr.DataArray(
                fill.copy(), dims=("y", "x", "c"), coords={"c": image.c}, attrs=image.attrs
            )
        else:
            widths = {
                "y": (inside.y0 - window.y0, window.y1 - inside.y1),
                "x": (inside.x0 - window.x0, window.x1 - inside.x1),
            }
            bands = [
                image.isel(c=[i]).pad(widths, constant_values=v) for i, v in enumerate(background)
            ]
            padded = xr_concat(bands, dim="c").astype(image.dtype)
        step_y = (self.mm_y or 1.0) * ds_y
        step_x = (self.mm_x or 1.0) * ds_x
        return padded.assign_coords(
            y=(np.arange(window.y0, window.y1) + 0.5) * step_y,
            x=(np.arange(window.x0, window.x1) + 0.5) * step_x,
        ).transpose("y", "x", "c")

    def _downsample(
        self,
        level: int | None,
        magnification: float | None,
        mm: float | None,
        upsample: bool,
        downsample: float | None = None,
    ) -> float:
        level_downsample = None
        if level is not None:
            level_downsample = self.level_downsamples[self._check_level(level)][1]
        downsample = geometry.target_downsample(
            level_downsample=level_downsample,
            magnification=magnification,
            mm=mm,
            downsample=downsample,
            native_magnification=self.magnification,
            mm_x=self.mm_x,
        )
        if downsample < 1 - 1e-9 and not upsample:
            msg = (
                f"that resolution is {1 / downsample:.3g} times finer than the slide's full "
                "resolution; pass upsample=True (--upsample) to replicate pixels"
            )
            raise ScaleError(msg)
        return downsample

    def _image_at(self, downsample: float, *, direct: bool = False) -> xr.DataArray:
        """The (cached) lazy image at a downsample: building one costs more than a patch read."""
        key = (downsample, direct)
        cache: dict[tuple[float, bool], xr.DataArray] = self.__dict__.setdefault("_images", {})
        if key not in cache:
            cache[key] = self._build_image(downsample, direct=direct)
        return cache[key]

    def _build_image(self, downsample: float, *, direct: bool) -> xr.DataArray:
        from wsiarray.tree import image_at

        return image_at(self._spec, self.metadata, downsample, chunks=self._chunks, direct=direct)

    def _check_level(self, level: int) -> int:
        if not 0 <= level < self.level_count:
            msg = (
                f"level={level!r} out of range: {self.path} has {self.level_count} level(s) "
                f"(0..{self.level_count - 1})"
            )
            raise LevelError(msg)
        return level

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

    def thumbnail_level(self, max_size: int = 512) -> int:
        """The file level :meth:`thumbnail` reads: the smallest with a side of ``max_size``.

        Returns
        -------
        int
            The coarsest level whose longer side is at least ``max_size`` pixels (0 if none).
        """
        return next(
            (
                i
                for i in reversed(range(self.level_count))
                if max(self.level_dimensions[i]) >= max_size
            ),
            0,
        )

    def thumbnail(self, max_size: int = 512) -> np.ndarray:
        """Return an RGB(A) thumbnail whose longer side is at most ``max_size`` pixels.

        It is read from the smallest level at least ``max_size`` pixels on its longer side and
        reduced with Pillow's Lanczos filter.
        """
        from PIL import Image

        level = self.thumbnail_level(max_size)
        pixels = np.asarray(self.image(level).values)
        height, width = pixels.shape[:2]
        scale = min(1.0, max_size / max(height, width))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if pixels.dtype != np.uint8 or pixels.shape[2] not in (1, 3, 4):
            return pixels[:: max(1, height // size[1]), :: max(1, width // size[0])]
        image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
        return np.asarray(image.resize(size, Image.Resampling.LANCZOS))

    def to_zarr(
        self,
        path: str | os.PathLike[str],
        /,
        *,
        pyramid: Literal["levels", "power_of_two"] = "levels",
        chunks: int = 1024,
        compressor: Literal["zstd", "jpeg", "none"] = "zstd",
        associated: bool = True,
        overwrite: bool = False,
    ) -> Path:
        """Write the slide as an OME-Zarr (OME-NGFF 0.5, zarr v3) multiscale image.

        Streams level by level with dask (bounded memory, parallel writes); see
        :func:`wsiarray.export.write_ome_zarr` for the parameters and the layout.

        Returns
        -------
        pathlib.Path
            The written store's path, which :func:`wsiarray.open` reopens.
        """
        from wsiarray.export import write_ome_zarr

        return write_ome_zarr(
            self,
            path,
            pyramid=pyramid,
            chunks=chunks,
            compressor=compressor,
            associated=associated,
            overwrite=overwrite,
        )

    def close(self) -> None:
        """Nothing to release: reading happens through a per-process cache of open files."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _repr_html_(self) -> str:
        """Notebook display: a small preview, the summary and the level table."""
        from wsiarray._display import slide_html

        return slide_html(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (self._spec, self._chunks))

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


def _reopen(spec: SourceSpec, chunks: ChunksLike) -> Slide:
    """Rebuild a pickled :class:`Slide` from its spec (reopening the file in this process)."""
    return Slide(cached_source(spec).metadata, spec, chunks)


def xr_concat(*args: Any, **kwargs: Any) -> Any:
    """``xarray.concat``, imported when first needed."""
    import xarray as xr

    return xr.concat(*args, **kwargs)


def _um(mm: float | None) -> str:
    return "?" if mm is None else f"{mm * 1000:.4g}"
