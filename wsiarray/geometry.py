"""Pure geometry: units, regions, scales. No IO; every unit conversion of wsiarray lives here.

Rounding policy: a region's pixel bounds are ``floor`` of its start and ``ceil`` of its
stop, so the pixels returned always cover the asked area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from wsiarray.errors import MissingResolutionError, OptionError, RegionError, UnitError

__all__ = [
    "UNITS",
    "Box",
    "PixelWindow",
    "Unit",
    "normalise_unit",
    "region_to_base",
    "target_downsample",
    "window_at",
]

Unit = Literal["base_pixels", "level_pixels", "mm", "um", "fraction"]

#: Accepted spellings of each unit.
UNITS: dict[str, Unit] = {
    "base_pixels": "base_pixels",
    "base_pixel": "base_pixels",
    "base": "base_pixels",
    "px": "base_pixels",
    "level_pixels": "level_pixels",
    "level_pixel": "level_pixels",
    "pixels": "level_pixels",
    "mag_pixels": "level_pixels",
    "mm": "mm",
    "um": "um",
    "µm": "um",
    "μm": "um",
    "micron": "um",
    "microns": "um",
    "micrometer": "um",
    "micrometers": "um",
    "fraction": "fraction",
}

_MM_PER = {"mm": 1.0, "um": 1e-3}


def normalise_unit(name: str) -> Unit:
    """Return the canonical name of a unit, or raise :class:`UnitError` listing the valid ones.

    Examples
    --------
    >>> normalise_unit("µm")
    'um'
    """
    try:
        return UNITS[name.strip().lower() if isinstance(name, str) else name]
    except (KeyError, AttributeError):
        valid = ", ".join(sorted(set(UNITS.values())))
        msg = f"unknown unit {name!r}; use one of {valid} (or an alias such as 'base', 'µm', 'pixels')"
        raise UnitError(msg) from None


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle in level-0 (base) pixel coordinates; may extend past the slide."""

    left: float
    top: float
    right: float
    bottom: float


@dataclass(frozen=True, slots=True)
class PixelWindow:
    """Integer pixel bounds at some scale: rows ``y0:y1``, columns ``x0:x1``."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.y1 - self.y0, self.x1 - self.x0

    def clipped(self, height: int, width: int) -> PixelWindow:
        """The part inside ``[0, height) x [0, width)`` (possibly empty)."""
        y0, x0 = min(max(self.y0, 0), height), min(max(self.x0, 0), width)
        return PixelWindow(y0, max(y0, min(self.y1, height)), x0, max(x0, min(self.x1, width)))


def target_downsample(
    *,
    level_downsample: float | None = None,
    magnification: float | None = None,
    mm: float | None = None,
    downsample: float | None = None,
    native_magnification: float | None,
    mm_x: float | None,
) -> float:
    """Downsample relative to level 0 for a scale given one way or another.

    At most one of ``level_downsample`` (a file level's), ``magnification`` (objective
    power, x), ``mm`` (pixel size in millimetres) and ``downsample`` (level-0 pixels per
    output pixel) may be given; none means full resolution (1.0).
    """
    given = [v is not None for v in (level_downsample, magnification, mm, downsample)]
    if sum(given) > 1:
        msg = "give at most one of level=, magnification=, mm= and downsample="
        raise OptionError(msg)
    if downsample is not None:
        _check_scale(downsample, "downsample", 1.0, "")
        return float(downsample)
    if level_downsample is not None:
        return float(level_downsample)
    if magnification is not None:
        _check_scale(magnification, "magnification", native_magnification, "level= or mm=")
        return native_magnification / magnification  # type: ignore[operator]
    if mm is not None:
        _check_scale(mm, "mm", mm_x, "level= or magnification=")
        return mm / mm_x  # type: ignore[operator]
    return 1.0


def _check_scale(value: float, name: str, known: float | None, alternatives: str) -> None:
    if value <= 0:
        msg = f"{name} must be positive, got {value!r}"
        raise OptionError(msg)
    if known is None:
        what = "magnification" if name == "magnification" else "pixel size"
        msg = f"the slide's {what} is unknown, so {name}= cannot be used; use {alternatives}"
        raise MissingResolutionError(msg)


def region_to_base(
    left: float,
    top: float,
    width: float,
    height: float,
    units: str,
    *,
    base_shape: tuple[int, int],
    mm_x: float | None,
    mm_y: float | None,
    downsample: float | tuple[float, float],
) -> Box:
    """Convert a region given in ``units`` to level-0 pixel coordinates.

    ``level_pixels`` are pixels at the requested scale (``downsample`` base pixels each, or
    ``(downsample_y, downsample_x)`` for a file level whose axes differ slightly);
    ``fraction`` is a fraction of the slide's width and height.

    Raises
    ------
    UnitError
        Unknown unit.
    MissingResolutionError
        A physical unit on a slide whose pixel size is unknown.
    RegionError
        Negative width or height.
    """
    if width < 0 or height < 0:
        msg = f"width and height must not be negative (got {width!r} x {height!r})"
        raise RegionError(msg)
    unit = normalise_unit(units)
    if unit == "base_pixels":
        sx = sy = 1.0
    elif unit == "level_pixels":
        sy, sx = downsample if isinstance(downsample, tuple) else (downsample, downsample)
    elif unit == "fraction":
        sy, sx = float(base_shape[0]), float(base_shape[1])
    else:
        if mm_x is None or mm_y is None:
            msg = f"the slide's pixel size is unknown, so a region in {unit} cannot be placed; use pixels"
            raise MissingResolutionError(msg)
        sx, sy = _MM_PER[unit] / mm_x, _MM_PER[unit] / mm_y
    return Box(left * sx, top * sy, (left + width) * sx, (top + height) * sy)


def window_at(box: Box, downsample_y: float, downsample_x: float) -> PixelWindow:
    """Pixel window, at a scale of the given downsamples, that covers ``box`` (floor/ceil).

    Examples
    --------
    >>> window_at(Box(10, 10, 30, 21), 4.0, 4.0)
    PixelWindow(y0=2, y1=6, x0=2, x1=8)
    """
    eps = 1e-9  # 0.1 mm / 0.0001 mm is 999.9999999 in floats: do not grow the window for that
    return PixelWindow(
        math.floor(box.top / downsample_y + eps),
        math.ceil(box.bottom / downsample_y - eps),
        math.floor(box.left / downsample_x + eps),
        math.ceil(box.right / downsample_x - eps),
    )
