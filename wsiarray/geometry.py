"""Pure geometry: region units, pixel windows, scales and levels. No IO.

Rounding policy: a region's pixel bounds are ``floor`` of its start and ``ceil`` of its
stop, so the pixels returned always cover the asked area. Lengths convert through
:mod:`wsiarray.units`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from wsiarray.errors import (
    MissingResolutionError,
    OptionError,
    PixelBudgetError,
    RegionError,
    ScaleError,
    UnitError,
    WsiArrayError,
)
from wsiarray.units import LENGTH_UNITS, from_mm, length_unit, to_mm

__all__ = [
    "LEVEL_MATCH",
    "MAX_LAZY_PIXELS",
    "MAX_PIXELS",
    "PIXEL_UNITS",
    "Box",
    "PixelWindow",
    "Resolution",
    "ScalePlan",
    "Unit",
    "check_number",
    "check_pixels",
    "normalise_unit",
    "plan_scale",
    "region_to_base",
    "split_index",
    "target_downsample",
    "window_at",
]

#: A region unit: pixels of level 0 or of the asked resolution, a fraction of the slide's
#: size, or a length unit of :mod:`wsiarray.units` (``"mm"``, ``"um"``, ``"nm"`` ...).
Unit = Literal["base_pixels", "level_pixels", "fraction"] | str

#: Accepted spellings of the pixel and fraction units (length units: :mod:`wsiarray.units`).
PIXEL_UNITS: dict[str, str] = {
    "base_pixels": "base_pixels",
    "base_pixel": "base_pixels",
    "base": "base_pixels",
    "px": "base_pixels",
    "level_pixels": "level_pixels",
    "level_pixel": "level_pixels",
    "pixels": "level_pixels",
    "mag_pixels": "level_pixels",
    "fraction": "fraction",
}

#: A file level whose downsample is within this relative distance of the asked one is used
#: as it is, not resampled: level downsamples are size ratios (2.0005 for an odd width).
LEVEL_MATCH = 1e-3

#: The pixel budget: the most pixels (height x width, whatever the bands) one array that
#: wsiarray allocates may hold, checked before allocating (:func:`check_pixels`): 2.5 x 10^9,
#: 7.5 GB of 8-bit RGB, the CLI's largest image file. A request past it is a
#: :class:`~wsiarray.PixelBudgetError` at once, where it was a MemoryError after seconds
#: (``region(..., 1e9, 1e9, pad=True)``: > 30 s building the graph), or swapped the machine.
#: Configurable: assign ``wsiarray.geometry.MAX_PIXELS`` (read at each call).
MAX_PIXELS = 50_000 * 50_000

#: The most pixels a *lazy* image may hold (an upsampled image, a padded region): nothing is
#: allocated, but dask's chunks grow with it. 2^40 pixels in 4096-px chunks are 65,536
#: chunks: building that array took 0.04 s and computing a 1000^2 slice of it 2.5 s (dask
#: culls the graph), where 1e9 x 1e9 padded ran > 30 s. Level 0 of a 200k^2 slide upsampled
#: 5x per axis fits. A slide's own levels are never refused (:func:`check_pixels` takes the
#: larger of this and level 0).
MAX_LAZY_PIXELS = 2**40


def check_number(
    value: Any,
    name: str,
    *,
    error: type[WsiArrayError] = OptionError,
    positive: bool = False,
    integer: bool = False,
) -> float:
    """``value`` as a float when it is a finite real number (above 0 if ``positive``, a
    whole number if ``integer``); otherwise ``error`` naming ``name`` and the value.

    The one check of a number argument: infinities and NaN would otherwise surface as
    OverflowError, ZeroDivisionError or "cannot convert float NaN to integer" deep in
    the arithmetic, or pass silently (``downsample=inf`` made a 1 x 1 image).

    Raises
    ------
    TypeError
        ``value`` is not a real number (a wrong type, as Python's own functions say).
    WsiArrayError
        ``error``: the value is infinite, NaN, not positive or not whole, as asked.

    Examples
    --------
    >>> check_number(2, "width", positive=True)
    2.0
    >>> check_number(float("inf"), "width", error=RegionError)
    Traceback (most recent call last):
    ...
    wsiarray.errors.RegionError: width=inf is not a finite number
    """
    if not isinstance(value, numbers.Real):
        msg = f"{name} must be a number, not {type(value).__name__} ({value!r})"
        raise TypeError(msg)
    number = float(value)
    if not math.isfinite(number):
        msg = f"{name}={value!r} is not a finite number"
        raise error(msg)
    if positive and number <= 0:
        msg = f"{name}={value!r} must be positive"
        raise error(msg)
    if integer and not number.is_integer():
        msg = f"{name}={value!r} must be a whole number of pixels"
        raise error(msg)
    return number


def check_pixels(height: float, width: float, what: str, *, budget: float | None = None) -> None:
    """Refuse, before allocating it, an array of ``height`` x ``width`` pixels over the
    pixel budget (:data:`MAX_PIXELS`, or ``budget`` when larger: a lazy image may be as
    large as the slide's own level 0). ``what`` names the request in the message.

    Raises
    ------
    PixelBudgetError
        Over the budget.

    Examples
    --------
    >>> check_pixels(10**6, 10**6, "the output")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wsiarray.errors.PixelBudgetError: the output would be 1,000,000 x 1,000,000 = ...
    """
    limit = max(MAX_PIXELS, budget or 0)
    if height * width > limit:
        msg = (
            f"{what} would be {int(width):,} x {int(height):,} = {int(height * width):,} "
            f"pixels, more than the pixel budget of {int(limit):,} "
            "(wsiarray.geometry.MAX_PIXELS); ask for a smaller region or a lower resolution"
        )
        raise PixelBudgetError(msg)


def normalise_unit(name: str) -> Unit:
    """Return the canonical name of a unit, or raise :class:`UnitError` listing the valid ones.

    Examples
    --------
    >>> normalise_unit("µm"), normalise_unit("pixels")
    ('um', 'level_pixels')
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key in PIXEL_UNITS:
        return PIXEL_UNITS[key]
    length = length_unit(name)
    if length is not None:
        return length
    valid = ", ".join([*sorted(set(PIXEL_UNITS.values())), *LENGTH_UNITS])
    msg = f"unknown unit {name!r}; use one of {valid} (or an alias such as 'base', 'µm', 'pixels')"
    raise UnitError(msg)


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
    mpp: float | None = None,
    downsample: float | None = None,
    resolution: Resolution,
) -> float:
    """Downsample relative to level 0 for a scale given one way or another.

    At most one of ``level_downsample`` (a file level's), ``magnification`` (objective
    power, x), ``mpp`` (pixel size in micrometres) and ``downsample`` (level-0 pixels per
    output pixel) may be given; none means full resolution (1.0). ``resolution`` is the
    slide's at level 0.

    Examples
    --------
    >>> native = Resolution(mm_x=0.00025, mm_y=0.00025, magnification=40.0)
    >>> target_downsample(magnification=10, resolution=native)
    4.0
    >>> target_downsample(mpp=0.5, resolution=native)
    2.0
    """
    given = [v is not None for v in (level_downsample, magnification, mpp, downsample)]
    if sum(given) > 1:
        msg = "give at most one of level=, magnification=, mpp= and downsample="
        raise OptionError(msg)
    if level_downsample is not None:
        return float(level_downsample)
    if downsample is not None:
        name, value = "downsample", _check_scale(downsample, "downsample", 1.0, "")
        wanted = value
    elif magnification is not None:
        name = "magnification"
        value = _check_scale(magnification, name, resolution.magnification, "level= or mpp=")
        wanted = resolution.magnification / value  # type: ignore[operator]
    elif mpp is not None:
        name, value = "mpp", _check_scale(mpp, "mpp", resolution.mm_x, "level= or magnification=")
        wanted = to_mm(value, "um") / resolution.mm_x  # type: ignore[operator]
    else:
        return 1.0
    if not 0 < wanted < math.inf:  # magnification=1e-320: a downsample of inf
        msg = f"{name}={value!r} is out of range: a downsample of {wanted!r} from full resolution"
        raise ScaleError(msg)
    return wanted


def _check_scale(value: float, name: str, known: float | None, alternatives: str) -> float:
    """A scale argument as a float: a finite positive number (:class:`ScaleError`), of a
    kind the slide records (:class:`MissingResolutionError`)."""
    number = check_number(value, name, error=ScaleError, positive=True)
    if known is None:
        what = "magnification" if name == "magnification" else "pixel size"
        msg = f"the slide's {what} is unknown, so {name}= cannot be used; use {alternatives}"
        raise MissingResolutionError(msg)
    return number


@dataclass(frozen=True, slots=True)
class Resolution:
    """Pixel size (mm) and magnification of an image; ``None`` where the file does not say.

    Examples
    --------
    >>> Resolution(mm_x=0.0005, mm_y=0.0005, magnification=20.0).at(4.0, 4.0)
    Resolution(mm_x=0.002, mm_y=0.002, magnification=5.0)
    >>> Resolution(mm_x=0.0005, mm_y=0.0005, magnification=20.0).mpp
    (0.5, 0.5)
    """

    mm_x: float | None
    mm_y: float | None
    magnification: float | None

    def at(self, downsample_y: float, downsample_x: float) -> Resolution:
        """The resolution of pixels ``downsample_y`` x ``downsample_x`` of these wide."""
        return Resolution(
            mm_x=self.mm_x * downsample_x if self.mm_x else None,
            mm_y=self.mm_y * downsample_y if self.mm_y else None,
            magnification=self.magnification / downsample_x if self.magnification else None,
        )

    @property
    def mpp(self) -> tuple[float | None, float | None]:
        """``(x, y)`` pixel size in micrometres (OpenSlide's ``mpp-x``, ``mpp-y``)."""
        return tuple(  # type: ignore[return-value]
            None if mm is None else from_mm(mm, "um") for mm in (self.mm_x, self.mm_y)
        )


@dataclass(frozen=True, slots=True)
class ScalePlan:
    """How the image at a downsample is made from the file's levels.

    Attributes
    ----------
    level : int
        The file level read.
    shape : (int, int)
        ``(height, width)`` of the image.
    downsample : (float, float)
        Level-0 pixels per image pixel, ``(y, x)``: the exact size ratios for a file level.
    factor : (float, float) or None
        Read-level pixels per image pixel, ``(y, x)``, for an area-resampled image; ``None``
        when the image is the file level as stored.
    """

    level: int
    shape: tuple[int, int]
    downsample: tuple[float, float]
    factor: tuple[float, float] | None

    @classmethod
    def of_level(cls, level_shapes: tuple[tuple[int, int], ...], level: int) -> ScalePlan:
        """The plan that reads file level ``level`` as it is stored."""
        (base_h, base_w), (height, width) = level_shapes[0], level_shapes[level]
        return cls(level, (height, width), (base_h / height, base_w / width), None)


def plan_scale(level_shapes: tuple[tuple[int, int], ...], downsample: float) -> ScalePlan:
    """Which file level gives the image at ``downsample`` (relative to level 0), and how.

    A file level whose downsample matches within :data:`LEVEL_MATCH` is used as it is.
    Otherwise the coarsest level at least as fine is area-resampled to ``floor(size /
    downsample)`` pixels per axis, each exactly ``downsample`` level-0 pixels wide (below 1:
    upsampled, from level 0).

    Examples
    --------
    >>> shapes = ((30000, 40000), (7500, 10000), (1875, 2500))
    >>> plan_scale(shapes, 4.0002)
    ScalePlan(level=1, shape=(7500, 10000), downsample=(4.0, 4.0), factor=None)
    >>> plan_scale(shapes, 8.0)
    ScalePlan(level=1, shape=(3750, 5000), downsample=(8.0, 8.0), factor=(2.0, 2.0))
    """
    base_h, base_w = level_shapes[0]
    for level, (_, width) in enumerate(level_shapes):
        if math.isclose(base_w / width, downsample, rel_tol=LEVEL_MATCH):
            return ScalePlan.of_level(level_shapes, level)
    finer = [
        i for i, (_, width) in enumerate(level_shapes) if base_w / width <= downsample * (1 + 1e-9)
    ]
    level = finer[-1] if finer else 0
    height, width = level_shapes[level]
    return ScalePlan(
        level=level,
        shape=(max(1, math.floor(base_h / downsample)), max(1, math.floor(base_w / downsample))),
        downsample=(downsample, downsample),
        factor=(downsample * height / base_h, downsample * width / base_w),
    )


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
        An edge or size that is not a finite number, a negative width or height, or a
        rectangle too far out for floats in base pixels.
    """
    left, top, width, height = (
        check_number(value, name, error=RegionError)
        for value, name in ((left, "left"), (top, "top"), (width, "width"), (height, "height"))
    )
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
        sx, sy = to_mm(1.0, unit) / mm_x, to_mm(1.0, unit) / mm_y
    box = Box(left * sx, top * sy, (left + width) * sx, (top + height) * sy)
    if not all(map(math.isfinite, (box.left, box.top, box.right, box.bottom))):
        msg = (
            f"the region left={left!r}, top={top!r}, width={width!r}, height={height!r} "
            f"({units}) is out of range: its edges overflow in base pixels"
        )
        raise RegionError(msg)
    return box


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


def split_index(key: Any, shape: tuple[int, ...]) -> tuple[slice, slice, tuple[Any, ...]]:
    """Split an array index into the window to read and what to take from it.

    Lazy arrays read unit-step ``(rows, columns)`` windows; dask passes plain slices, and
    steps, integers and integer arrays (fancy indexing fused into the read) are served from
    their bounding window. Returns the two window slices and the index into the window,
    ``(local rows, local columns, *rest)``, to apply as ``window[:, cols][rows][..., *rest]``
    (columns first: an integer row index drops the row axis).

    Examples
    --------
    >>> split_index((slice(2, 10, 4), 5), (100, 100, 3))
    (slice(2, 10, None), slice(5, 6, None), (slice(None, None, 4), 0, slice(None, None, None)))
    """
    key = tuple(key) if isinstance(key, tuple) else (key,)
    key = key + (slice(None),) * (len(shape) - len(key))
    rows, local_rows = _bounding(key[0], shape[0])
    cols, local_cols = _bounding(key[1], shape[1])
    return rows, cols, (local_rows, local_cols, *key[2:])


def _bounding(index: Any, size: int) -> tuple[slice, Any]:
    """One axis: the unit-step slice to read, and the index into what was read."""
    if isinstance(index, slice):
        start, stop, step = index.indices(size)
        if step == 1:
            return slice(start, stop), slice(None)
        if step > 0:
            return slice(start, max(start, stop)), slice(None, None, step)
        return slice(None), index
    positions = np.asarray(index) % size if np.ndim(index) else int(index) % size
    low, high = int(np.min(positions)), int(np.max(positions)) + 1
    return slice(low, high), positions - low
