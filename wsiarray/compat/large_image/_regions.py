"""large_image's region dicts: unit names, base pixels per unit, bounds and conversions.

Pure. Mirrors ``constants.TileInputUnits`` and ``TileSource._scaleFromUnits``,
``_getRegionBounds`` and ``convertRegionScale`` (``large_image/tilesource/base.py``). The
unit *names* are large_image's (its API accepts exactly these); what a length unit is comes
from :mod:`wsiarray.units`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wsiarray.compat.large_image._levels import Pyramid, magnification_for_scale
from wsiarray.errors import MissingResolutionError, RegionError, UnitError
from wsiarray.geometry import check_number
from wsiarray.units import LENGTH_UNITS, from_mm, length_unit

#: large_image's spellings of the length units it accepts (a subset of wsiarray's aliases).
_LENGTH_SPELLINGS = (
    *("nm", "nanometer", "nanometers"),
    *("um", "µm", "micron", "microns", "micrometer", "micrometers"),
    *("mm", "millimeter", "millimeters"),
    *("m", "meter", "meters"),
    *("km", "kilometer", "kilometers"),
)

#: large_image's unit names and aliases (``constants.TileInputUnits``, without the
#: geospatial projections): pixels, fractions, and lengths by their wsiarray.units name.
UNITS: Mapping[str | None, str] = {
    None: "base_pixels",
    "base": "base_pixels",
    "base_pixel": "base_pixels",
    "base_pixels": "base_pixels",
    "pixel": "mag_pixels",
    "pixels": "mag_pixels",
    "mag_pixel": "mag_pixels",
    "mag_pixels": "mag_pixels",
    "magnification_pixel": "mag_pixels",
    "magnification_pixels": "mag_pixels",
    "fraction": "fraction",
    **{name: str(length_unit(name)) for name in _LENGTH_SPELLINGS},
}


def unit(name: str | None) -> str:
    """The unit an accepted name stands for (``base_pixels``, ``mag_pixels``, ``fraction``
    or a length); :class:`UnitError` (a ValueError, as large_image raises) otherwise."""
    if name not in UNITS:
        valid = ", ".join(sorted(str(u) for u in set(UNITS.values())))
        msg = f"Invalid units {name!r}; use one of {valid}"
        raise UnitError(msg)
    return UNITS[name]


def units_scale(
    pyramid: Pyramid,
    native: Mapping[str, Any],
    units: str,
    mag: Mapping[str, Any] | None,
) -> tuple[float, float]:
    """Base pixels per ``units`` along x and y (``TileSource._scaleFromUnits``).

    ``mag_pixels`` are pixels at ``mag`` (a magnification dict); lengths use ``mag``'s pixel
    size when it has one and the native one otherwise; fractions are of the full size.

    Raises
    ------
    MissingResolutionError
        ``mag_pixels`` without a scale, or a length without a pixel size (large_image's
        messages; a ValueError, as it raises).
    """
    if units == "fraction":
        return float(pyramid.size_x), float(pyramid.size_y)
    if units == "mag_pixels":
        if not (mag or {}).get("scale"):
            msg = "No magnification to use for units"
            raise MissingResolutionError(msg)
        return mag["scale"], mag["scale"]  # type: ignore[index]
    if units in LENGTH_UNITS:
        if not mag or not mag.get("scale") or not mag.get("mm_x") or not mag.get("mm_y"):
            mag = {**native, "scale": 1.0}
        if not mag.get("mm_x") or not mag.get("mm_y"):
            msg = "No mm_x or mm_y to use for units"
            raise MissingResolutionError(msg)
        # Divided by units per millimetre, as large_image does (its ``mmConversionDict``
        # holds these exact values), so the floats are large_image's to the last bit.
        per_mm = from_mm(1.0, units)
        return mag["scale"] / mag["mm_x"] / per_mm, mag["scale"] / mag["mm_y"] / per_mm
    return 1.0, 1.0


def region_bounds(
    pyramid: Pyramid,
    native: Mapping[str, Any],
    region: Mapping[str, Any],
    mag: Mapping[str, Any] | None,
    *,
    crop: bool = True,
) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` of a region dict in base pixels
    (``TileSource._getRegionBounds``).

    Edges are scaled from their units (width and height from ``unitsWH`` when given, which
    then win over right and bottom); negative edges count from the right or bottom; missing
    ones default to the image's. With ``crop`` they are rounded and clipped to the image.

    Raises
    ------
    RegionError
        An edge or size that is not a finite number, or one that overflows in base pixels
        (an OverflowError or NaN conversion ValueError in large_image; RegionError is a
        ValueError).
    """
    sx, sy = units_scale(pyramid, native, unit(region.get("units")), mag)
    sw, sh = sx, sy
    values = {
        k: region[k]
        for k in ("left", "top", "right", "bottom", "width", "height")
        if region.get(k) is not None
    }
    for key, value in values.items():
        check_number(value, f"region {key}", error=RegionError)
    if region.get("unitsWH"):
        sw, sh = units_scale(pyramid, native, unit(region["unitsWH"]), mag)
        for edge, start, size in (("right", "left", "width"), ("bottom", "top", "height")):
            if {edge, start, size} <= values.keys():
                del values[edge]
    for key, scale in (
        ("left", sx),
        ("right", sx),
        ("width", sw),
        ("top", sy),
        ("bottom", sy),
        ("height", sh),
    ):
        if key in values and scale and scale != 1:
            values[key] = values[key] * scale
    size_x, size_y = pyramid.size_x, pyramid.size_y
    for key in ("left", "right", "top", "bottom"):
        if key in values and values[key] < 0:
            values[key] += size_x if key in ("left", "right") else size_y
    left = values.get(
        "left", values["right"] - values["width"] if {"right", "width"} <= values.keys() else 0
    )
    right = values.get("right", left + values["width"] if "width" in values else size_x)
    top = values.get(
        "top",
        values["bottom"] - values["height"] if {"bottom", "height"} <= values.keys() else 0,
    )
    bottom = values.get("bottom", top + values["height"] if "height" in values else size_y)
    for key, value in (("left", left), ("top", top), ("right", right), ("bottom", bottom)):
        check_number(value, f"region {key} in base pixels", error=RegionError)
    if crop:
        left = min(size_x, max(0, round(left)))
        right = min(size_x, max(left, round(right)))
        top = min(size_y, max(0, round(top)))
        bottom = min(size_y, max(top, round(bottom)))
    return left, top, right, bottom


