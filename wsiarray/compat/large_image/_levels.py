"""large_image's level model: a virtual power-of-two pyramid, and scales as (fractional) levels.

Pure: a slide's level sizes and native magnification in, numbers out. Level 0 is the
coarsest (the whole image in about one tile), ``levels - 1`` full resolution; each virtual
level reads the file level large_image's OpenSlide source would read
(``large_image_source_openslide``: ``__init__``, ``_getTileSize``, ``getPreferredLevel``).
Scales follow ``TileSource.getMagnificationForLevel`` and ``getLevelForMagnification``
(``large_image/tilesource/base.py``).

``native`` below is what ``TileSource.getNativeMagnification()`` returns at the time of the
call (``{magnification, mm_x, mm_y}``, None where unknown), so a source whose method is
patched, as large_image users do for slides without resolution, plans with the patched values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wsiarray.errors import ScaleError
from wsiarray.geometry import Resolution, check_number

#: large_image's tile size when the file's is missing, under 4 px or too elongated, and the
#: aspect ratio from which it is too elongated (the OpenSlide source's ``_getTileSize``).
DEFAULT_TILE = 256
MAX_TILE_ASPECT = 4

#: A magnification dict as large_image's methods return it (``magnification``, ``mm_x``,
#: ``mm_y``, and ``scale`` and ``level`` at a level).
Magnification = dict[str, float | None]


@dataclass(frozen=True, slots=True)
class LevelRead:
    """Where a virtual level's pixels come from (an entry of the OpenSlide source's
    ``_svslevels``): a file level and how many of its pixels make one of the virtual level's
    (``scale`` 1: the virtual level holds real data)."""

    file_level: int
    scale: int


@dataclass(frozen=True, slots=True)
class Pyramid:
    """A slide as large_image's OpenSlide source sees it: full-resolution size, the tile
    size it reports, the number of virtual levels and, for each, the file level it reads."""

    size_x: int
    size_y: int
    tile_width: int
    tile_height: int
    levels: int
    reads: tuple[LevelRead, ...]

    @classmethod
    def of(cls, level_shapes: Sequence[tuple[int, int]], tile: tuple[int, int]) -> Pyramid:
        """The pyramid of a file with these ``(height, width)`` levels and level-0 tile
        ``(height, width)``.

        Mirrors the OpenSlide source's ``_getTileSize`` (256 px when the tile is under 4 px
        or 4 times longer than wide; never larger than the image) and its level count,
        ``ceil(max(log2(sizeX / tileWidth), log2(sizeY / tileHeight))) + 1`` (at least 1
        here, where large_image refuses the file).
        """
        size_y, size_x = level_shapes[0]
        tile_h, tile_w = tile
        if min(tile_w, tile_h) < 4 or max(tile_w, tile_h) / min(tile_w, tile_h) >= MAX_TILE_ASPECT:
            tile_w = tile_h = DEFAULT_TILE
        tile_w, tile_h = min(tile_w, size_x), min(tile_h, size_y)
        levels = max(
            1,
            math.ceil(max(math.log2(size_x / tile_w), math.log2(size_y / tile_h))) + 1,
        )
        return cls(size_x, size_y, tile_w, tile_h, levels, _level_reads(level_shapes, levels))

    def preferred_level(self, level: int) -> int:
        """The level holding real data at no lower resolution than ``level`` (the OpenSlide
        source's ``getPreferredLevel``: walk up while the level's ``scale`` exceeds 1)."""
        level = max(0, min(level, self.levels - 1))
        scale: float = self.reads[level].scale
        while scale > 1:
            level += 1
            scale /= 2
        return level


def _level_reads(level_shapes: Sequence[tuple[int, int]], levels: int) -> tuple[LevelRead, ...]:
    """For each virtual level, the coarsest usable file level with at least as many pixels
    (less one), and the scale between them (the OpenSlide source's ``_svslevels`` loop).
    Usable file levels are those near a power of two from level 0 (``_getAvailableLevels``)."""
    sizes = [(w, h) for h, w in level_shapes]
    (base_w, base_h) = sizes[0]
    usable = [
        i
        for i, (w, h) in enumerate(sizes)
        if near_power_of_two(base_w, w) and near_power_of_two(base_h, h)
    ]
    reads = []
    for z in range(levels):
        power = 2 ** (levels - 1 - z)
        level_w, level_h = max(1, base_w / power), max(1, base_h / power)
        best, scale = usable[0], 1
        for i in usable:
            w, h = sizes[i]
            if w < level_w - 1 or h < level_h - 1:
                break
            best, scale = i, round(w / level_w)
        reads.append(LevelRead(best, scale))
    return tuple(reads)


def near_power_of_two(a: float, b: float, tolerance: float = 0.02) -> bool:
    """Whether ``a / b`` is within ``tolerance`` (in log2) of a power of two
    (large_image's ``nearPowerOfTwo``)."""
    if a * b <= 0:
        return False
    ratio = math.log2(a / b)
    return abs(ratio - round(ratio)) < tolerance


def magnification_for_level(
    native: Mapping[str, float | None], levels: int, level: float | None = None
) -> Magnification:
    """``native`` scaled to a (possibly fractional) virtual level, plus ``scale`` and
    ``level`` (``TileSource.getMagnificationForLevel``; None is full resolution).

    Magnification is divided by the scale through :meth:`Resolution.at`; the pixel size is
    multiplied only when both ``mm_x`` and ``mm_y`` are known, as large_image does
    (``Resolution.at`` scales each on its own, so only its values are taken, under
    large_image's condition).
    """
    mag: Magnification = dict(native)
    top = levels - 1
    if level is not None and level != top:
        scale = 2.0 ** (top - level)
        mag["scale"] = scale
        scaled = Resolution(mag["mm_x"], mag["mm_y"], mag["magnification"]).at(scale, scale)
        if mag["magnification"]:
            mag["magnification"] = scaled.magnification
        if mag["mm_x"] and mag["mm_y"]:
            mag["mm_x"], mag["mm_y"] = scaled.mm_x, scaled.mm_y
    mag["level"] = level if level is not None else top
    if mag["level"] == top:
        mag["scale"] = 1.0
    return mag


def level_for_scale(
    native: Mapping[str, float | None],
    levels: int,
    scale: Mapping[str, Any] | None,
    rounding: str | bool | None = "round",
) -> float | None:
    """The virtual level of a scale dict's ``magnification`` and/or ``mm_x``, ``mm_y``
    (``TileSource.getLevelForMagnification``; other keys are ignored).

    Each given value known for the slide gives ``log2`` of its ratio to the native one,
    rounded to 4 decimals; the level is ``levels - 1`` plus their mean. ``exact``: None
    unless all ratios are the same integer and the level exists. ``rounding``: ``"ceil"``
    (None above full resolution), any other true value ``round`` (there is no floor),
    False fractional and clamped, None fractional and not clamped.

    Raises
    ------
    ScaleError
        A ``magnification``, ``mm_x`` or ``mm_y`` that is not a finite positive number (a
        ValueError). large_image takes 0 for "not given" (full resolution) and fails on the
        others with ZeroDivisionError, "math domain error" or a NaN conversion.
    """
    scale = scale or {}
    magnification, mm_x, mm_y = scale.get("magnification"), scale.get("mm_x"), scale.get("mm_y")
    for key, value in (("magnification", magnification), ("mm_x", mm_x), ("mm_y", mm_y)):
        if value is not None:
            check_number(value, f"scale {key}", error=ScaleError, positive=True)
    exact = scale.get("exact", False)
    top = levels - 1
    ratios = []
    if magnification and native["magnification"]:
        ratios.append(float(magnification) / native["magnification"])
    if mm_x and native["mm_x"]:
        ratios.append(native["mm_x"] / mm_x)
    if mm_y and native["mm_y"]:
        ratios.append(native["mm_y"] / mm_y)
    logs = [round(math.log2(r), 4) for r in ratios]
    if not logs:
        return top
    if exact and any(int(r) != r or r != logs[0] for r in logs):
        return None
    level: float = top + round(sum(logs) / len(logs), 4)
    if rounding:
        level = int(math.ceil(level) if rounding == "ceil" else round(level))
    if (exact and (level > top or level < 0)) or (rounding == "ceil" and level > top):
        return None
    if rounding is not None:
        level = max(0, min(top, level))
    return level


def magnification_for_scale(
    native: Mapping[str, float | None], levels: int, scale: Mapping[str, Any] | None
) -> Magnification:
    """The magnification dict of a ``scale`` dict at its fractional, unclamped level, as
    ``convertRegionScale`` and ``_tileIteratorInfo`` compute it (``rounding=None``)."""
    level = level_for_scale(native, levels, scale, rounding=None)
    return magnification_for_level(native, levels, level)
