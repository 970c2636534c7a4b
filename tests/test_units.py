"""Lengths: one table of units, conversions through millimetres."""

from __future__ import annotations

import pytest

import wsiarray as wa
from wsiarray.units import LENGTH_UNITS, MM_PER_UNIT, from_mm, length_unit, to_mm


@pytest.mark.parametrize(
    ("value", "unit", "mm"),
    [
        (0.499, "µm", 0.000499),  # Aperio's MPP: exactly the float 0.499 / 1000
        (0.2281750559028887, "micrometer", 0.2281750559028887 / 1000),  # OME-NGFF's spelling
        (250, "nm", 0.00025),
        (1, "inch", 25.4),  # TIFF ResolutionUnit 2
        (1, "centimeter", 10.0),
        (2, "m", 2000.0),
        (3, "mm", 3.0),
    ],
)
def test_to_mm_and_back(value: float, unit: str, mm: float) -> None:
    assert to_mm(value, unit) == mm
    assert from_mm(mm, unit) == pytest.approx(value, rel=1e-15)


def test_every_spelling_names_a_canonical_unit() -> None:
    assert set(LENGTH_UNITS) == {"nm", "um", "mm", "cm", "inch", "m", "km"}
    for spelling, mm in MM_PER_UNIT.items():
        assert LENGTH_UNITS[length_unit(spelling)] == mm  # type: ignore[index]
    assert length_unit(" Microns ") == "um"
    assert length_unit("base_pixels") is None


def test_unknown_unit() -> None:
    with pytest.raises(wa.UnitError, match="unknown length unit 'furlong'; use one of nm, um"):
        to_mm(1, "furlong")
