"""Lengths: the one table of length units wsiarray knows, and conversions through millimetres.

wsiarray keeps every physical size in millimetres (``mm_x``, ``mm_y``: a level-0 pixel's
size). Files and users speak other units: Aperio's ``MPP`` and OME-XML's default are
micrometres, OME-NGFF axes use UDUNITS names (``"micrometer"``), TIFF resolution tags count
pixels per inch or centimetre, large_image accepts ``nm`` to ``km``. All of them convert
here, through :data:`MM_PER_UNIT`; no other module multiplies or divides by 1000.

Examples
--------
>>> to_mm(0.499, "µm")
0.000499
>>> from_mm(0.000499, "um")
0.499
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from wsiarray.errors import UnitError

__all__ = ["LENGTH_UNITS", "MM_PER_UNIT", "from_mm", "length_unit", "to_mm"]

#: Canonical length units as ``(millimetres, per this many units)``: exact integers where
#: possible, so that 0.499 µm is 0.499 / 1000 mm, the same float as the file's text gives.
_RATIOS = {
    "nm": (1.0, 1e6),
    "um": (1.0, 1e3),
    "mm": (1.0, 1.0),
    "cm": (10.0, 1.0),
    "inch": (25.4, 1.0),
    "m": (1e3, 1.0),
    "km": (1e6, 1.0),
}

#: Canonical length units and the millimetres in one of each.
LENGTH_UNITS: Mapping[str, float] = MappingProxyType({u: mm / n for u, (mm, n) in _RATIOS.items()})

_ALIASES = {
    "nm": ("nanometer", "nanometers", "nanometre", "nanometres"),
    "um": ("µm", "μm", "micron", "microns", "micrometer", "micrometers", "micrometre"),
    "mm": ("millimeter", "millimeters", "millimetre", "millimetres"),
    "cm": ("centimeter", "centimeters", "centimetre", "centimetres"),
    "inch": ("in", "inches"),
    "m": ("meter", "meters", "metre", "metres"),
    "km": ("kilometer", "kilometers", "kilometre", "kilometres"),
}

#: Every accepted spelling (canonical names, UDUNITS names, µ and μ) → millimetres per unit.
MM_PER_UNIT: Mapping[str, float] = MappingProxyType(
    {
        **LENGTH_UNITS,
        **{alias: LENGTH_UNITS[unit] for unit, aliases in _ALIASES.items() for alias in aliases},
    }
)

_CANONICAL = {alias: unit for unit, aliases in _ALIASES.items() for alias in (unit, *aliases)}


def length_unit(name: str) -> str | None:
    """The canonical name (``"um"``, ``"mm"`` ...) of a length unit's spelling, or ``None``.

    Examples
    --------
    >>> length_unit("Micrometer"), length_unit("pixels")
    ('um', None)
    """
    return _CANONICAL.get(name.strip().lower()) if isinstance(name, str) else None


def to_mm(value: float, unit: str) -> float:
    """``value`` in ``unit`` as millimetres.

    Raises
    ------
    UnitError
        ``unit`` is not a length unit.
    """
    mm, per = _ratio(unit)
    return value * mm / per


def from_mm(value: float, unit: str) -> float:
    """``value`` millimetres in ``unit``.

    Raises
    ------
    UnitError
        ``unit`` is not a length unit.
    """
    mm, per = _ratio(unit)
    return value * per / mm


def _ratio(unit: str) -> tuple[float, float]:
    canonical = length_unit(unit)
    if canonical is None:
        msg = f"unknown length unit {unit!r}; use one of {', '.join(LENGTH_UNITS)}"
        raise UnitError(msg)
    return _RATIOS[canonical]
