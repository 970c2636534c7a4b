"""Wrong argument values at the large_image-compatible API (issue 15): a WsiArrayError naming
the argument, which is also the ValueError large_image raises where it refuses the value;
sizes past the pixel budget refused before anything is read or allocated."""

from __future__ import annotations

import logging
import math
import os
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

import wsiarray as wa
from wsiarray import geometry
from wsiarray.compat import large_image as compat

SVS = "aperio/CMU-1-Small-Region.svs"  # 2220 x 2967, one level, 20x, 240-px tiles
NUMPY = compat.TILE_FORMAT_NUMPY


@pytest.fixture(scope="module")
def source(real_slide) -> compat.TileSource:
    return compat.open(real_slide(SVS))


def refused(call: Callable[[], Any], error: type[Exception], match: str) -> None:
    """``call`` raises ``error`` with ``match`` in its message, before allocating 10 MB."""
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match):
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


@pytest.mark.parametrize("value", [0, -5, math.nan, math.inf])
@pytest.mark.parametrize("key", ["maxWidth", "maxHeight"])
def test_output_size(source: compat.TileSource, key: str, value: float) -> None:
    """0 was a ZeroDivisionError (large_image: TypeError), the others large_image's
    ValueError, which OptionError is."""
    refused(
        lambda: source.getRegion(output={key: value}, format=NUMPY),
        wa.OptionError,
        rf"^output {key}={value!r} ",
    )


@pytest.mark.parametrize("value", [0, -5, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("key", ["magnification", "mm_x", "mm_y"])
def test_scale_value(source: compat.TileSource, key: str, value: float) -> None:
    """0 returned the full-resolution region (large_image takes 0 for 'not given'); the
    others were ZeroDivisionError, 'math domain error' or a NaN conversion."""
    with pytest.raises(wa.ScaleError, match=rf"^scale {key}={value!r} "):
        source.getRegion(scale={key: value}, format=NUMPY)
    with pytest.raises(wa.ScaleError, match=rf"^scale {key}={value!r} "):
        next(source.tileIterator(scale={key: value}))
    with pytest.raises(wa.ScaleError, match=rf"^scale {key}={value!r} "):
        source.convertRegionScale({"left": 0, "units": "mag_pixels"}, sourceScale={key: value})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("key", ["left", "top", "right", "bottom", "width", "height"])
def test_region_value(source: compat.TileSource, key: str, value: float) -> None:
    """OverflowError or 'cannot convert float NaN to integer' here and in large_image."""
    with pytest.raises(wa.RegionError, match=rf"^region {key}={value!r} is not a finite"):
        source.getRegion(region={key: value}, format=NUMPY)


def test_region_overflowing_in_base_pixels(source: compat.TileSource) -> None:
    with pytest.raises(wa.RegionError, match="region right in base pixels=inf"):
        source.getRegion(region={"left": 0, "width": 1e300, "units": "km"}, format=NUMPY)


def test_empty_regions_stay_empty(source: compat.TileSource) -> None:
    """A negative or zero width is large_image's empty region, not an error."""
    for width in (0, -10):
        image, _ = source.getRegion(region={"left": 0, "width": width}, format=NUMPY)
        assert image.shape == (0, 0, 3)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"tile_size": {"width": 0}}, "Invalid tile_size or tile_overlap. tile_size 0 x 0"),
        ({"tile_size": {"width": -4}}, "Invalid tile_size or tile_overlap"),
        ({"tile_size": {"width": math.inf}}, r"^tile_size width=inf is not a finite number"),
        ({"tile_size": {"height": math.nan}}, r"^tile_size height=nan is not a finite number"),
        ({"tile_overlap": {"x": math.inf}}, r"^tile_overlap x=inf is not a finite number"),
        ({"tile_offset": {"left": math.nan}}, r"^tile_offset left=nan is not a finite number"),
    ],
)
def test_tile_options(source: compat.TileSource, options: dict[str, Any], match: str) -> None:
    with pytest.raises(wa.OptionError, match=match):
        source.getSingleTile(format=NUMPY, **options)


def test_negative_overlap_is_taken_as_large_image_takes_it(source: compat.TileSource) -> None:
    tile = source.getSingleTile(format=NUMPY, tile_overlap={"x": -5})
    assert tile["tile"].shape[:2] == (240, 240)


@pytest.mark.parametrize("value", [1, 0, -1, math.nan, math.inf])
def test_thumbnail_size(source: compat.TileSource, value: float) -> None:
    with pytest.raises(wa.OptionError, match=r"width"):
        source.getThumbnail(width=value, format=NUMPY)


