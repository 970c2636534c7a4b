"""wsiarray.compat.large_image answers like large_image itself (the oracle, run side by side).

The TileSource methods are compared call by call; the pure planners behind them (region and
tile-grid plans) against the plan large_image's own ``TileIterator.info`` reports, and
against exact numbers from large_image's documentation and the semantics page.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsiarray.compat import large_image as compat
from wsiarray.compat.large_image._levels import LevelRead, Pyramid
from wsiarray.compat.large_image._plans import (
    GridAxis,
    RegionPlan,
    TileGridPlan,
    fit_size,
    plan_region,
    plan_tile_grid,
)
from wsiarray.compat.large_image._tiles import tile_box
from wsiarray.synthetic import write_aperio_svs

large_image = pytest.importorskip(
    "large_image", reason="large_image is the oracle: pip install -e '.[test]'"
)
logging.getLogger("large_image").setLevel(logging.ERROR)

pytestmark = pytest.mark.compat


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
def pair(request: pytest.FixtureRequest, real_slide) -> tuple[compat.TileSource, object]:
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


def test_get_region_on_real_slide_is_exact(real_slide) -> None:
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


def _without_pixels(tile) -> dict:
    return {k: v for k, v in tile.items() if k not in ("tile", "format")}


TILINGS = [
    {"tile_size": {"width": 512}, "tile_overlap": {"x": 64}},  # 12 columns, the last 72 px wide
    {
        "region": {"left": 0, "top": 0, "width": 8, "height": 8},
        "tile_size": {"width": 5},
        "tile_overlap": {"x": 4},
    },
    {
        "region": {"left": 0, "top": 0, "width": 8, "height": 8},
        "tile_size": {"width": 5},
        "tile_overlap": {"x": 4, "edges": True},
    },
    {"scale": {"magnification": 7}, "tile_size": {"width": 256}},  # resampled tiles, float x/y
    {"scale": {"magnification": 5}},  # a real level, native tiles
    {
        "scale": {"magnification": 2.5},
        "tile_size": {"width": 300},
        "tile_overlap": {"x": 30, "y": 30},
    },
    {
        "region": {"left": 500, "top": 600, "width": 2000, "height": 1500},
        "tile_size": {"width": 300, "height": 200},
        "tile_overlap": {"x": 20, "y": 10, "edges": True},
    },
    {
        "region": {"left": 1000, "top": 1000, "width": 1000, "height": 1000},
        "tile_offset": {"auto": True},
        "tile_size": {"width": 300},
    },
    {
        "region": {"left": 1000, "top": 1000, "width": 1000, "height": 1000},
        "tile_offset": {"left": 7, "top": 3},
        "tile_size": {"width": 300},
    },
    {
        "region": {"left": 0.1, "top": 0.1, "width": 0.9, "height": 0.5, "units": "mm"},
        "scale": {"mm_x": 0.001},
    },
    {"tile_size": {"width": 512}, "tile_position": 13},
    {"tile_size": {"width": 512}, "tile_position": 1000},  # out of range: nothing
    {"tile_size": {"width": 512}, "tile_position": {"position": 3}},
    {"tile_size": {"width": 512}, "tile_position": {"region_x": 2, "region_y": 1}},
    {
        "region": {"top": 600},
        "tile_size": {"width": 512},
        "tile_position": {"level_x": 2, "level_y": 1},
    },
    {"scale": {"magnification": 7, "exact": True}},  # no such level: nothing
]


@pytest.mark.parametrize("kwargs", TILINGS)
def test_tile_iterator_matches(synthetic: Path, kwargs) -> None:
    ours, theirs = _pair(synthetic)
    a = list(ours.tileIterator(format=compat.TILE_FORMAT_NUMPY, **kwargs))
    b = list(theirs.tileIterator(format=large_image.constants.TILE_FORMAT_NUMPY, **kwargs))
    assert len(a) == len(b)
    for mine, oracle in zip(a, b, strict=True):
        assert _without_pixels(mine) == _without_pixels(oracle)
    for mine, oracle in list(zip(a, b, strict=True))[:3] + list(zip(a, b, strict=True))[-2:]:
        assert mine["format"] == oracle["format"] == "numpy"
        assert mine["tile"].shape == oracle["tile"].shape
        assert np.abs(mine["tile"].astype(int) - oracle["tile"].astype(int)).max() <= 2


def test_tiles_are_lazy_and_pickle(synthetic: Path) -> None:
    ours = compat.open(synthetic)
    tile = ours.getSingleTile(
        tile_size={"width": 300}, tile_position=5, format=compat.TILE_FORMAT_NUMPY
    )
    assert dict.__getitem__(tile, "tile") is None  # nothing read yet
    clone = pickle.loads(pickle.dumps(tile))
    np.testing.assert_array_equal(clone["tile"], tile["tile"])
    assert tile["tile"].shape == (300, 300, 4)
    assert ours.getTileCount(tile_size={"width": 512}) == 80


@pytest.fixture(scope="module")
def seed_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed walkthrough's geometry (TCGA-02-0010 ... DX4: 32001 x 38474, 240-px tiles, 20x,
    0.5015 µm/px) as a sparse SVS: every tile is empty, so it is written in milliseconds."""
    import tifffile

    height, width = 38474, 32001
    description = (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] (240x240) JPEG/RGB Q=80"
        "|AppMag = 20|MPP = 0.5015"
    )
    tiles = -(-height // 240) * -(-width // 240)
    path = tmp_path_factory.mktemp("seed") / "seed.svs"
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            iter([b""] * tiles),
            shape=(height, width, 3),
            dtype="uint8",
            tile=(240, 240),
            compression="jpeg",
            photometric="rgb",
            description=description,
            metadata=None,
        )
    return path


