"""Pure geometry and resampling: exact numbers and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wsiarray as wa
from wsiarray import geometry
from wsiarray.resample import area_resample, input_span, lanczos_thumbnail


@pytest.mark.parametrize(
    ("alias", "unit"),
    [
        ("base", "base_pixels"),
        ("PX", "base_pixels"),
        ("pixels", "level_pixels"),
        ("µm", "um"),
        ("μm", "um"),
        ("microns", "um"),
        ("mm", "mm"),
        ("fraction", "fraction"),
    ],
)
def test_unit_aliases(alias: str, unit: str) -> None:
    assert geometry.normalise_unit(alias) == unit


def test_unknown_unit_lists_the_valid_ones() -> None:
    with pytest.raises(
        wa.UnitError, match="use one of base_pixels, fraction, level_pixels, nm, um, mm, cm"
    ):
        geometry.normalise_unit("furlong")


BASE = {"base_shape": (1000, 2000), "mm_x": 0.0005, "mm_y": 0.00025, "downsample": 4.0}


@pytest.mark.parametrize(
    ("region", "units", "expected"),
    [
        ((10, 20, 30, 40), "base_pixels", (10, 20, 40, 60)),
        ((10, 20, 30, 40), "level_pixels", (40, 80, 160, 240)),
        ((0.5, 0.25, 0.25, 0.5), "fraction", (1000, 250, 1500, 750)),
        ((0.1, 0.1, 0.05, 0.05), "mm", (200, 400, 300, 600)),
        ((100, 100, 50, 50), "um", (200, 400, 300, 600)),
    ],
)
def test_region_to_base(region, units, expected) -> None:
    box = geometry.region_to_base(*region, units, **BASE)
    assert (box.left, box.top, box.right, box.bottom) == pytest.approx(expected)


def test_physical_units_need_a_pixel_size() -> None:
    with pytest.raises(wa.MissingResolutionError, match="pixel size is unknown"):
        geometry.region_to_base(
            0, 0, 1, 1, "mm", base_shape=(10, 10), mm_x=None, mm_y=None, downsample=1
        )
    with pytest.raises(wa.MissingResolutionError, match="magnification is unknown"):
        geometry.target_downsample(
            magnification=10, resolution=geometry.Resolution(None, None, None)
        )


def test_window_floor_start_ceil_stop() -> None:
    assert geometry.window_at(geometry.Box(10, 10, 30, 21), 4.0, 4.0) == geometry.PixelWindow(
        2, 6, 2, 8
    )
    # exact multiples do not grow the window through float noise: 0.3 mm at 0.0001 mm/px
    box = geometry.region_to_base(
        0.1, 0.1, 0.2, 0.2, "mm", base_shape=(9999, 9999), mm_x=1e-4, mm_y=1e-4, downsample=1
    )
    assert geometry.window_at(box, 1.0, 1.0) == geometry.PixelWindow(1000, 3000, 1000, 3000)


@given(
    left=st.floats(-1e4, 1e4),
    top=st.floats(-1e4, 1e4),
    width=st.floats(0, 1e4),
    height=st.floats(0, 1e4),
    downsample=st.floats(1, 64),
)
def test_window_always_covers_the_box(left, top, width, height, downsample) -> None:
    box = geometry.Box(left, top, left + width, top + height)
    window = geometry.window_at(box, downsample, downsample)
    assert window.x0 * downsample <= left + 1e-6 * downsample
    assert window.x1 * downsample >= left + width - 1e-6 * downsample
    assert window.y0 * downsample <= top + 1e-6 * downsample
    clipped = window.clipped(100, 200)
    assert 0 <= clipped.y0 <= clipped.y1 <= 100
    assert 0 <= clipped.x0 <= clipped.x1 <= 200


@given(
    unit=st.sampled_from(["base_pixels", "level_pixels", "mm", "um", "fraction"]),
    left=st.floats(0, 1),
    width=st.floats(0, 1),
)
def test_unit_round_trip_through_base_pixels(unit, left, width) -> None:
    """Converting a region to base pixels and back gives it again, for every unit."""
    scale = {
        "base_pixels": 1,
        "level_pixels": 4.0,
        "mm": 1 / 0.0005,
        "um": 1 / 0.5,
        "fraction": 2000,
    }[unit]
    box = geometry.region_to_base(left, 0, width, 0, unit, **BASE)
    assert box.left / scale == pytest.approx(left, abs=1e-9)
    assert (box.right - box.left) / scale == pytest.approx(width, abs=1e-9)


def test_input_span() -> None:
    assert input_span(2, 4, 2.5, 100) == (5, 10)
    assert input_span(0, 3, 4.0, 10) == (0, 10)  # clipped to the input


def test_area_resample_integer_factor_is_block_mean() -> None:
    data = np.random.default_rng(0).integers(0, 256, (64, 96, 3)).astype(np.uint8)
    out = area_resample(
        data,
        rows=(0, 16),
        cols=(0, 24),
        factor=(4.0, 4.0),
        origin=(0, 0),
        dtype=np.dtype("float64"),
    )
    np.testing.assert_allclose(out, data.reshape(16, 4, 24, 4, 3).mean(axis=(1, 3)), atol=1e-4)


@settings(deadline=None, max_examples=30)
@given(factor=st.floats(1.0, 7.5), start=st.integers(0, 10), size=st.integers(1, 12))
def test_area_resample_has_no_seams(factor: float, start: int, size: int) -> None:
    """A window resampled on its own equals the same window of the whole image resampled."""
    data = np.random.default_rng(1).integers(0, 256, (200, 150, 2)).astype(np.uint8)
    n_out = (int(200 // factor), int(150 // factor))
    whole = area_resample(
        data,
        rows=(0, n_out[0]),
        cols=(0, n_out[1]),
        factor=(factor, factor),
        origin=(0, 0),
        dtype=np.dtype("float32"),
    )
    rows = (min(start, n_out[0] - 1), min(start + size, n_out[0]))
    cols = (min(start, n_out[1] - 1), min(start + size, n_out[1]))
    y0, y1 = input_span(*rows, factor, 200)
    x0, x1 = input_span(*cols, factor, 150)
    part = area_resample(
        data[y0:y1, x0:x1],
        rows=rows,
        cols=cols,
        factor=(factor, factor),
        origin=(y0, x0),
        dtype=np.dtype("float32"),
    )
    np.testing.assert_allclose(part, whole[rows[0] : rows[1], cols[0] : cols[1]], atol=1e-3)


def test_area_resample_preserves_the_mean() -> None:
    data = np.random.default_rng(2).integers(0, 256, (300, 300, 1)).astype(np.uint8)
    out = area_resample(
        data,
        rows=(0, 120),
        cols=(0, 120),
        factor=(2.5, 2.5),
        origin=(0, 0),
        dtype=np.dtype("float64"),
    )
    assert out.mean() == pytest.approx(data.mean(), rel=1e-5)


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 3000),
    width=st.integers(1, 3000),
    max_size=st.integers(1, 600),
    factor=st.integers(1, 4),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32]),
)
def test_a_thumbnail_keeps_the_bound_and_the_aspect_whichever_way_it_was_read(
    height: int, width: int, max_size: int, factor: int, dtype: type
) -> None:
    """The longer side is at most ``max_size``, the aspect is the image's, and a reduced copy
    of the image (``shape`` given, as :meth:`Slide.thumbnail` reads a large level) gives the
    same size as the image itself: one stride per axis gave (1023, 350) of (1023, 700) to 512
    for 16-bit, and the chunked path's size was the reduced copy's (1 px off)."""
    reduced = np.zeros((max(1, height // factor), max(1, width // factor), 3), dtype)
    thumb = lanczos_thumbnail(reduced, max_size, shape=(height, width))
    whole = lanczos_thumbnail(np.zeros((height, width, 3), dtype), max_size)
    assert thumb.shape == whole.shape
    assert max(thumb.shape[:2]) <= max(max_size, 1)
    scale = min(1.0, max_size / max(height, width))
    assert abs(thumb.shape[0] - height * scale) <= 0.5 + 1e-9 or thumb.shape[0] == 1
    assert abs(thumb.shape[1] - width * scale) <= 0.5 + 1e-9 or thumb.shape[1] == 1
