"""Wrong argument values at the public API (issue 15): each is a specific WsiArrayError that
names the argument and its value, raised before anything is allocated; wrong types stay
TypeError. Paths: bytes as open() takes them, FIFOs and devices refused without blocking."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

import wsiarray as wa
from wsiarray import geometry

SVS = "aperio/CMU-1-Small-Region.svs"  # 2220 x 2967, one level, 20x, 0.499 µm


@pytest.fixture(scope="module")
def slide(real_slide) -> wa.Slide:
    return wa.open(real_slide(SVS))


BAD_EDGES = [math.inf, -math.inf, math.nan]


@pytest.mark.parametrize("value", BAD_EDGES)
@pytest.mark.parametrize("name", ["left", "top", "width", "height"])
def test_region_edge_not_finite(slide: wa.Slide, name: str, value: float) -> None:
    box = {"left": 0, "top": 0, "width": 10, "height": 10, name: value}
    with pytest.raises(wa.RegionError, match=rf"^{name}={value!r} is not a finite number"):
        slide.region(**box)


@pytest.mark.parametrize("value", [*BAD_EDGES, 2.5])
@pytest.mark.parametrize("name", ["left", "top", "width", "height"])
def test_read_edge_not_whole(slide: wa.Slide, name: str, value: float) -> None:
    box = {"left": 0, "top": 0, "width": 10, "height": 10, name: value}
    with pytest.raises(wa.RegionError, match=rf"^{name}={value!r} "):
        slide.read(**box)


def test_region_too_far_out_for_floats(slide: wa.Slide) -> None:
    """Finite, but past float range in base pixels (km at 0.499 µm a pixel)."""
    with pytest.raises(wa.RegionError, match="overflow in base pixels"):
        slide.region(0, 0, 1e300, 1e300, units="km")


@pytest.mark.parametrize("value", [math.inf, math.nan, 0, -1, -math.inf])
@pytest.mark.parametrize("name", ["magnification", "mpp", "downsample"])
def test_scale_not_finite_positive(slide: wa.Slide, name: str, value: float) -> None:
    with pytest.raises(wa.ScaleError, match=rf"^{name}={value!r} (is not a finite|must be pos)"):
        slide.image(**{name: value})
    if name != "downsample":  # region takes level, magnification or mpp
        with pytest.raises(wa.ScaleError, match=rf"^{name}={value!r} "):
            slide.region(0, 0, 10, 10, **{name: value})


def test_scale_that_overflows_the_downsample(slide: wa.Slide) -> None:
    """A positive, finite magnification whose downsample is infinite."""
    with pytest.raises(wa.ScaleError, match=r"magnification=1e-320 is out of range"):
        slide.image(magnification=1e-320)


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, 2.5])
def test_thumbnail_size(slide: wa.Slide, value: float) -> None:
    with pytest.raises(wa.OptionError, match=rf"^max_size={value!r} "):
        slide.thumbnail(value)
    with pytest.raises(wa.OptionError, match=rf"^max_size={value!r} "):
        slide.thumbnail_level(value)


def test_wrong_types_stay_type_errors(slide: wa.Slide) -> None:
    with pytest.raises(TypeError, match="level must be an integer, not float"):
        slide.image(level=0.5)
    with pytest.raises(TypeError, match="width must be a number, not str"):
        slide.region(0, 0, "10", 10)
    with pytest.raises(TypeError, match="magnification must be a number, not str"):
        slide.image(magnification="10x")


def test_padded_region_over_the_budget_is_refused_at_once(slide: wa.Slide) -> None:
    """It ran > 30 s building its graph and coordinates, then MemoryError."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(wa.PixelBudgetError, match="the region would be 1,000,000,000 x"):
            slide.region(0, 0, 1e9, 1e9, pad=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 2
    assert peak < 10 * 2**20
    # without pad the region is clipped to the slide: no refusal
    assert slide.region(0, 0, 1e9, 1e9).shape == (2967, 2220, 3)


def test_padded_region_within_the_slide_size_is_lazy_not_refused(
    slide: wa.Slide, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lazy budget is the larger of MAX_LAZY_PIXELS and level 0's pixels."""
    monkeypatch.setattr(geometry, "MAX_PIXELS", 100)
    monkeypatch.setattr(geometry, "MAX_LAZY_PIXELS", 100)
    region = slide.region(-10, -10, 2000, 2000, pad=True)
    assert region.shape == (2000, 2000, 3)
    with pytest.raises(wa.PixelBudgetError):
        slide.region(-10, -10, 3000, 3000, pad=True)  # 9e6 > 2220 x 2967


def test_a_small_region_upsampled_from_a_slide_over_the_in_memory_budget_reads(
    slide: wa.Slide, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the 512^2 region is allocated; the whole image at 2x (4 x 6.6 Mpx) is lazy, so
    the in-memory budget does not apply to it (it once refused such a region)."""
    monkeypatch.setattr(geometry, "MAX_PIXELS", 1000 * 1000)
    region = slide.region(100, 100, 256, 256, magnification=40, upsample=True)
    assert region.shape == (512, 512, 3)
    expected = slide.read(100, 100, 256, 256)
    assert (region.values == expected.repeat(2, axis=0).repeat(2, axis=1)).all()


def test_upsampled_image_over_the_budget(slide: wa.Slide) -> None:
    with pytest.raises(wa.PixelBudgetError, match="the image at that resolution"):
        slide.image(downsample=1e-4, upsample=True)


def test_read_and_thumbnail_over_the_budget(
    slide: wa.Slide, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eager outputs have MAX_PIXELS as their budget, checked before reading."""
    monkeypatch.setattr(geometry, "MAX_PIXELS", 1000 * 1000)
    assert slide.read(0, 0, 1000, 1000).shape == (1000, 1000, 3)
    with pytest.raises(wa.PixelBudgetError, match="the rectangle read would be 1,001 x 1,000"):
        slide.read(0, 0, 1001, 1000)
    with pytest.raises(wa.PixelBudgetError, match="level 0, the thumbnail's read"):
        slide.thumbnail(64)


def test_bytes_and_pathlike_paths(real_slide) -> None:
    path = real_slide(SVS)
    expected = wa.open(path).shape
    assert wa.open(os.fsencode(path)).shape == expected

    class BytesPath:
        def __fspath__(self) -> bytes:
            return os.fsencode(path)

    assert wa.open(BytesPath()).shape == expected
    with pytest.raises(wa.SlideNotFoundError):
        wa.open(os.fsencode(path) + b".missing")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer: it hung until killed. Run in a child
    so that a regression fails on the timeout instead of hanging the test session."""
    fifo = tmp_path / "slide.svs"
    os.mkfifo(fifo)
    code = (
        "import sys, wsiarray as wa\n"
        "try:\n    wa.open(sys.argv[1])\n"
        "except wa.UnsupportedFormatError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"{fifo} is a FIFO (named pipe), not a slide file" in result.stdout


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null")
def test_device_is_refused() -> None:
    with pytest.raises(wa.UnsupportedFormatError, match="/dev/null is a character device"):
        wa.open("/dev/null")


def test_plain_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(wa.UnsupportedFormatError, match="is a directory, not a slide file"):
        wa.open(tmp_path)


def test_check_number_names_the_argument() -> None:
    assert geometry.check_number(3, "x", positive=True, integer=True) == 3.0
    with pytest.raises(wa.LevelError, match=r"^z=-2 must be positive$"):
        geometry.check_number(-2, "z", error=wa.LevelError, positive=True)
    with pytest.raises(TypeError, match="z must be a number, not NoneType"):
        geometry.check_number(None, "z")


def test_an_option_no_reader_takes_is_refused_naming_it(real_slide) -> None:
    """It was ignored: ``{"bogus": 99}`` opened the slide as if not given."""
    path = real_slide(SVS)
    with pytest.raises(wa.OptionError, match=r"tifffile: takes no option 'bogus'"):
        wa.open(path, reader_options={"bogus": 99})
    with pytest.raises(wa.OptionError, match=r"openslide reader takes no option 'series'"):
        wa.open(path, reader="openslide", reader_options={"series": 0})
    assert wa.open(path, reader_options={"series": 0}).tree.attrs["reader"] == "tifffile"
