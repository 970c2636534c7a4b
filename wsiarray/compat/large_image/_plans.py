"""Where large_image reads a region and how it cuts it into tiles: pure planners.

:func:`plan_region` and :func:`plan_tile_grid` are the two halves of large_image's
``TileIterator._tileIteratorInfo`` (``large_image/tilesource/tileiterator.py``), which both
``getRegion`` and ``tileIterator`` start from; :func:`fit_size` is
``utilities._calculateWidthHeight``. No I/O: numbers in, frozen plans out.

Why the tile grid is planned here and not with :class:`wsiarray.tiling.TileGrid`
---------------------------------------------------------------------------------
wsiarray's native grid is a different, simpler grid, and no setting of it reproduces
large_image's (the compat tests compare every key of every tile dict with large_image's):

- *Anchor.* Native tiles start at the region's top-left corner (plus an offset) and count
  from 0. large_image's grid is anchored at the read level's origin, so ``level_x`` and
  ``level_y`` are global indices and the first and last tiles are cut by the region;
  ``tile_offset`` moves the anchor, ``{"auto": True}`` moves it to the region's corner
  only when the region holds a whole tile, and an offset past the region's corner is
  wrapped modulo the stride.
- *Sizes.* Native tiles are ``size`` pixels stepping by ``size - overlap``. large_image
  steps by ``tile_size - overlap`` too, but positions tiles at ``x * stride - overlap // 2
  + offset_x`` with ``offset_x = overlap // 2`` unless ``edges``, and counts columns as
  ``ceil((right - offset - overlap) / stride)`` only without ``edges`` (``range_x``).
- *Overlap per side.* Native ``overlap`` is what neighbours share. large_image's
  ``tile_overlap`` dict has its own rule (the first column's right side is ``range_x -
  offset_x``, outer sides are 0 only when ``range_x`` is set), reproduced in ``_tiles``.
- *Resolution.* A native grid lives on ``Slide.image`` at the exact resolution asked for.
  large_image reads a virtual power-of-two level (:mod:`._levels`), resizes each tile on
  its own, and, when it resamples, plans tiles at the read level with tile size and
  overlap multiplied by ``requestedScale`` (rounded up).
- *Selection.* ``tile_position`` (an index, ``position``, ``region_x/y`` or
  ``level_x/y``) picks one tile of the full iteration; the native grid indexes by
  ``(row, column)``.

So the two share only the idea of a stride; reusing ``TileGrid`` would mean overriding all
of it. This module is the one place large_image's grid rules live.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wsiarray.compat.large_image._levels import Pyramid, level_for_scale, magnification_for_level
from wsiarray.compat.large_image._regions import region_bounds
from wsiarray.errors import OptionError
from wsiarray.geometry import check_number


@dataclass(frozen=True, slots=True)
class RegionPlan:
    """A region to read at a virtual level and the output size it becomes (the ``region``,
    ``level``, ``output`` and ``requestedScale`` of ``_tileIteratorInfo``).

    Attributes
    ----------
    left, top, right, bottom : int
        The region in pixels of ``level`` (right and bottom exclusive).
    level : int
        The virtual level read (one holding real data, unless no rescaling is needed).
    output_width, output_height : int
        The size of the output image.
    requested_scale : float
        Read-level pixels per output pixel.
    """

    left: int
    top: int
    right: int
    bottom: int
    level: int
    output_width: int
    output_height: int
    requested_scale: float

    @property
    def width(self) -> int:
        """Width of the region in read-level pixels."""
        return self.right - self.left

    @property
    def height(self) -> int:
        """Height of the region in read-level pixels."""
        return self.bottom - self.top


@dataclass(frozen=True, slots=True)
class GridAxis:
    """large_image's tile grid along one axis, in read-level pixels (a ``tile_size``,
    ``tile_overlap`` and ``xmin``/``xmax`` share of ``_tileIteratorInfo`` per axis).

    Attributes
    ----------
    stride : int
        Distance between tiles: large_image's ``tile_size`` after it subtracts the overlap.
    overlap : int
        Overlap added to each tile (``tile_overlap`` ``x``; scaled when resampling).
    offset : int
        Grid origin plus half the overlap (without ``edges``): ``tile_overlap`` ``offset_x``.
    reach : int
        How far the last tile may end short of the region: ``tile_overlap`` ``range_x``
        (the overlap; 0 with ``edges``).
    start, stop : int
        Grid indices ``[start, stop)`` the iteration visits (``xmin``, ``xmax``).
    """

    stride: int
    overlap: int
    offset: int
    reach: int
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class TileGridPlan:
    """large_image's tile grid over a :class:`RegionPlan`: columns along ``x``, rows along
    ``y``."""

    x: GridAxis
    y: GridAxis

    @property
    def columns(self) -> int:
        """Tiles per row of the iteration."""
        return self.x.stop - self.x.start

    @property
    def rows(self) -> int:
        """Rows of tiles in the iteration."""
        return self.y.stop - self.y.start


def fit_size(
    width: float | None, height: float | None, region_w: float, region_h: float
) -> tuple[int, int, float]:
    """Output size within ``width`` x ``height`` keeping the region's aspect, truncated, and
    region pixels per output pixel (``utilities._calculateWidthHeight``: one side missing
    is 16 times the other; both missing is the region's size)."""
    if region_w == 0 or region_h == 0:
        return 0, 0, 1.0
    if height and not width:
        width = height * 16
    if width and not height:
        height = width * 16
    if width is None or height is None:
        return int(region_w), int(region_h), 1.0
    scaled_w = max(1, int(region_w * height / region_h))
    scaled_h = max(1, int(region_h * width / region_w))
    if scaled_w == width or (width * region_h > height * region_w and scaled_h != height):
        return int(scaled_w), int(height), region_h / height
    return int(width), int(scaled_h), region_w / width


def plan_region(
    pyramid: Pyramid, native: Mapping[str, Any], options: Mapping[str, Any]
) -> RegionPlan | None:
    """Where to read a region and its output size, for ``getRegion`` or ``tileIterator``
    keyword arguments (``region``, ``scale``, ``output``); None where large_image returns
    nothing (the first half of ``_tileIteratorInfo``).

    ``output`` ``maxWidth``/``maxHeight`` size the output when given (``scale`` is then
    ignored for sizing); otherwise ``scale`` does, at its fractional level. The read level
    is ``getPreferredLevel`` of the coarsest level at least as fine as the output, and the
    bounds are truncated to it (``right = max(int(right / f), left + 1)``). An ``exact``
    scale that matches no level gives None.

    Raises
    ------
    OptionError
        ``output`` ``maxWidth`` or ``maxHeight`` is not a finite positive number (a
        ValueError, as large_image raises for a negative, NaN or infinite one; 0 was a
        ZeroDivisionError here and a TypeError in large_image).
    RegionError, ScaleError
        A region edge or a scale value that is not a finite number (or not positive).
    """
    scale = options.get("scale") or {}
    output = options.get("output") or {}
    max_w, max_h = output.get("maxWidth"), output.get("maxHeight")
    for key, value in (("maxWidth", max_w), ("maxHeight", max_h)):
        if value is not None:
            check_number(value, f"output {key}", positive=True)
    mag = mag_level = None
    if max_w is None and max_h is None:
        mag_level = level_for_scale(native, pyramid.levels, scale, rounding=None)
        if mag_level is None and scale.get("exact"):
            return None
        mag = magnification_for_level(native, pyramid.levels, mag_level)
    left, top, right, bottom = region_bounds(pyramid, native, options.get("region") or {}, mag)
    width, height = right - left, bottom - top
    requested = None
    if max_w is None and max_h is None and mag:
        if mag.get("scale") in (1.0, None):
            max_w, max_h, requested = width, height, 1.0
        else:
            max_w, max_h, requested = width / mag["scale"], height / mag["scale"], mag["scale"]
    out_w, out_h, computed = fit_size(max_w, max_h, width, height)
    requested = computed if requested is None else requested
    if width < 0 or height < 0 or out_w == 0 or out_h == 0:
        return None
    level = pyramid.levels - 1
    if out_w != width or out_h != height:
        wanted = level + math.ceil(round(math.log2(min(out_w / width, out_h / height)), 4))
        new_level = pyramid.preferred_level(max(0, wanted))
        if new_level < level:
            factor = 2 ** (level - new_level)
            left, top = int(left / factor), int(top / factor)
            right, bottom = max(int(right / factor), left + 1), max(int(bottom / factor), top + 1)
            level, requested = new_level, requested / factor
    if mag_level is not None and mag_level != level and scale.get("exact"):
        return None
    return RegionPlan(left, top, right, bottom, level, out_w, out_h, requested)


def plan_tile_grid(
    region: RegionPlan,
    tile_width: int,
    tile_height: int,
    options: Mapping[str, Any],
    *,
    resampled: bool,
) -> TileGridPlan:
    """The tile grid of ``tileIterator`` keyword arguments (``tile_size``, ``tile_overlap``,
    ``tile_offset``) over ``region`` (the second half of ``_tileIteratorInfo``).

    ``tile_size`` defaults to the source's ``tile_width`` x ``tile_height`` (one side given:
    square) and includes the overlap; ``resampled`` tiles are planned at the read level,
    their stride and overlap multiplied by the requested scale and rounded up. An offset
    ``{"auto": True}`` aligns the grid to the region when the region holds a whole tile.

    Raises
    ------
    OptionError
        The overlap is at least the tile size (large_image's message, and its ValueError),
        or a size, overlap or offset is not a finite number (an OverflowError or bare
        ValueError from ``int`` in large_image).
    """
    overlap = options.get("tile_overlap") or {}
    overlap_x, overlap_y = (
        int(check_number(overlap.get(key, 0) or 0, f"tile_overlap {key}")) for key in "xy"
    )
    if "tile_size" in options:
        size = options["tile_size"]
        # one side given: square; the message names the key the value came from
        keys = [(a if a in size else b) for a, b in (("width", "height"), ("height", "width"))]
        tile_width, tile_height = (
            int(check_number(size[key], f"tile_size {key}")) if key in size else default
            for key, default in zip(keys, (tile_width, tile_height), strict=True)
        )
    if tile_width - overlap_x <= 0 or tile_height - overlap_y <= 0:
        msg = (
            f"Invalid tile_size or tile_overlap. tile_size {tile_width} x {tile_height} must be "
            f"larger than tile_overlap x={overlap_x}, y={overlap_y}"
        )
        raise OptionError(msg)
    scale = region.requested_scale if resampled else 1
    stride_x = max(1, math.ceil((tile_width - overlap_x) * scale))
    stride_y = max(1, math.ceil((tile_height - overlap_y) * scale))
    offset = options.get("tile_offset") or {}
    origin_x, origin_y = offset.get("left", 0), offset.get("top", 0)
    for key, value in (("left", origin_x), ("top", origin_y)):
        check_number(value, f"tile_offset {key}")  # kept as given: ints stay ints
    if offset.get("auto") and region.width >= stride_x and region.height >= stride_y:
        origin_x, origin_y = region.left, region.top
    edges = overlap.get("edges", False)
    return TileGridPlan(
        _grid_axis(region.left, region.right, stride_x, overlap_x, scale, edges, origin_x),
        _grid_axis(region.top, region.bottom, stride_y, overlap_y, scale, edges, origin_y),
    )


def _grid_axis(
    start: int, stop: int, stride: int, overlap: int, scale: float, edges: Any, origin: int
) -> GridAxis:
    """One axis of :func:`plan_tile_grid`: offset and reach from the unscaled overlap, an
    origin past the region's start moved back to the start's grid line, the indices of the
    tiles that reach into ``[start, stop)``."""
    offset, reach = (0, 0) if edges else (overlap // 2, overlap)
    if origin > start:
        origin = start - start % stride
    first = int((start - origin) / stride)
    last = max(math.ceil((float(stop - origin) - reach) / stride), first + 1)
    return GridAxis(stride, math.ceil(overlap * scale), offset + origin, reach, first, last)
