""":class:`TileSource`: large_image's methods over a :class:`wsiarray.Slide`.

Each method plans with the pure planners (:mod:`._levels`, :mod:`._regions`,
:mod:`._plans`, :mod:`._tiles`) and reads pixels through the Slide's public API; the
result is put in large_image's form by :mod:`._encode` and :mod:`._histogram`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

import wsiarray
from wsiarray.compat.large_image._encode import (
    TILE_FORMAT_IMAGE,
    TILE_FORMAT_NUMPY,
    encode,
    resize,
    with_bands,
)
from wsiarray.compat.large_image._histogram import histogram, tile_arrays
from wsiarray.compat.large_image._levels import (
    Magnification,
    Pyramid,
    level_for_scale,
    magnification_for_level,
)
from wsiarray.compat.large_image._plans import (
    RegionPlan,
    TileGridPlan,
    fit_size,
    plan_region,
    plan_tile_grid,
)
from wsiarray.compat.large_image._prefetch import TilePrefetcher
from wsiarray.compat.large_image._reads import LevelPixels, worker_count
from wsiarray.compat.large_image._regions import convert_region
from wsiarray.compat.large_image._tiles import (
    LazyTileDict,
    finish_tile,
    tile_box,
    tile_positions,
    tile_span,
    tile_values,
)
from wsiarray.errors import OptionError
from wsiarray.geometry import check_number, check_pixels


def getTileSource(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> TileSource:
    """Open a slide as a large_image-compatible :class:`TileSource`."""
    return TileSource(path, *args, **kwargs)


class TileSource:
    """A slide with large_image's ``TileSource`` methods.

    Parameters
    ----------
    path : str or os.PathLike
        The slide.
    bands : int, optional
        3 for RGB, 4 for RGBA; by default what large_image's default source returns.
    reader : str
        wsiarray reader (``"auto"`` by default).
    style : mapping, optional
        Of large_image's styles only ``{"icc": False}`` is taken: by default, as in large_image,
        an 8-bit RGB slide with an embedded ICC profile is served converted to sRGB
        (``wsiarray.open(..., to_srgb=True)``); ``{"icc": False}`` serves the stored values.

    Attributes
    ----------
    sizeX, sizeY, tileWidth, tileHeight, levels : int
        As large_image's.
    pyramid : Pyramid
        large_image's view of the slide's levels, what the planners take.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        bands: int | None = None,
        reader: str = "auto",
        style: Mapping[str, Any] | None = None,
    ) -> None:
        # a bytes path decoded as open() does (OpenSlide's format check takes str)
        self._path, self._reader, self._bands_option = os.fsdecode(path), reader, bands
        self._style = dict(style or {})
        self._slide = _open_styled(path, reader, self._style)
        self.pyramid = Pyramid.of(self._slide.level_shapes, self._slide.metadata.levels[0].tile)
        self.sizeX, self.sizeY = self.pyramid.size_x, self.pyramid.size_y
        self.tileWidth, self.tileHeight = self.pyramid.tile_width, self.pyramid.tile_height
        self.levels = self.pyramid.levels
        self._band_count = bands if bands is not None else self._default_bands()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (self._path, self._bands_option, self._reader, self._style))

    def _default_bands(self) -> int:
        """4 (RGBA) for an RGB file OpenSlide recognises, as large_image reads it through
        OpenSlide; the file's own bands otherwise."""
        channels = len(self._slide.metadata.channels)
        try:
            import openslide
        except ImportError:  # pragma: no cover - a dependency
            return channels
        recognised = openslide.OpenSlide.detect_format(self._path) is not None
        return 4 if recognised and channels == 3 else channels

    def getPreferredLevel(self, level: int) -> int:
        """The level holding real data at no lower resolution than ``level``."""
        return self.pyramid.preferred_level(level)

    # -- metadata ----------------------------------------------------------------------------

    def getMetadata(self) -> dict[str, Any]:
        """``levels, sizeX, sizeY, tileWidth, tileHeight, magnification, mm_x, mm_y, dtype, bandCount``."""
        native = self.getNativeMagnification()
        return {
            "levels": self.levels,
            "sizeX": self.sizeX,
            "sizeY": self.sizeY,
            "tileWidth": self.tileWidth,
            "tileHeight": self.tileHeight,
            "magnification": native["magnification"],
            "mm_x": native["mm_x"],
            "mm_y": native["mm_y"],
            "dtype": self._slide.metadata.dtype,
            "bandCount": self._band_count,
        }

    @property
    def metadata(self) -> dict[str, Any]:
        """Same as :meth:`getMetadata`."""
        return self.getMetadata()

    def getNativeMagnification(self) -> dict[str, float | None]:
        """``{magnification, mm_x, mm_y}`` of full resolution (None where unknown)."""
        slide = self._slide
        return {"magnification": slide.magnification, "mm_x": slide.mm_x, "mm_y": slide.mm_y}

    def getMagnificationForLevel(self, level: float | None = None) -> Magnification:
        """Native values scaled to a (possibly fractional) virtual level, plus ``scale`` and ``level``."""
        return magnification_for_level(self.getNativeMagnification(), self.levels, level)

    def getLevelForMagnification(
        self,
        magnification: float | None = None,
        exact: bool = False,
        mm_x: float | None = None,
        mm_y: float | None = None,
        rounding: str | bool | None = "round",
        **kwargs: Any,
    ) -> float | None:
        """The virtual level of a magnification or pixel size (large_image's rules)."""
        scale = {"magnification": magnification, "mm_x": mm_x, "mm_y": mm_y, "exact": exact}
        return level_for_scale(self.getNativeMagnification(), self.levels, scale, rounding)

    # -- regions -----------------------------------------------------------------------------

    def convertRegionScale(
        self,
        sourceRegion: Mapping[str, Any],
        sourceScale: Mapping[str, Any] | None = None,
        targetScale: Mapping[str, Any] | None = None,
        targetUnits: str | None = None,
        cropToImage: bool = True,
    ) -> dict[str, Any]:
        """Convert a region between scales and units (returned unchanged when nothing to do)."""
        native = self.getNativeMagnification()
        return convert_region(
            self.pyramid,
            native,
            sourceRegion,
            sourceScale,
            targetScale,
            targetUnits,
            crop=cropToImage,
        )

    def getRegionAtAnotherScale(
        self,
        sourceRegion: Mapping[str, Any],
        sourceScale: Mapping[str, Any] | None = None,
        targetScale: Mapping[str, Any] | None = None,
        targetUnits: str | None = None,
        **kwargs: Any,
    ) -> tuple[Any, str]:
        """``getRegion(region=convertRegionScale(...), scale=targetScale, ...)``."""
        if "region" in kwargs or "scale" in kwargs:
            msg = "getRegionAtAnotherScale takes sourceRegion and targetScale, not region or scale"
            raise TypeError(msg)
        region = self.convertRegionScale(sourceRegion, sourceScale, targetScale, targetUnits)
        return self.getRegion(region=region, scale=targetScale, **kwargs)

    def getPointAtAnotherScale(
        self,
        point: tuple[float, float],
        sourceScale: Mapping[str, Any] | None = None,
        sourceUnits: str | None = None,
        targetScale: Mapping[str, Any] | None = None,
        targetUnits: str | None = None,
    ) -> tuple[float, float]:
        """Convert a point between scales (not cropped to the image)."""
        region = self.convertRegionScale(
            {"left": point[0], "top": point[1], "units": sourceUnits},
            sourceScale,
            targetScale,
            targetUnits,
            cropToImage=False,
        )
        return region["left"], region["top"]

    # -- pixels ------------------------------------------------------------------------------

    def read_level_pixels(
        self, level: int, left: int, top: int, right: int, bottom: int
    ) -> np.ndarray:
        """Pixels of virtual ``level`` (one that holds real data) in its own pixel
        coordinates, with large_image's bands (band-planar: each band's pixels contiguous),
        in the calling thread."""
        return self._level_pixels(level).read(left, top, right - left, bottom - top)

    def _level_pixels(self, level: int) -> LevelPixels:
        """The reader of virtual ``level``'s file level (one that holds real data: its
        pixels are the file level's)."""
        file_level = self.pyramid.reads[level].file_level
        readers: dict[int, LevelPixels] = self.__dict__.setdefault("_readers", {})
        if file_level not in readers:
            readers[file_level] = LevelPixels(self._slide, file_level, self._band_count)
        return readers[file_level]

    def getRegion(self, format: Any = (TILE_FORMAT_IMAGE,), **kwargs: Any) -> tuple[Any, str]:
        """A region at a scale, as large_image returns it: ``(image, format or mime type)``.

        Large regions are decoded on one thread per core into the output (band-planar, as
        every region and tile of this layer).

        Raises
        ------
        PixelBudgetError
            The region read or the output holds more than the pixel budget
            (:data:`wsiarray.geometry.MAX_PIXELS`), refused before anything is read.
        """
        plan = plan_region(self.pyramid, self.getNativeMagnification(), kwargs)
        if plan is None:  # large_image's empty region
            return encode(np.zeros((0, 0, 3), dtype=np.float64), format, kwargs)
        check_pixels(plan.output_height, plan.output_width, "getRegion's output")
        image = self._level_pixels(plan.level).read_parallel(
            plan.left, plan.top, plan.width, plan.height
        )
        out_w, out_h = int(plan.output_width), int(plan.output_height)
        if (out_w, out_h) != (plan.width, plan.height):
            # one resize of the whole region; any resample but None picks the filter by direction
            resample = None if kwargs.get("resample", True) is None else True
            image = resize(image, out_w, out_h, upsample=out_w > plan.width, resample=resample)
        return encode(image, format, kwargs)

    def getThumbnail(
        self, width: int | None = None, height: int | None = None, **kwargs: Any
    ) -> tuple[Any, str]:
        """The whole image fitted in ``width`` x ``height`` (256 x 256 by default).

        Raises
        ------
        OptionError
            ``width`` or ``height`` under 2, NaN or infinite (large_image's message; a
            ValueError, as it raises).
        """
        for name, value in (("width", width), ("height", height)):
            if value is not None and check_number(value, name) < 2:
                msg = f"Invalid width or height.  Minimum value is 2 (got {name}={value!r})."
                raise OptionError(msg)
        if width is None and height is None:
            width = height = 256
        kwargs = {k: v for k, v in kwargs.items() if k not in ("region", "output")}
        return self.getRegion(output={"maxWidth": width, "maxHeight": height}, **kwargs)

    def getPixel(self, **kwargs: Any) -> dict[str, Any]:
        """The value of one pixel: ``{'value': [...], 'r', 'g', 'b', 'a'}``."""
        region = dict(kwargs.get("region") or {})
        region.setdefault("width", 1)
        region.setdefault("height", 1)
        image, _ = self.getRegion(
            region=region, scale=kwargs.get("scale"), format=TILE_FORMAT_NUMPY
        )
        if not image.size:
            return {}
        value = [v.item() for v in image[0, 0]]
        names = ["r", "g", "b", "a"] if len(value) >= 3 else ["r", "a"]
        return {"value": value, **dict(zip(names, value, strict=False))}

    # -- tiles -------------------------------------------------------------------------------

    def tileIterator(
        self,
        format: Any = (TILE_FORMAT_NUMPY,),
        resample: Any = True,
        **kwargs: Any,
    ) -> Iterator[LazyTileDict]:
        """Iterate over tiles of a region at a scale, in row-major order (large_image's keys).

        Once the loop reads a tile's pixels, the next tiles are decoded ahead of it on one
        thread per core (at most 2 per thread, see :mod:`._prefetch`); leaving the loop or
        closing the iterator stops that work.
        """
        plan = plan_region(self.pyramid, self.getNativeMagnification(), kwargs)
        if plan is None:
            return
        if round(plan.requested_scale, 2) == 1.0 or resample in (None, False):
            resample = False
        resampled = resample is not False
        grid = plan_tile_grid(plan, self.tileWidth, self.tileHeight, kwargs, resampled=resampled)
        _check_tile_pixels(plan, grid, resampled=resampled)
        fmt = ((format,) if isinstance(format, str) else tuple(format))[0]
        mag = self.getMagnificationForLevel(plan.level)
        prefetcher = None
        if kwargs.get("tile_position") is None and grid.columns * grid.rows > 1:
            columns = [
                tile_span(grid.x, x, plan.left, plan.width)
                for x in range(grid.x.start, grid.x.stop)
            ]
            rows = [
                tile_span(grid.y, y, plan.top, plan.height)
                for y in range(grid.y.start, grid.y.stop)
            ]
            if min(length for _, length in columns + rows) > 0:
                prefetcher = TilePrefetcher(
                    self._level_pixels(plan.level),
                    columns,
                    rows,
                    functools.partial(
                        _finish_box, fmt=fmt, requested=plan.requested_scale, resample=resample
                    ),
                    worker_count(),
                )
        try:
            for index, (x, y) in enumerate(tile_positions(grid, kwargs.get("tile_position"))):
                values = tile_values(plan, grid, x, y, mag, resampled=resampled)
                box = tile_box(plan, grid, x, y)
                loader = None if prefetcher is None else functools.partial(prefetcher.result, index)
                yield LazyTileDict(
                    self, plan.level, fmt, values, box, plan.requested_scale, resample, loader
                )
        finally:
            if prefetcher is not None:
                prefetcher.close()

    def getSingleTile(self, *args: Any, **kwargs: Any) -> LazyTileDict | None:
        """The first tile :meth:`tileIterator` would yield (use ``tile_position`` to pick one)."""
        return next(self.tileIterator(*args, **kwargs), None)

    def getTileCount(self, *args: Any, **kwargs: Any) -> int:
        """How many tiles :meth:`tileIterator` yields for these arguments (without reading any)."""
        tile = self.getSingleTile(*args, **{**kwargs, "tile_position": 0})
        return 0 if tile is None else tile["iterator_range"]["position"]

    def histogram(
        self,
        dtype: Any = None,
        onlyMinMax: bool = False,
        bins: int = 256,
        density: bool = False,
        format: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Per-band ``min, max, mean, stdev`` and histograms over the tiles ``tileIterator``
        yields for ``kwargs`` (``range=`` as large_image: None, ``"round"`` or ``(lo, hi)``)."""
        hist_range = kwargs.pop("range", None)
        return histogram(
            lambda: tile_arrays(self.tileIterator(format=TILE_FORMAT_NUMPY, **kwargs), dtype),
            dtype=dtype or self._slide.metadata.dtype,
            only_min_max=onlyMinMax,
            bins=bins,
            density=density,
            hist_range=hist_range,
        )

    # -- associated images -------------------------------------------------------------------

    def getAssociatedImagesList(self) -> list[str]:
        """Names of the associated images."""
        return sorted(self._slide.associated)

    def getAssociatedImage(
        self, imageKey: str, *args: Any, **kwargs: Any
    ) -> tuple[Any, str] | None:
        """An associated image, optionally fitted in ``width`` x ``height``; None if absent."""
        if imageKey not in self._slide.associated:
            return None
        image = with_bands(self._slide.associated[imageKey].values, self._band_count)
        width, height = kwargs.get("width"), kwargs.get("height")
        for name, value in (("width", width), ("height", height)):
            if value:  # 0 and None: not given, as large_image takes them
                check_number(value, name, positive=True)
        if width or height:
            out_w, out_h, _ = fit_size(width, height, image.shape[1], image.shape[0])
            check_pixels(out_h, out_w, "the associated image's output")
            if (out_w, out_h) != image.shape[1::-1]:
                image = resize(image, out_w, out_h, upsample=out_w > image.shape[1], resample=True)
        return encode(image, kwargs.get("format", (TILE_FORMAT_IMAGE,)), kwargs)


def _check_tile_pixels(plan: RegionPlan, grid: TileGridPlan, *, resampled: bool) -> None:
    """Refuse, before the first tile, tiles over the pixel budget: the largest tile read
    (its stride and overlap, within the region) and, resampled, its output size."""
    read_w = min(plan.width, grid.x.stride + grid.x.overlap)
    read_h = min(plan.height, grid.y.stride + grid.y.overlap)
    check_pixels(read_h, read_w, "a tile read")
    if resampled:
        scale = plan.requested_scale
        check_pixels(read_h / scale, read_w / scale, "a tile's output")


def _finish_box(image: np.ndarray, *, fmt: str, requested: float, resample: Any) -> tuple[Any, str]:
    """:func:`finish_tile` of a tile's pixels (their shape is the box's)."""
    box = (0, 0, image.shape[1], image.shape[0])
    return finish_tile(image, box, fmt, requested, resample)


def _reopen(path: str, bands: int | None, reader: str, style: dict[str, Any]) -> TileSource:
    return TileSource(path, bands=bands, reader=reader, style=style)


def _open_styled(
    path: str | os.PathLike[str], reader: str, style: dict[str, Any]
) -> wsiarray.Slide:
    """The slide as large_image styles it: converted to sRGB when it has an ICC profile (an
    8-bit RGB one: large_image's conversion of other slides fails and leaves them as stored)
    unless ``style`` says ``{"icc": False}``."""
    if set(style) - {"icc"}:
        msg = f"of large_image's styles wsiarray's compat takes only {{'icc': bool}}, not {style}"
        raise OptionError(msg)
    slide = wsiarray.open(path, reader=reader)
    meta = slide.metadata
    wanted = style.get("icc", True) and meta.icc_profile is not None
    if wanted and meta.dtype == "uint8" and meta.channels[:3] == ("R", "G", "B"):
        return wsiarray.open(path, reader=reader, to_srgb=True)
    return slide
