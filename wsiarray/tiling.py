"""Tile grids as slicing: positions, per-tile metadata, a lazy stack of tiles, parallel maps.

A grid (:class:`TileGrid`) lives at one resolution of a slide (a file level or any
magnification) and is built on :class:`~wsiarray.Slide`'s public API. Tiles of
``size`` pixels step by ``size - overlap`` from the region's top-left corner (plus an
``offset``); tiles at the right and bottom edges are cropped to the region. With
``edges=True`` the grid is shifted by ``-overlap // 2`` so that the tiles' non-overlapping
cores cover the region exactly (large_image's ``edges``).
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from wsiarray import geometry
from wsiarray.arrays import TileMapArray, pad_background
from wsiarray.chunks import tiles_per_task
from wsiarray.errors import OptionError, RegionError

if TYPE_CHECKING:
    import xarray as xr

    from wsiarray.slide import Slide

__all__ = ["Tile", "TileGrid", "axis_tiles"]


def axis_tiles(
    start: int, stop: int, size: int, overlap: int, *, edges: bool, offset: int = 0
) -> list[tuple[int, int]]:
    """``[begin, end)`` of each tile along one axis of the region ``[start, stop)``.

    Examples
    --------
    >>> axis_tiles(0, 8, 5, 4, edges=False)
    [(0, 5), (1, 6), (2, 7), (3, 8)]
    >>> [b - a for a, b in axis_tiles(0, 8, 5, 4, edges=True)]
    [3, 4, 5, 5, 5, 5, 4, 3]
    """
    return [(a, b) for _, a, b in _axis_windows(start, stop, size, overlap, edges, offset)]


def _axis_windows(
    start: int, stop: int, size: int, overlap: int, edges: bool, offset: int
) -> list[tuple[int, int, int]]:
    """``(window start, begin, end)`` per tile: its full-size window and its part in the region."""
    stride = size - overlap
    if stride <= 0:
        msg = f"overlap ({overlap}) must be smaller than the tile size ({size})"
        raise OptionError(msg)
    extent = stop - start - offset
    if edges:
        first, count = start + offset - overlap // 2, max(1, math.ceil(extent / stride))
    else:
        first, count = start + offset, max(1, math.ceil((extent - overlap) / stride))
    windows = [first + k * stride for k in range(count)]
    return [
        (w, max(w, start), min(w + size, stop))
        for w in windows
        if min(w + size, stop) > max(w, start)
    ]


@dataclass(frozen=True)
class Tile:
    """One tile: where it is (at the grid's resolution, in base pixels and in mm) and its pixels.

    Attributes
    ----------
    index : (int, int)
        ``(row, column)`` of the tile in its grid.
    y, x : int
        Top-left corner, in pixels at the grid's resolution.
    height, width : int
        Size in pixels at the grid's resolution (smaller than the grid's ``size`` where
        the region's edge crops the tile).
    downsample : float
        Level-0 pixels per pixel of the grid's resolution.
    mm : float or None
        Pixel size at the grid's resolution in mm (None when the slide does not record it).
    magnification : float or None
        Magnification of the grid's resolution (None when unknown).
    overlap : dict
        Pixels shared with each neighbour, by side: ``top``, ``bottom``, ``left``,
        ``right`` (0 at the grid's edges).
    """

    index: tuple[int, int]
    y: int
    x: int
    height: int
    width: int
    downsample: float
    mm: float | None
    magnification: float | None
    overlap: dict[str, int]
    grid: TileGrid

    @property
    def position_mm(self) -> tuple[float, float] | None:
        """``(top, left)`` of the tile on the glass in mm (None when the pixel size is unknown)."""
        return None if self.mm is None else (self.y * self.mm, self.x * self.mm)

    @property
    def base(self) -> tuple[float, float, float, float]:
        """``(top, left, height, width)`` in level-0 pixels."""
        d = self.downsample
        return self.y * d, self.x * d, self.height * d, self.width * d

    @property
    def image(self) -> xr.DataArray:
        """The tile's pixels, lazy (read directly on ``.values``: no dask)."""
        return self.grid.direct_image.isel(
            y=slice(self.y, self.y + self.height), x=slice(self.x, self.x + self.width)
        )

    @property
    def values(self) -> np.ndarray:
        """The tile's pixels as numpy ``(height, width, c)``."""
        return np.asarray(self.image)


class TileGrid:
    """A grid of tiles over (a region of) a slide at one resolution: tile iteration as slicing.

    ``len(grid)`` counts the tiles it keeps (all, without a mask), ``grid[row, column]`` is a
    :class:`Tile`, and iterating yields the kept tiles row by row; :meth:`to_dataarray`
    stacks them lazily and :meth:`map` applies a function to each in parallel.

    Parameters
    ----------
    slide : Slide
        The slide.
    size : int or (int, int)
        Tile size in pixels at the grid's resolution (rows, columns).
    overlap : int or (int, int)
        Pixels shared by neighbouring tiles (rows, columns).
    edges : bool
        Shift the grid by half the overlap so the tiles' cores cover the region exactly.
    region : mapping, optional
        Part of the slide to tile, ``{"left": ..., "top": ..., "width": ..., "height": ...}``
        in ``units`` (as :meth:`Slide.region`); all of it by default.
    units : str
        Unit of ``region``, as in :meth:`Slide.region` (``base_pixels`` by default).
    level : int, optional
        The grid's resolution as a file level, as in :meth:`Slide.image`.
    magnification : float, optional
        The grid's resolution as a magnification.
    mpp : float, optional
        The grid's resolution as a pixel size in micrometres.
    offset : int or (int, int)
        Shift of the grid's origin from the region's top-left corner, in pixels (rows, columns).
    mask : xarray.DataArray, optional
        A tissue mask (:func:`wsiarray.tissue_mask`): iteration, ``len`` and ``map`` then keep
        only tiles at least ``min_tissue`` covered (``grid.tissue`` has the fractions).
    min_tissue : float
        Minimum covered fraction of a kept tile, with ``mask``.

    Attributes
    ----------
    slide : Slide
        The slide.
    image : xarray.DataArray
        The slide's image at the grid's resolution (dask).
    direct_image : xarray.DataArray
        The same image read without dask (what a :class:`Tile`'s pixels come from).
    size, overlap : (int, int)
        Tile size and overlap in pixels, ``(rows, columns)``.
    edges : bool
        Whether the grid is shifted by half the overlap.
    window : geometry.PixelWindow
        The tiled region in pixels at the grid's resolution.
    rows, columns : list of (int, int)
        ``[begin, end)`` of each row and column of tiles, in pixels.
    tissue : numpy.ndarray
        Fraction of each tile covered by the mask, ``(rows, columns)``; 1 without a mask.
    keep : numpy.ndarray
        Which tiles iteration, ``len`` and :meth:`map` visit: coverage at least
        ``min_tissue``.

    Examples
    --------
    >>> import wsiarray as wa
    >>> grid = wa.TileGrid(wa.open(wa.datasets.sample_slide()), 512, magnification=10)
    >>> grid.shape, grid[0, 0].height
    ((4, 6), 512)
    """

    def __init__(
        self,
        slide: Slide,
        size: int | tuple[int, int],
        overlap: int | tuple[int, int] = 0,
        *,
        edges: bool = False,
        region: Mapping[str, float] | None = None,
        units: str = "base_pixels",
        level: int | None = None,
        magnification: float | None = None,
        mpp: float | None = None,
        offset: int | tuple[int, int] = 0,
        mask: xr.DataArray | None = None,
        min_tissue: float = 0.5,
    ) -> None:
        resolution = {"level": level, "magnification": magnification, "mpp": mpp}
        offset = _pair(offset)
        self.slide = slide
        self.image = slide.image(**resolution)
        self.direct_image = slide.image(**resolution, dask=False)
        self.size, self.overlap, self.edges = _pair(size), _pair(overlap), edges
        self.window = self._window(region, units)
        y0, y1, x0, x1 = self.window.y0, self.window.y1, self.window.x0, self.window.x1
        row_windows = _axis_windows(y0, y1, self.size[0], self.overlap[0], edges, offset[0])
        column_windows = _axis_windows(x0, x1, self.size[1], self.overlap[1], edges, offset[1])
        if not row_windows or not column_windows:
            msg = (
                f"no tile of the grid (size {self.size}, offset {offset}) falls inside "
                f"the region rows {y0}:{y1}, columns {x0}:{x1}; use a smaller offset"
            )
            raise RegionError(msg)
        self.rows = [(a, b) for _, a, b in row_windows]
        self.columns = [(a, b) for _, a, b in column_windows]
        #: Where each row's and column's full-size window starts (before cropping).
        self._windows = ([w for w, _, _ in row_windows], [w for w, _, _ in column_windows])
        #: Fraction of each tile covered by the mask (1 everywhere without a mask).
        self.tissue = np.ones(self.shape) if mask is None else self._coverage(mask)
        #: Which tiles iteration and ``map`` visit: coverage at least ``min_tissue``.
        self.keep = self.tissue >= (min_tissue if mask is not None else 0.0)

    def _window(self, region: Mapping[str, float] | None, units: str) -> geometry.PixelWindow:
        """The tiled pixels at the grid's resolution: the region's, clipped, or the whole image."""
        height, width = self.image.shape[:2]
        whole = geometry.PixelWindow(0, height, 0, width)
        if region is None:
            return whole
        missing = {"left", "top", "width", "height"} - set(region)
        if missing:
            msg = (
                f"region={region!r} lacks {', '.join(sorted(missing))}; give "
                "{'left': ..., 'top': ..., 'width': ..., 'height': ...}"
            )
            raise OptionError(msg)
        downsample = (self.image.attrs["downsample_y"], self.image.attrs["downsample_x"])
        box = geometry.region_to_base(
            region["left"],
            region["top"],
            region["width"],
            region["height"],
            units,
            base_shape=self.slide.shape,
            mm_x=self.slide.mm_x,
            mm_y=self.slide.mm_y,
            downsample=downsample,
        )
        window = geometry.window_at(box, *downsample).clipped(height, width)
        if window.shape[0] <= 0 or window.shape[1] <= 0:
            msg = f"the region {dict(region)!r} ({units}) is empty or outside the slide"
            raise RegionError(msg)
        return window

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of tiles."""
        return len(self.rows), len(self.columns)

    def __len__(self) -> int:
        return int(self.keep.sum())

    def __getitem__(self, index: tuple[int, int]) -> Tile:
        ty, tx = index
        (y0, y1), (x0, x1) = self.rows[ty], self.columns[tx]
        attrs = self.image.attrs
        return Tile(
            index=(ty, tx),
            y=y0,
            x=x0,
            height=y1 - y0,
            width=x1 - x0,
            downsample=attrs["downsample_x"],
            mm=attrs.get("mm_x"),
            magnification=attrs.get("magnification"),
            overlap={
                "top": _shared(self.rows, ty - 1, ty),
                "bottom": _shared(self.rows, ty, ty + 1),
                "left": _shared(self.columns, tx - 1, tx),
                "right": _shared(self.columns, tx, tx + 1),
            },
            grid=self,
        )

    def __iter__(self) -> Iterator[Tile]:
        for ty, tx in zip(*np.nonzero(self.keep), strict=True):
            yield self[int(ty), int(tx)]

    def _coverage(self, mask: xr.DataArray) -> np.ndarray:
        """Mean of ``mask`` over each tile's footprint (via an integral image of the mask)."""
        values = np.asarray(mask.values, dtype=np.float64)
        integral = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
        integral[1:, 1:] = values.cumsum(0).cumsum(1)
        ratio_y = self.image.attrs["downsample_y"] / mask.attrs["downsample_y"]
        ratio_x = self.image.attrs["downsample_x"] / mask.attrs["downsample_x"]

        def bounds(spans: list[tuple[int, int]], ratio: float, size: int) -> np.ndarray:
            edges = np.array(spans, dtype=np.float64) * ratio
            low = np.clip(np.floor(edges[:, 0]), 0, size - 1).astype(int)
            return np.stack([low, np.clip(np.ceil(edges[:, 1]), low + 1, size).astype(int)], axis=1)

        rows = bounds(self.rows, ratio_y, values.shape[0])
        cols = bounds(self.columns, ratio_x, values.shape[1])
        y0, y1 = rows[:, 0][:, None], rows[:, 1][:, None]
        x0, x1 = cols[:, 0][None, :], cols[:, 1][None, :]
        total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        return total / ((y1 - y0) * (x1 - x0))

    def to_dataarray(self, ragged: Literal["pad", "drop"] = "pad") -> xr.DataArray:
        """All tiles as one lazy ``(tile_y, tile_x, y, x, c)`` array.

        Cropped edge tiles are padded to full size with the background colour
        (``ragged="pad"``) or left out (``ragged="drop"``, full tiles only).
        """
        import dask.array as da
        import xarray as xr

        padded, _starts = self._padded()
        stride = (self.size[0] - self.overlap[0], self.size[1] - self.overlap[1])
        windows = da.lib.stride_tricks.sliding_window_view(padded, self.size, axis=(0, 1))
        windows = windows[:: stride[0], :: stride[1]][: self.shape[0], : self.shape[1]]
        windows = windows.transpose(0, 1, 3, 4, 2)
        rows, cols = np.arange(self.shape[0]), np.arange(self.shape[1])
        if ragged == "drop":
            rows, cols = self._full_tiles()
            windows = windows[rows][:, cols]
        coords = self._tile_centres(rows, cols)
        coords["c"] = self.image.c.values
        coords["tissue"] = (("tile_y", "tile_x"), self.tissue[np.ix_(rows, cols)])
        return xr.DataArray(
            windows,
            dims=("tile_y", "tile_x", "y", "x", "c"),
            coords=coords,
            attrs=dict(self.image.attrs),
        )

    def map(
        self,
        function: Callable[..., Any],
        *,
        ragged: Literal["crop", "pad", "drop"] = "crop",
        **kwargs: Any,
    ) -> xr.DataArray:
        """Apply ``function`` to every tile in parallel; one dask task per chunk of tiles.

        Each task reads just the pixels of its tiles from the slide (no data moves between
        tasks or workers) and returns the results of its tiles: the same code runs on
        threads or on a ``dask.distributed`` cluster, where workers reopen the slide.

        Parameters
        ----------
        function : callable
            ``function(tile, **kwargs)`` takes a ``(y, x, c)`` numpy tile and returns a number
            or a 1-D array (the same length for every tile).
        ragged : {"crop", "pad", "drop"}
            Tiles cropped by the region's edge are passed as they are, smaller than ``size``
            (``"crop"``, the default, so that statistics see only slide pixels), padded to
            full size with the background colour (``"pad"``), or left out (``"drop"``).
        **kwargs
            Passed to ``function``.

        Returns
        -------
        xarray.DataArray
            Lazy, ``(tile_y, tile_x[, feature])``, with the tiles' centres in mm (or base
            pixels) as coordinates. Tiles a mask left out are not computed (NaN).
        """
        import dask.array as da
        import xarray as xr

        if ragged not in ("crop", "pad", "drop"):
            msg = f"ragged={ragged!r}: use 'crop', 'pad' or 'drop'"
            raise OptionError(msg)
        rows, cols = (
            self._full_tiles()
            if ragged == "drop"
            else (np.arange(self.shape[0]), np.arange(self.shape[1]))
        )
        keep = self.keep[np.ix_(rows, cols)]
        crops = self.crops
        mapper = TileMapArray(
            image=self.direct_image,
            rows=tuple(self.rows[i] for i in rows),
            cols=tuple(self.columns[i] for i in cols),
            keep=keep,
            placement=(
                ([crops[0][i] for i in rows], [crops[1][i] for i in cols])
                if ragged == "pad"
                else None
            ),
            size=self.size,
            background=self.slide.background_pixel,
            copy=any(self.overlap),
            function=function,
            kwargs=kwargs,
            shape=(len(rows), len(cols)),
            dtype=np.dtype(np.float64),
        )
        sample = mapper.sample()
        if sample.ndim > 1:
            msg = f"the function must return a number or a 1-D array, not shape {sample.shape}"
            raise OptionError(msg)
        dtype = sample.dtype
        if not keep.all() and dtype.kind not in "fc":  # skipped tiles get NaN
            dtype = np.result_type(dtype, np.float32)
        mapper = dataclasses.replace(
            mapper, shape=(len(rows), len(cols), *sample.shape), dtype=dtype
        )
        result = da.from_array(
            mapper,
            chunks=(*self._tiles_per_task(), *sample.shape),
            name=f"wsiarray-tilemap-{uuid.uuid4().hex}",
            asarray=False,
            fancy=False,
            meta=np.empty((0,) * mapper.ndim, dtype),
        )
        dims = ("tile_y", "tile_x", "feature")[: 2 + sample.ndim]
        return xr.DataArray(result, dims=dims, coords=self._tile_centres(rows, cols))

    def _tiles_per_task(self) -> tuple[int, int]:
        """Tiles per map task along each axis (:func:`wsiarray.chunks.tiles_per_task`)."""
        attrs = self.image.attrs
        read_y, read_x = self.slide.level_downsamples[attrs.get("read_level", attrs.get("level"))]
        factors = (attrs["downsample_y"] / read_y, attrs["downsample_x"] / read_x)
        strides = (self.size[0] - self.overlap[0], self.size[1] - self.overlap[1])
        return tiles_per_task(strides, factors)

    @property
    def crops(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Per row and per column of tiles: ``[begin, end)`` of the tile's own pixels inside
        its full-size window (where :meth:`to_dataarray` and ``map(ragged="pad")`` put them)."""
        return tuple(  # type: ignore[return-value]
            [(a - w, b - w) for w, (a, b) in zip(windows, spans, strict=True)]
            for windows, spans in zip(self._windows, (self.rows, self.columns), strict=True)
        )

    def _full_tiles(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices of tiles that are not cropped."""
        rows = np.array([i for i, (a, b) in enumerate(self.rows) if b - a == self.size[0]], int)
        cols = np.array([i for i, (a, b) in enumerate(self.columns) if b - a == self.size[1]], int)
        return rows, cols

    def _padded(self) -> tuple[Any, tuple[int, int]]:
        """The region's pixels (dask), padded with background so every grid window is full."""
        w = self.window
        start_y, start_x = self._windows[0][0], self._windows[1][0]
        end_y, end_x = self._windows[0][-1] + self.size[0], self._windows[1][-1] + self.size[1]
        top, bottom = max(w.y0, start_y), min(w.y1, end_y)
        left, right = max(w.x0, start_x), min(w.x1, end_x)
        data = self.image.data[top:bottom, left:right]
        widths = ((top - start_y, end_y - bottom), (left - start_x, end_x - right))
        return pad_background(data, widths, self.slide.background_pixel), (start_y, start_x)

    def _tile_centres(self, rows: np.ndarray, cols: np.ndarray) -> dict[str, Any]:
        attrs = self.image.attrs
        step_y = attrs.get("mm_y") or attrs["downsample_y"]
        step_x = attrs.get("mm_x") or attrs["downsample_x"]
        centre_y = np.array([(a + b) / 2 for a, b in self.rows])[rows] * step_y
        centre_x = np.array([(a + b) / 2 for a, b in self.columns])[cols] * step_x
        units = "mm" if attrs.get("mm_x") else "base_pixels"
        return {
            "tile_y": ("tile_y", centre_y, {"units": units, "long_name": "tile centre from top"}),
            "tile_x": ("tile_x", centre_x, {"units": units, "long_name": "tile centre from left"}),
        }


def _shared(spans: list[tuple[int, int]], left: int, right: int) -> int:
    """Pixels shared by neighbouring spans ``left`` and ``right`` (0 past either end)."""
    if left < 0 or right >= len(spans):
        return 0
    return max(0, spans[left][1] - spans[right][0])


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