def convert_region(
    pyramid: Pyramid,
    native: Mapping[str, Any],
    region: Mapping[str, Any],
    source_scale: Mapping[str, Any] | None,
    target_scale: Mapping[str, Any] | None,
    target_units: str | None,
    *,
    crop: bool,
) -> dict[str, Any]:
    """A region dict at ``source_scale`` in ``target_units`` at ``target_scale``
    (``TileSource.convertRegionScale``).

    Returned unchanged (as a copy) unless it is in ``mag_pixels`` or other units are asked
    for; otherwise the keys it has, as floats, and ``units``.
    """
    units = unit(region.get("units"))
    target = unit(target_units) if target_units is not None else None
    if units != "mag_pixels" and (target is None or target == units):
        return dict(region)
    mag = magnification_for_scale(native, pyramid.levels, source_scale)
    left, top, right, bottom = region_bounds(pyramid, native, region, mag, crop=crop)
    target_mag = magnification_for_scale(native, pyramid.levels, target_scale)
    sx, sy = units_scale(pyramid, native, target or "base_pixels", target_mag)
    converted = {
        "left": left / sx,
        "top": top / sy,
        "right": right / sx,
        "bottom": bottom / sy,
        "width": right / sx - left / sx,
        "height": bottom / sy - top / sy,
    }
    kept = {key: value for key, value in converted.items() if key in region}
    return {**kept, "units": target or "base_pixels"}