def _square_in_mag_pixels(corner: int, side: int) -> dict:
    return {"left": corner, "top": corner, "width": side, "height": side, "units": "mag_pixels"}


def test_seed_walkthrough_values(seed_slide: Path) -> None:
    """Every value the seed notebook printed (large_image_semantics.md, "Seed walkthrough outputs")."""
    ts = compat.getTileSource(seed_slide)
    assert ts.getMetadata() == {
        "levels": 9,
        "magnification": 20.0,
        "mm_x": 0.0005015,
        "mm_y": 0.0005015,
        "sizeX": 32001,
        "sizeY": 38474,
        "tileHeight": 240,
        "tileWidth": 240,
        "dtype": "uint8",
        "bandCount": 4,
    }
    assert ts.getNativeMagnification() == {
        "magnification": 20.0,
        "mm_x": 0.0005015,
        "mm_y": 0.0005015,
    }
    for level in range(9):
        mag = ts.getMagnificationForLevel(level=level)
        scale = 2 ** (8 - level)
        assert mag["magnification"] == pytest.approx(20 / scale)
        assert mag["scale"] == scale
        assert mag["level"] == level
        assert mag["mm_x"] == mag["mm_y"] == pytest.approx(0.0005015 * scale)
    assert ts.getMagnificationForLevel(level=0)["mm_x"] == pytest.approx(0.128384)
    assert ts.getLevelForMagnification(magnification=10) == 7
    assert ts.getLevelForMagnification(mm_x=0.0005) == 8
    tiles = list(
        ts.tileIterator(
            region={
                "left": 5000,
                "top": 5000,
                "width": 20000,
                "height": 20000,
                "units": "base_pixels",
            },
            scale={"magnification": 20},
            tile_size={"width": 1000, "height": 1000},
            tile_overlap={"x": 50, "y": 50},
            format=compat.TILE_FORMAT_PIL,
        )
    )
    assert len(tiles) == 484
    tile = tiles[100]
    picture = tile["tile"]
    assert (picture.mode, picture.size) == ("RGBA", (1000, 1000))
    assert {k: v for k, v in tile.items() if k != "tile"} == {
        "format": "PIL",
        "gheight": 1000.0,
        "gwidth": 1000.0,
        "gx": 16150.0,
        "gy": 8550.0,
        "height": 1000,
        "iterator_range": {
            "level_x_max": 27,
            "level_x_min": 5,
            "level_y_max": 27,
            "level_y_min": 5,
            "position": 484,
            "region_x_max": 22,
            "region_y_max": 22,
        },
        "level": 8,
        "level_x": 17,
        "level_y": 9,
        "magnification": 20.0,
        "mm_x": 0.0005015,
        "mm_y": 0.0005015,
        "tile_overlap": {"bottom": 25, "left": 25, "right": 25, "top": 25},
        "tile_position": {
            "level_x": 17,
            "level_y": 9,
            "position": 100,
            "region_x": 12,
            "region_y": 4,
        },
        "width": 1000,
        "x": 16150,
        "y": 8550,
    }
    single = ts.getSingleTile(tile_size={"width": 1000, "height": 1000}, tile_position=1000)
    assert (single["level_x"], single["level_y"]) == (
        1000 % 33,
        1000 // 33,
    )  # 33 columns of 1000 px
    region, kind = ts.getRegion(
        region={"left": 10000, "top": 10000, "width": 1000, "height": 1000, "units": "base_pixels"},
        format=compat.TILE_FORMAT_NUMPY,
    )
    assert region.shape == (1000, 1000, 4)
    assert kind == "numpy"
    assert ts.convertRegionScale(
        sourceRegion=_square_in_mag_pixels(5000, 1000),
        sourceScale={"magnification": 20},
        targetScale={"magnification": 10},
        targetUnits="mag_pixels",
    ) == {"height": 500.0, "left": 2500.0, "top": 2500.0, "units": "mag_pixels", "width": 500.0}
    image, _ = ts.getRegionAtAnotherScale(
        sourceRegion=_square_in_mag_pixels(5000, 10000),
        sourceScale={"magnification": 20},
        targetScale={"magnification": 1.25},
        format=compat.TILE_FORMAT_NUMPY,
    )
    assert image.shape == (625, 625, 4)


