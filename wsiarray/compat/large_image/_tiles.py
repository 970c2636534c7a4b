"""large_image's tile dicts: which grid positions an iteration visits, each tile's box and
keys, and :class:`LazyTileDict`, whose pixels are read on first access.

Mirrors ``TileIterator._tileIterator`` (``large_image/tilesource/tileiterator.py``) and
``LazyTileDict`` (``large_image/tilesource/tiledict.py``). Everything but
:class:`LazyTileDict`'s loading is pure; it reads through the source's public
``read_level_pixels``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from wsiarray.compat.large_image._encode import encode, resize
from wsiarray.compat.large_image._plans import GridAxis, RegionPlan, TileGridPlan
from wsiarray.geometry import Resolution

if TYPE_CHECKING:
    import numpy as np

    from wsiarray.compat.large_image._source import TileSource


def tile_positions(grid: TileGridPlan, tile_position: Any) -> Iterator[tuple[int, int]]:
    """Grid positions ``(x, y)`` to visit: all, row-major, or the one ``tile_position`` names
    (an index into the iteration, ``{"position"}``, ``{"region_x", "region_y"}`` or
    ``{"level_x", "level_y"}``); none when it is out of range (``_tileIterator``)."""
    columns, x0, y0 = grid.columns, grid.x.start, grid.y.start
    if tile_position is None:
        for y in range(y0, grid.y.stop):
            for x in range(x0, grid.x.stop):
                yield x, y
        return
    position = tile_position
    if isinstance(position, Mapping):
        if position.get("position") is not None:
            position = position["position"]
        elif "region_x" in position and "region_y" in position:
            position = position["region_x"] + position["region_y"] * columns
        elif "level_x" in position and "level_y" in position:
            position = (position["level_x"] - x0) + (position["level_y"] - y0) * columns
    if 0 <= position < columns * grid.rows:
        yield x0 + int(position % columns), y0 + int(position / columns)


def tile_span(axis: GridAxis, index: int, start: int, size: int) -> tuple[int, int]:
    """Start and length of tile ``index`` along ``axis``, cropped to the region's
    ``[start, start + size)`` (``_tileIterator``: ``posX = x * size - overlap // 2 +
    offset_x``, then the crop)."""
    position = int(index * axis.stride - axis.overlap // 2 + axis.offset - start)
    length = axis.stride + axis.overlap
    low, high = max(0, -position), int(min(length, size - position))
    return start + position + low, high - low


def tile_box(region: RegionPlan, grid: TileGridPlan, x: int, y: int) -> tuple[int, int, int, int]:
    """``(left, top, width, height)`` of tile ``(x, y)`` in read-level pixels."""
    left, width = tile_span(grid.x, x, region.left, region.width)
    top, height = tile_span(grid.y, y, region.top, region.height)
    return left, top, width, height


def overlap_sides(axis: GridAxis, index: int, start: int, length: int) -> tuple[int, int]:
    """How much the tile at ``[start, start + length)`` overlaps its neighbours before and
    after it along ``axis``; 0 at the iteration's ends when the overlap has a reach
    (``_tileIterator``'s ``overlap``; the first tile's far side is ``reach - offset``)."""
    before = max(0, index * axis.stride + axis.offset - start)
    if index != axis.start or not axis.reach:
        after = max(0, length - axis.stride - before)
    else:
        after = min(length, axis.reach - axis.offset)
    if axis.reach:
        before = 0 if index == axis.start else before
        after = 0 if index + 1 == axis.stop else after
    return before, after


def tile_values(
    region: RegionPlan,
    grid: TileGridPlan,
    x: int,
    y: int,
    mag: Mapping[str, Any],
    *,
    resampled: bool = False,
) -> dict[str, Any]:
    """The keys of tile ``(x, y)``, ``mag`` being the read level's magnification dict
    (``_tileIterator``'s ``LazyTileDict`` values and ``gx``...), described at the output
    scale when ``resampled``."""
    left, top, width, height = tile_box(region, grid, x, y)
    overlap_left, overlap_right = overlap_sides(grid.x, x, left, width)
    overlap_top, overlap_bottom = overlap_sides(grid.y, y, top, height)
    x0, y0, columns, rows = grid.x.start, grid.y.start, grid.columns, grid.rows
    scale = mag.get("scale", 1.0) or 1.0
    values = {
        "x": left,
        "y": top,
        "width": width,
        "height": height,
        "level": region.level,
        "level_x": x,
        "level_y": y,
        "magnification": mag["magnification"],
        "mm_x": mag["mm_x"],
        "mm_y": mag["mm_y"],
        "tile_position": {
            "level_x": x,
            "level_y": y,
            "region_x": x - x0,
            "region_y": y - y0,
            "position": (x - x0) + (y - y0) * columns,
        },
        "iterator_range": {
            "level_x_min": x0,
            "level_y_min": y0,
            "level_x_max": grid.x.stop,
            "level_y_max": grid.y.stop,
            "region_x_max": columns,
            "region_y_max": rows,
            "position": columns * rows,
        },
        "tile_overlap": {
            "left": overlap_left,
            "top": overlap_top,
            "right": overlap_right,
            "bottom": overlap_bottom,
        },
        "gx": left * scale,
        "gy": top * scale,
        "gwidth": width * scale,
        "gheight": height * scale,
    }
    return _at_output_scale(values, region.requested_scale) if resampled else values


def _at_output_scale(values: dict[str, Any], requested: float) -> dict[str, Any]:
    """A resampled tile's keys (large_image's ``setFormat``): ``scaled``, the read level's
    values as ``tile_*``, output ``width``/``height``, magnification and pixel size at the
    output scale (each known one on its own, as :meth:`Resolution.at` scales them), and
    ``x``/``y`` as floats (a large_image quirk: still read-level pixels)."""
    values["scaled"] = 1.0 / requested
    values["tile_x"], values["tile_y"] = values["x"], values["y"]
    values["tile_width"], values["tile_height"] = values["width"], values["height"]
    if values.get("magnification"):
        values["tile_magnification"] = values["magnification"]
    values["tile_mm_x"], values["tile_mm_y"] = values.get("mm_x"), values.get("mm_y")
    values["x"], values["y"] = float(values["tile_x"]), float(values["tile_y"])
    values["width"] = max(1, int(values["tile_width"] / requested))
    values["height"] = max(1, int(values["tile_height"] / requested))
    at = Resolution(values["tile_mm_x"], values["tile_mm_y"], values.get("tile_magnification")).at(
        requested, requested
    )
    if at.magnification:
        values["magnification"] = at.magnification
    if at.mm_x:
        values["mm_x"] = at.mm_x
    if at.mm_y:
        values["mm_y"] = at.mm_y
    return values


def finish_tile(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    fmt: str,
    requested: float | None,
    resample: Any,
) -> tuple[Any, str]:
    """A tile's read-level pixels (of ``box``) as large_image returns them: resized to the
    output scale unless ``resample`` is False, then in format ``fmt``."""
    if resample is not False and requested:
        out_w = max(1, int(box[2] / requested))
        out_h = max(1, int(box[3] / requested))
        image = resize(image, out_w, out_h, upsample=False, resample=resample)
    return encode(image, (fmt,), {})


class LazyTileDict(dict[str, Any]):
    """A tile's dict whose pixels (``tile``) are read on first access, as large_image's.

    Parameters
    ----------
    source : TileSource
        Where the pixels come from (its ``read_level_pixels``).
    level : int
        The virtual level read.
    fmt : str
        The tile's format (``TILE_FORMAT_*``).
    values : mapping
        The tile's keys (:func:`tile_values`).
    box : (int, int, int, int), optional
        ``(x, y, width, height)`` to read, in pixels of ``level``: by default the values'
        own ``x``, ``y``, ``width`` and ``height`` (those of a tile not resampled).
    requested : float, optional
        Read-level pixels per output pixel.
    resample : bool or PIL filter
        Not False: the pixels are resized to the output scale with this filter.
    loader : callable, optional
        ``loader()`` → ``(tile, format)`` already decoded (by the iterator's
        :class:`~._prefetch.TilePrefetcher`), or None: then the tile reads them itself.
        Not pickled.
    """

    def __init__(
        self,
        source: TileSource,
        level: int,
        fmt: str,
        values: Mapping[str, Any],
        box: tuple[int, int, int, int] | None = None,
        requested: float | None = None,
        resample: Any = False,
        loader: Callable[[], tuple[Any, str] | None] | None = None,
    ) -> None:
        super().__init__(values)
        self._source, self._level, self._format = source, level, fmt
        self._box = box or (values["x"], values["y"], values["width"], values["height"])
        self._requested, self._resample = requested, resample
        self._loader = loader
        self._loaded = False
        dict.setdefault(self, "tile", None)
        dict.setdefault(self, "format", None)

    def _load(self) -> None:
        loaded = self._loader() if self._loader is not None else None
        self._loader = None  # once: it holds the iterator's prefetcher
        if loaded is None:
            x, y, width, height = self._box
            image = self._source.read_level_pixels(self._level, x, y, x + width, y + height)
            loaded = finish_tile(image, self._box, self._format, self._requested, self._resample)
        dict.__setitem__(self, "tile", loaded[0])
        dict.__setitem__(self, "format", loaded[1])
        self._loaded = True

    def __getitem__(self, key: str) -> Any:
        if key in ("tile", "format") and not self._loaded:
            self._load()
        return super().__getitem__(key)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as its source, keys (with the pixels once read) and read box."""
        state = (
            dict(self.items())
            if self._loaded
            else {k: v for k, v in dict.items(self) if k not in ("tile", "format")}
        )
        args = (self._source, self._level, self._format, state, self._box)
        return (LazyTileDict, (*args, self._requested, self._resample))
