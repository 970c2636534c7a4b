"""wsiarray.compat.large_image answers like large_image itself (the oracle, run side by side)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import real_slide
from wsiarray.compat import large_image as compat
from wsiarray.synthetic import write_aperio_svs

large_image = pytest.importorskip(
    "large_image", reason="large_image is the oracle: pip install -e '.[test]'"
)
logging.getLogger("large_image").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5000 x 3700 at 20x, 240-px tiles, levels 1/4/16/32 (the geometry of the semantics page)."""
    return write_aperio_svs(
        tmp_path_factory.mktemp("li") / "li.svs", size=(3700, 5000), downsamples=(1, 4, 16, 32)
    )


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Odd sizes, 256-px tiles, no MPP or AppMag."""
    return write_aperio_svs(
        tmp_path_factory.mktemp("li") / "odd.svs",
        size=(2333, 3001),
        tile=256,
        downsamples=(1, 4),
        mpp=None,
        magnification=None,
    )


def _pair(path: Path) -> tuple[compat.TileSource, object]:
    return compat.open(path), large_image.open(str(path))


SLIDES = ["synthetic", "odd", "aperio/CMU-1-Small-Region.svs"]


@pytest.fixture(params=SLIDES)
def pair(request: pytest.FixtureRequest) -> tuple[compat.TileSource, object]:
    name = request.param
    path = request.getfixturevalue(name) if name in ("synthetic", "odd") else real_slide(name)
    return _pair(path)


def test_metadata_and_magnifications(pair) -> None:
    ours, theirs = pair
    assert ours.getMetadata() == theirs.getMetadata()
    assert ours.getNativeMagnification() == theirs.getNativeMagnification()
    for level in [None, *range(ours.levels), 1.5]:
        assert ours.getMagnificationForLevel(level) == theirs.getMagnificationForLevel(level)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"magnification": 15},
        {"magnification": 7},
        {"magnification": 7, "rounding": "ceil"},
        {"magnification": 7, "rounding": "floor"},
        {"magnification": 40},
        {"magnification": 40, "rounding": None},
        {"magnification": 40, "rounding": "ceil"},
        {"magnification": 5, "exact": True},
        {"magnification": 7, "exact": True},
        {"magnification": 7, "rounding": False},
        {"mm_x": 0.0015},
        {"mm_x": 0.0005, "mm_y": 0.002},
        {},
    ],
)
def test_level_for_magnification(pair, kwargs) -> None:
    ours, theirs = pair
    assert ours.getLevelForMagnification(**kwargs) == theirs.getLevelForMagnification(**kwargs)


CONVERSIONS = [
    (
        {"left": 100, "top": 100, "width": 1000, "height": 800},
        None,
        {"magnification": 5},
        "mag_pixels",
    ),
    (
        {"left": 10, "top": 10, "width": 100, "height": 80, "units": "mag_pixels"},
        {"magnification": 5},
        None,
        "mm",
    ),
    (
        {"left": 10, "top": 10, "width": 100, "height": 80, "units": "mag_pixels"},
        {"magnification": 5},
        {"magnification": 10},
        "mag_pixels",
    ),
    (
        {"left": 0.1, "top": 0.2, "right": 0.6, "bottom": 0.5, "units": "fraction"},
        None,
        None,
        "base_pixels",
    ),
    (
        {"left": -300, "top": 50, "width": 200, "units": "base"},
        None,
        {"magnification": 2.5},
        "pixels",
    ),
    ({"left": 10, "top": 10, "width": 100, "height": 80}, None, None, None),  # unchanged
]


@pytest.mark.parametrize(("region", "source", "target", "units"), CONVERSIONS)
def test_convert_region_scale(synthetic: Path, region, source, target, units) -> None:
    ours, theirs = _pair(synthetic)
    assert ours.convertRegionScale(region, source, target, units) == theirs.convertRegionScale(
        region, source, target, units
    )


REGIONS = [
    {"region": {"left": 4900, "top": 3600, "width": 1000, "height": 1000}},  # clipped to 100 x 100
    {"region": {"left": -500, "top": -400}},  # negative edges count from the right/bottom
    {"region": {"left": 0.1, "top": 0.1, "width": 0.5, "height": 0.5, "units": "mm"}},
    {"region": {"left": 0.25, "top": 0.25, "width": 0.5, "height": 0.25, "units": "fraction"}},
    {
        "region": {"left": 100, "top": 200, "width": 1001, "height": 777},
        "scale": {"magnification": 10},
    },
    {
        "region": {"left": 100, "top": 200, "width": 1001, "height": 777},
        "scale": {"magnification": 7},
    },
    {"region": {"left": 100, "top": 200, "width": 1001, "height": 777}, "scale": {"mm_x": 0.0015}},
    {
        "region": {"left": 100, "top": 200, "width": 600, "height": 500},
        "scale": {"magnification": 40},
    },
    {
        "region": {"left": 10, "top": 20, "width": 300, "height": 200, "units": "mag_pixels"},
        "scale": {"magnification": 2.5},
    },
    {
        "region": {"left": 0, "top": 0, "width": 2000, "height": 2000},
        "scale": {"magnification": 1.25},
    },
    {"output": {"maxWidth": 300}},
    {"output": {"maxWidth": 400, "maxHeight": 100}},
]


@pytest.mark.parametrize("kwargs", REGIONS)
def test_get_region(synthetic: Path, kwargs) -> None:
    """Same shape always; same pixels, except up to 2 levels at OpenSlide's non-integer downsamples.

    At 1/16 the file level is 312 px for 5000 / 16 = 312.5: OpenSlide places those pixels at
    fractional base positions and interpolates; wsiarray reads the stored pixels.
    """
    ours, theirs = _pair(synthetic)
    a, fmt_a = ours.getRegion(format=compat.TILE_FORMAT_NUMPY, **kwargs)
    b, fmt_b = theirs.getRegion(format=large_image.constants.TILE_FORMAT_NUMPY, **kwargs)
    assert fmt_a == fmt_b == "numpy"
    assert a.shape == b.shape
    assert a.dtype == b.dtype
    difference = np.abs(a.astype(int) - b.astype(int))
    assert difference.max() <= 2
    assert difference.mean() < 0.02


def test_get_region_on_real_slide_is_exact() -> None:
    ours, theirs = _pair(real_slide("aperio/CMU-1-Small-Region.svs"))
    for kwargs in REGIONS[:8]:
        a, _ = ours.getRegion(format="numpy", **kwargs)
        b, _ = theirs.getRegion(format="numpy", **kwargs)
        np.testing.assert_array_equal(a, b, err_msg=str(kwargs))


def test_exact_scale_with_no_level_gives_an_empty_region(synthetic: Path) -> None:
    ours, theirs = _pair(synthetic)
    kwargs = {"scale": {"magnification": 7, "exact": True}, "format": "numpy"}
    a, b = ours.getRegion(**kwargs)[0], theirs.getRegion(**kwargs)[0]
    assert a.shape == b.shape == (0, 0, 3)
    assert a.dtype == b.dtype == np.float64


def test_region_at_another_scale_and_points(synthetic: Path) -> None:
    ours, theirs = _pair(synthetic)
    region = {"left": 10, "top": 10, "width": 100, "height": 80, "units": "mag_pixels"}
    args = (region, {"magnification": 5}, {"magnification": 10})
    a = ours.getRegionAtAnotherScale(*args, format=compat.TILE_FORMAT_NUMPY)[0]
    b = theirs.getRegionAtAnotherScale(*args, format=large_image.constants.TILE_FORMAT_NUMPY)[0]
    assert a.shape == b.shape == (160, 200, 4)
    point = ((120, 340), {"magnification": 5}, "mag_pixels", {"magnification": 20}, "base_pixels")
    assert ours.getPointAtAnotherScale(*point) == pytest.approx(
        theirs.getPointAtAnotherScale(*point)
    )


def test_formats_thumbnail_and_associated(synthetic: Path) -> None:
    ours, theirs = _pair(synthetic)
    image, mime = ours.getRegion(
        region={"left": 0, "top": 0, "width": 64, "height": 64}, encoding="PNG"
    )
    assert mime == "image/png"
    assert image.startswith(b"\x89PNG")
    jpeg, mime = ours.getRegion(region={"left": 0, "top": 0, "width": 64, "height": 64})
    assert mime == "image/jpeg"
    assert jpeg.startswith(b"\xff\xd8")
    pil, kind = ours.getRegion(
        region={"left": 0, "top": 0, "width": 64, "height": 32}, format=compat.TILE_FORMAT_PIL
    )
    assert kind == "PIL"
    assert pil.size == (64, 32)
    assert pil.mode == "RGBA"
    a = ours.getThumbnail(format=compat.TILE_FORMAT_NUMPY)[0]
    b = theirs.getThumbnail(format=large_image.constants.TILE_FORMAT_NUMPY)[0]
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
    assert set(ours.getAssociatedImagesList()) == set(theirs.getAssociatedImagesList()) & {
        "label",
        "macro",
        "thumbnail",
    }
    macro_a = ours.getAssociatedImage("macro", format=compat.TILE_FORMAT_NUMPY)[0]
    macro_b = theirs.getAssociatedImage("macro", format=large_image.constants.TILE_FORMAT_NUMPY)[0]
    assert macro_a.shape == macro_b.shape
    assert ours.getAssociatedImage("nonesuch") is None
    assert ours.getPixel(region={"left": 2000, "top": 1500}) == theirs.getPixel(
        region={"left": 2000, "top": 1500}
    )


def test_rgb_option_and_pickling(synthetic: Path) -> None:
    rgb = compat.open(synthetic, bands=3)
    assert rgb.getMetadata()["bandCount"] == 3
    assert rgb.getRegion(region={"left": 0, "top": 0, "width": 8, "height": 8}, format="numpy")[
        0
    ].shape == (8, 8, 3)
    clone = pickle.loads(pickle.dumps(rgb))
    assert clone.getMetadata() == rgb.getMetadata()


def test_bad_units(synthetic: Path) -> None:
    import wsiarray as wa

    with pytest.raises(wa.UnitError, match="Invalid units 'inch'"):
        compat.open(synthetic).getRegion(region={"left": 0, "units": "inch"}, format="numpy")