HISTOGRAMS = [
    {"scale": {"magnification": 2.5}},
    {"scale": {"magnification": 1.25}, "range": "round", "bins": 64},
    {"scale": {"magnification": 5}, "onlyMinMax": True},
    {"region": {"left": 100, "top": 100, "width": 600, "height": 400}, "density": True},
]


@pytest.mark.parametrize("kwargs", HISTOGRAMS)
def test_histogram(synthetic: Path, kwargs) -> None:
    ours, theirs = _pair(synthetic)
    a, b = ours.histogram(**kwargs), theirs.histogram(**kwargs)
    assert set(a) == set(b)
    for key in ("min", "max", "mean", "stdev"):
        np.testing.assert_allclose(
            a[key], b[key], atol=0.05, err_msg=key
        )  # OpenSlide's interpolation at 1/16
    for mine, oracle in zip(a.get("histogram", []), b.get("histogram", []), strict=True):
        assert set(mine) == set(oracle)
        assert (mine["bins"], mine["range"], mine["samples"]) == (
            oracle["bins"],
            oracle["range"],
            oracle["samples"],
        )
        np.testing.assert_allclose(mine["bin_edges"], oracle["bin_edges"])
        np.testing.assert_allclose(
            mine["hist"], oracle["hist"], atol=0.002 if kwargs.get("density") else 30
        )


def test_histogram_on_real_slide_is_exact(real_slide) -> None:
    ours, theirs = _pair(real_slide("aperio/CMU-1-Small-Region.svs"))
    a, b = ours.histogram(), theirs.histogram()
    for key in ("min", "max", "mean", "stdev"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12)
    for mine, oracle in zip(a["histogram"], b["histogram"], strict=True):
        np.testing.assert_array_equal(mine["hist"], oracle["hist"])


def _rounded(value):
    """Floats to 12 significant digits, recursively: NDPI's mm comes from TIFF tags here and
    from OpenSlide's mpp string there, equal to the 16th digit."""
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return float(f"{value:.12g}") if isinstance(value, float) else value


def test_ndpi_against_large_image(real_slide) -> None:
    """OpenSlide also synthesises NDPI levels below 1/8; at the file's own levels all agree."""
    ours, theirs = _pair(real_slide("hamamatsu/test3-DAPI-2-(387).ndpi"))
    assert _rounded(ours.getMetadata()) == _rounded(theirs.getMetadata())
    for kwargs in (
        {"region": {"left": 100, "top": 200, "width": 1001, "height": 777}},
        {
            "region": {"left": 100, "top": 200, "width": 1001, "height": 777},
            "scale": {"magnification": 10},
        },
        {"scale": {"magnification": 7}},
        {"output": {"maxWidth": 256}},
    ):
        a, _ = ours.getRegion(format="numpy", **kwargs)
        b, _ = theirs.getRegion(format="numpy", **kwargs)
        np.testing.assert_array_equal(a, b, err_msg=str(kwargs))
    a = list(
        ours.tileIterator(tile_size={"width": 512}, tile_overlap={"x": 32, "y": 32}, format="numpy")
    )
    b = list(
        theirs.tileIterator(
            tile_size={"width": 512}, tile_overlap={"x": 32, "y": 32}, format="numpy"
        )
    )
    assert [_rounded(_without_pixels(t)) for t in a] == [_rounded(_without_pixels(t)) for t in b]
    np.testing.assert_array_equal(a[7]["tile"], b[7]["tile"])