def test_associated_image_size(source: compat.TileSource) -> None:
    with pytest.raises(wa.OptionError, match=r"^width=-5 must be positive"):
        source.getAssociatedImage("label", width=-5)
    refused(
        lambda: source.getAssociatedImage("label", width=10**6, height=10**6),
        wa.PixelBudgetError,
        "the associated image's output would be",
    )


def test_upscaled_output_over_the_budget(source: compat.TileSource) -> None:
    """2^20 x the native magnification: it was numpy's 'array is too big' ValueError after
    reading the region; now refused before reading."""
    start = time.perf_counter()
    refused(
        lambda: source.getRegion(scale={"magnification": 20 * 2**20}, format=NUMPY),
        wa.PixelBudgetError,
        "getRegion's output would be 2,327,838,720 x 3,111,124,992",
    )
    refused(
        lambda: source.getRegion(output={"maxWidth": 10**6, "maxHeight": 10**6}, format=NUMPY),
        wa.PixelBudgetError,
        "getRegion's output would be 748,230 x 1,000,000",
    )
    assert time.perf_counter() - start < 2


def test_tiles_over_the_budget(source: compat.TileSource) -> None:
    """A 10^6-px tile at 1024 x: MemoryError allocating (4, 1000448, 1000448)."""
    refused(
        lambda: source.getSingleTile(
            tile_size={"width": 10**6, "height": 10**6},
            scale={"magnification": 20 * 2**10},
            format=NUMPY,
        ),
        wa.PixelBudgetError,
        "a tile's output would be 1,000,448 x 1,000,448",
    )


def test_full_resolution_read_over_the_budget_before_planning_blocks(
    source: compat.TileSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fuzzer's 10^6 x 10^6 single-level slide, scaled down: maxWidth=512 reads the
    level holding real data (getPreferredLevel: the only one, at full resolution), as
    large_image does; over the budget that read is refused before read_parallel plans or
    submits a block (it once spent > 10 s submitting ~10^7 futures)."""
    monkeypatch.setattr(geometry, "MAX_PIXELS", 1000 * 1000)
    blocks: list[Any] = []
    monkeypatch.setattr(compat._reads, "tile_cuts", lambda *a: blocks.append(a) or [0, 1])
    refused(
        lambda: source.getRegion(output={"maxWidth": 512, "maxHeight": 512}, format=NUMPY),
        wa.PixelBudgetError,
        "the region read would be 2,220 x 2,967",
    )
    assert blocks == []
    with pytest.raises(wa.PixelBudgetError, match="a tile read would be"):
        source.getSingleTile(tile_size={"width": 2000, "height": 2000}, format=NUMPY)
    with pytest.raises(wa.PixelBudgetError, match="the region read would be"):
        source.read_level_pixels(source.levels - 1, 0, 0, 2000, 2000)
    # within the budget: read as before
    image, _ = source.getRegion(region={"width": 1000, "height": 1000}, format=NUMPY)
    assert image.shape[:2] == (1000, 1000)


def test_bytes_path(real_slide) -> None:
    path = real_slide(SVS)
    source = compat.open(os.fsencode(path))
    assert (source.sizeX, source.sizeY) == (2220, 2967)
    assert source.getMetadata()["bandCount"] == compat.open(path).getMetadata()["bandCount"]


@pytest.mark.compat
@pytest.mark.parametrize(
    "call",
    [
        lambda ts: ts.getRegion(output={"maxWidth": -5}, format=NUMPY),
        lambda ts: ts.getRegion(output={"maxWidth": math.nan}, format=NUMPY),
        lambda ts: ts.getRegion(output={"maxHeight": math.inf}, format=NUMPY),
        lambda ts: ts.getThumbnail(width=1, format=NUMPY),
        lambda ts: ts.getSingleTile(tile_size={"width": 0}, format=NUMPY),
        lambda ts: ts.getRegion(scale={"magnification": -5}, format=NUMPY),
        lambda ts: ts.getRegion(scale={"magnification": math.nan}, format=NUMPY),
        lambda ts: ts.getRegion(region={"left": math.nan}, format=NUMPY),
    ],
)
def test_a_value_large_image_refuses_with_valueerror_is_one_here(
    real_slide, source: compat.TileSource, call: Callable[[Any], Any]
) -> None:
    """Code catching large_image's ValueError keeps working: ours is a WsiArrayError and a
    ValueError."""
    large_image = pytest.importorskip("large_image")
    logging.getLogger("large_image").setLevel(logging.ERROR)
    with pytest.raises(ValueError):  # noqa: PT011 - the builtin is what is compared
        call(large_image.open(str(real_slide(SVS))))
    with pytest.raises(wa.WsiArrayError) as info:
        call(source)
    assert isinstance(info.value, ValueError)