@settings(deadline=None, max_examples=40)
@given(
    left=st.integers(0, 4000),
    top=st.integers(0, 3000),
    width=st.integers(1, 900),
    height=st.integers(1, 600),
    magnification=st.sampled_from([20, 10, 5, 2.5, 1.25, 7.0, 13.3]),
)
def test_region_scale_round_trip(synthetic: Path, left, top, width, height, magnification) -> None:
    """base pixels → mag_pixels at any scale → base pixels gives the region back."""
    ts = compat.open(synthetic)
    region = {"left": left, "top": top, "width": width, "height": height}
    at_scale = ts.convertRegionScale(
        region, targetScale={"magnification": magnification}, targetUnits="mag_pixels"
    )
    back = ts.convertRegionScale(
        at_scale, sourceScale={"magnification": magnification}, targetUnits="base_pixels"
    )
    right, bottom = min(left + width, 5000), min(top + height, 3700)
    assert back["left"] == pytest.approx(left, abs=0.5)
    assert back["top"] == pytest.approx(top, abs=0.5)
    assert back["left"] + back["width"] == pytest.approx(right, abs=0.5)
    assert back["top"] + back["height"] == pytest.approx(bottom, abs=0.5)


def test_tile_resampling_filters_match(synthetic: Path) -> None:
    from PIL import Image as PILImage

    ours, theirs = _pair(synthetic)
    for resample in (True, PILImage.Resampling.BOX, None):
        kwargs = {
            "scale": {"magnification": 7},
            "tile_size": {"width": 256},
            "tile_position": 5,
            "resample": resample,
        }
        a = ours.getSingleTile(format=compat.TILE_FORMAT_NUMPY, **kwargs)
        b = theirs.getSingleTile(format=large_image.constants.TILE_FORMAT_NUMPY, **kwargs)
        assert _without_pixels(a) == _without_pixels(b)
        assert a["tile"].shape == b["tile"].shape
        assert np.abs(a["tile"].astype(int) - b["tile"].astype(int)).max() <= 2


# -- the pure planners --------------------------------------------------------------------

#: The synthetic slide as large_image's OpenSlide source sees it (its ``_svslevels``): six
#: virtual levels; 2 and 4 have no file level of their own and read the next finer at scale 2.
SYNTHETIC_PYRAMID = Pyramid(
    size_x=5000,
    size_y=3700,
    tile_width=240,
    tile_height=240,
    levels=6,
    reads=tuple(LevelRead(*r) for r in ((3, 1), (2, 1), (1, 2), (1, 1), (0, 2), (0, 1))),
)
SYNTHETIC_NATIVE = {"magnification": 20.0, "mm_x": 0.000499, "mm_y": 0.000499}
WHOLE = RegionPlan(
    0, 0, 5000, 3700, level=5, output_width=5000, output_height=3700, requested_scale=1.0
)


def test_pyramid_of_the_synthetic_slide(synthetic: Path) -> None:
    shapes = ((3700, 5000), (925, 1250), (231, 312), (115, 156))
    assert Pyramid.of(shapes, (240, 240)) == SYNTHETIC_PYRAMID
    assert compat.open(synthetic).pyramid == SYNTHETIC_PYRAMID
    assert [SYNTHETIC_PYRAMID.preferred_level(z) for z in range(6)] == [0, 1, 3, 3, 5, 5]


CROPPED = {"left": 100, "top": 200, "width": 1001, "height": 777}
REGION_PLANS = [  # the semantics page's verified numbers (1.4-1.6)
    (
        {"region": CROPPED, "scale": {"magnification": 10}},  # 1001 x 777 at 10x: 500 x 388
        RegionPlan(100, 200, 1101, 977, 5, 500, 388, 2.0),
    ),
    (
        {"region": CROPPED, "scale": {"magnification": 7}},  # no real 10x level: read at 20x
        RegionPlan(100, 200, 1101, 977, 5, 350, 271, pytest.approx(2**1.5146)),
    ),
    (
        {"region": CROPPED, "scale": {"mm_x": 0.0015}},
        RegionPlan(100, 200, 1101, 977, 5, 332, 258, pytest.approx(2**1.5879)),
    ),
    ({"region": {"left": -500, "top": -400}}, RegionPlan(4500, 3300, 5000, 3700, 5, 500, 400, 1.0)),
    (
        {"output": {"maxWidth": 400, "maxHeight": 100}},
        RegionPlan(0, 0, 156, 115, 0, 135, 100, 1.15625),
    ),
    ({"scale": {"magnification": 7, "exact": True}}, None),
]


@pytest.mark.parametrize(("kwargs", "expected"), REGION_PLANS)
def test_region_plans(kwargs, expected) -> None:
    assert plan_region(SYNTHETIC_PYRAMID, SYNTHETIC_NATIVE, kwargs) == expected


def test_tile_grid_plans() -> None:
    """large_image's docstring example (8 px, tiles of 5 overlapping by 4) and the semantics
    page's (5000 px, 512 overlapping by 64: 12 columns, the last 72 px wide)."""
    eight = RegionPlan(0, 0, 8, 8, level=5, output_width=8, output_height=8, requested_scale=1.0)
    for edges, lefts, widths in (
        (False, [0, 1, 2, 3], [5, 5, 5, 5]),
        (True, [0, 0, 0, 1, 2, 3, 4, 5], [3, 4, 5, 5, 5, 5, 4, 3]),
    ):
        options = {"tile_size": {"width": 5}, "tile_overlap": {"x": 4, "edges": edges}}
        grid = plan_tile_grid(eight, 240, 240, options, resampled=False)
        boxes = [tile_box(eight, grid, x, 0) for x in range(grid.x.start, grid.x.stop)]
        assert [box[0] for box in boxes] == lefts
        assert [box[2] for box in boxes] == widths
    options = {"tile_size": {"width": 512}, "tile_overlap": {"x": 64}}
    grid = plan_tile_grid(WHOLE, 240, 240, options, resampled=False)
    assert grid == TileGridPlan(GridAxis(448, 64, 32, 64, 0, 12), GridAxis(512, 0, 0, 0, 0, 8))
    assert tile_box(WHOLE, grid, 11, 0) == (4928, 0, 72, 512)
    options = {"tile_size": {"width": 300}, "tile_offset": {"left": 7, "top": 3}}
    region = RegionPlan(1000, 1000, 2000, 2000, 5, 1000, 1000, 1.0)
    grid = plan_tile_grid(region, 240, 240, options, resampled=False)
    assert grid == TileGridPlan(GridAxis(300, 0, 7, 0, 3, 7), GridAxis(300, 0, 3, 0, 3, 7))
    resampled = RegionPlan(0, 0, 5000, 3700, 5, 1749, 1294, 2**1.5146)  # 7x: tiles of 256 * 2.857
    grid = plan_tile_grid(resampled, 240, 240, {"tile_size": {"width": 256}}, resampled=True)
    assert (grid.x.stride, grid.columns, grid.rows) == (732, 7, 6)
    with pytest.raises(ValueError, match="Invalid tile_size or tile_overlap"):
        plan_tile_grid(WHOLE, 240, 240, {"tile_overlap": {"x": 240}}, resampled=False)


def test_fit_size() -> None:
    """``_calculateWidthHeight``: truncated, aspect kept, one missing side 16 times the other."""
    assert fit_size(300, None, 5000, 3700) == (300, 222, 5000 / 300)
    assert fit_size(400, 100, 156, 115) == (135, 100, 1.15)
    assert fit_size(None, None, 1001, 777) == (1001, 777, 1.0)
    assert fit_size(10, 10, 0, 5) == (0, 0, 1.0)


def _our_plans(ours: compat.TileSource, kwargs) -> tuple[RegionPlan, TileGridPlan] | None:
    region = plan_region(ours.pyramid, ours.getNativeMagnification(), kwargs)
    if region is None:
        return None
    resampled = round(region.requested_scale, 2) != 1.0
    return region, plan_tile_grid(
        region, ours.tileWidth, ours.tileHeight, kwargs, resampled=resampled
    )


def _their_plans(theirs, kwargs) -> tuple[RegionPlan, TileGridPlan] | None:
    """large_image's plan (``TileIterator.info``) as the planners' dataclasses."""
    info = theirs.tileIterator(**kwargs).info
    if info is None:
        return None
    r, size, overlap = info["region"], info["tile_size"], info["tile_overlap"]
    region = RegionPlan(
        r["left"],
        r["top"],
        r["right"],
        r["bottom"],
        info["level"],
        info["output"]["width"],
        info["output"]["height"],
        info["requestedScale"],
    )
    axes = [
        GridAxis(
            size[length],
            overlap[axis],
            overlap[f"offset_{axis}"],
            overlap[f"range_{axis}"],
            info[f"{axis}min"],
            info[f"{axis}max"],
        )
        for axis, length in (("x", "width"), ("y", "height"))
    ]
    assert [overlap[k] for k in ("xmin", "xmax", "ymin", "ymax")] == [
        info[k] for k in ("xmin", "xmax", "ymin", "ymax")
    ]
    return region, TileGridPlan(*axes)


@pytest.mark.parametrize("kwargs", REGIONS + TILINGS)
def test_plans_match_large_image(synthetic: Path, kwargs) -> None:
    ours, theirs = _pair(synthetic)
    assert _our_plans(ours, kwargs) == _their_plans(theirs, kwargs)
