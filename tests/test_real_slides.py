"""Every real slide in ../shared/testdata opens with the right geometry and metadata, or is
refused with a specific error; pixels agree with OpenSlide and tifffile."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import openslide
import pytest
import tifffile

import wsiarray as wa

pytestmark = pytest.mark.compat


@dataclass(frozen=True)
class Expected:
    path: str
    format: str
    reader: str
    levels: tuple[tuple[int, int], ...]  # (height, width)
    mm: float | None
    magnification: float | None
    derived: bool = False
    associated: tuple[str, ...] = ()
    channels: tuple[str, ...] = ("R", "G", "B")
    openslide_reads: bool = True
    tile: tuple[int, int] = field(default=(0, 0))


SLIDES = [
    Expected(
        "aperio/CMU-1-Small-Region.svs",
        "aperio",
        "tifffile",
        ((2967, 2220),),
        0.000499,
        20.0,
        associated=("label", "macro", "thumbnail"),
        tile=(240, 240),
    ),
    Expected(
        "aperio/tcga-cr-7395-01a-01-ts1.svs",
        "aperio",
        "tifffile",
        ((3567, 4443), (1783, 2221)),
        None,
        None,
        associated=("thumbnail",),
        tile=(256, 256),
    ),
    Expected(
        "hamamatsu/test3-DAPI-2-(387).ndpi",
        "hamamatsu",
        "tifffile",
        ((4864, 3968), (2432, 1984), (1216, 992), (608, 496)),
        0.0002281750559028887,
        40.0,
        associated=("macro", "map"),
        tile=(8, 3968),
    ),
    Expected(
        "hamamatsu/test3-TRITC 2 (560).ndpi",
        "hamamatsu",
        "tifffile",
        ((4864, 3968), (2432, 1984), (1216, 992), (608, 496)),
        0.0002281750559028887,
        40.0,
        associated=("macro", "map"),
        tile=(8, 3968),
    ),
    Expected(
        "dicom/multiframe_camelyon_challenge_image.dcm",
        "dicom",
        "openslide",
        ((700, 1152),),
        0.028969,
        0.01 / 0.028969,
        derived=True,
        tile=(256, 256),
    ),
    Expected(
        "ome-tiff/OS-2-ndpi.ome.tif",
        "ome-tiff",
        "tifffile",
        ((2202, 2202),),
        0.0002270972430394695,
        0.01 / 0.0002270972430394695,
        derived=True,
        openslide_reads=False,
        tile=(512, 512),
    ),
    Expected(
        "ome-tiff/test_pyramid.ome.tif",
        "ome-tiff",
        "tifffile",
        ((16, 16), (8, 8), (4, 4)),
        None,
        None,
        channels=("L",),
        openslide_reads=False,
    ),
    Expected(
        "qptiff/small_vectra.qptiff",
        "qptiff",
        "tifffile",
        ((1440, 1920),),
        0.000496503,
        20.14,
        derived=True,
        associated=("thumbnail",),
        channels=("DAPI", "FITC", "Cy3"),
        openslide_reads=False,
    ),
]


def _cases(keep: object = lambda s: True) -> list[object]:
    """Parametrize over the slides ``keep`` selects, named by file."""
    return [pytest.param(s, id=s.path.split("/")[-1]) for s in SLIDES if keep(s)]  # type: ignore[operator]


TIFFFILE = _cases(lambda s: s.reader == "tifffile")
OPENSLIDE = _cases(lambda s: s.openslide_reads)
BOTH = _cases(lambda s: s.openslide_reads and s.reader == "tifffile")
WITH_ASSOCIATED = _cases(lambda s: s.openslide_reads and s.associated)


@pytest.fixture
def case(request: pytest.FixtureRequest, real_slide) -> tuple[Expected, wa.Slide]:
    expected: Expected = request.param
    return expected, wa.open(real_slide(expected.path))


def _over(cases: list[object]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", cases, indirect=True)


@_over(_cases())
def test_geometry_and_metadata(case: tuple[Expected, wa.Slide]) -> None:
    expected, slide = case
    assert slide.metadata.format == expected.format
    assert slide.metadata.reader == expected.reader
    assert slide.level_shapes == expected.levels
    assert slide.metadata.channels == expected.channels
    if expected.mm is None:
        assert slide.mm_x is None
        assert slide.mm_y is None
    else:
        assert slide.mm_x == pytest.approx(expected.mm, rel=1e-3)
        assert slide.mm_y == pytest.approx(expected.mm, rel=1e-3)
    if expected.magnification is None:
        assert slide.magnification is None
    else:
        assert slide.magnification == pytest.approx(expected.magnification, rel=1e-3)
    assert slide.metadata.magnification_derived is expected.derived
    assert sorted(slide.associated) == sorted(expected.associated)
    if expected.tile != (0, 0):
        attrs = slide.tree["level0"].attrs
        assert (attrs["tile_height"], attrs["tile_width"]) == expected.tile


@_over(_cases())
def test_levels_are_lazy_dask_arrays_with_mm_coordinates(case: tuple[Expected, wa.Slide]) -> None:
    expected, slide = case
    base_h, base_w = expected.levels[0]
    for level, (height, width) in enumerate(expected.levels):
        node = slide.tree[f"level{level}"]
        image = node["image"]
        assert image.dims == ("y", "x", "c")
        assert image.shape == (height, width, len(expected.channels))
        assert image.chunks is not None  # dask-backed
        assert node.attrs["downsample_x"] == base_w / width
        assert node.attrs["downsample_y"] == base_h / height
        if expected.mm is not None:
            assert image.x.attrs["units"] == "mm"
            np.testing.assert_allclose(
                image.x[:2], np.array([0.5, 1.5]) * slide.mm_x * base_w / width
            )
            np.testing.assert_allclose(image.y[-1], (height - 0.5) * slide.mm_y * base_h / height)
        else:
            assert image.x.attrs["units"] == "base_pixels"


@_over(TIFFFILE)
def test_pixels_equal_tifffile(case: tuple[Expected, wa.Slide]) -> None:
    _expected, slide = case
    with tifffile.TiffFile(slide.path) as tif:
        series = max(
            (s for s in tif.series if s.name.lower() not in {"label", "macro", "thumbnail", "map"}),
            key=lambda s: s.levels[0].size,
        )
        for level in range(slide.level_count):
            direct = series.levels[level].asarray()
            if series.levels[level].axes == "CYX":
                direct = np.moveaxis(direct, 0, -1)
            elif direct.ndim == 2:
                direct = direct[..., np.newaxis]
            np.testing.assert_array_equal(slide.image(level).values, direct)


def _regions(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Top-left corner, an interior block crossing tile borders, and the bottom-right edge."""
    return [
        (0, 0, min(300, height), min(300, width)),
        (height // 3, width // 3, min(517, height - height // 3), min(411, width - width // 3)),
        (max(0, height - 257), max(0, width - 263), min(257, height), min(263, width)),
    ]


@_over(OPENSLIDE)
def test_pixels_equal_openslide(case: tuple[Expected, wa.Slide]) -> None:
    """Same decoder (libjpeg-turbo / OpenJPEG) on both sides: pixels must be identical.

    Exception: where a level's downsample is not an integer (tcga level 1 is 2.0005), OpenSlide
    places a level pixel at a fractional base position and interpolates, so only the origin,
    where both agree exactly, is compared there.
    """
    _expected, slide = case
    osr = openslide.OpenSlide(slide.path)
    for level in range(slide.level_count):
        downsample = osr.level_downsamples[level]
        height, width = slide.level_shapes[level]
        regions = _regions(height, width)
        if downsample != int(downsample):
            regions = regions[:1]
        for y0, x0, h, w in regions:
            ours = slide.image(level)[y0 : y0 + h, x0 : x0 + w].values
            location = (math.ceil(x0 * downsample), math.ceil(y0 * downsample))
            theirs = np.asarray(osr.read_region(location, level, (w, h)))[..., :3]
            np.testing.assert_array_equal(ours, theirs, err_msg=f"level {level} at y={y0}, x={x0}")


@_over(BOTH)
def test_openslide_reader_matches_tifffile_reader(case: tuple[Expected, wa.Slide]) -> None:
    """Both readers on the same file give the same levels, metadata and pixels."""
    _expected, slide = case
    other = wa.open(slide.path, reader="openslide")
    assert other.metadata.reader == "openslide"
    assert other.mm_x == pytest.approx(slide.mm_x) if slide.mm_x else other.mm_x is None
    assert other.magnification == slide.magnification
    # OpenSlide synthesises extra NDPI levels by JPEG scale-down; the file's own ones come first
    assert other.level_shapes[: slide.level_count] == slide.level_shapes
    for level in range(slide.level_count):
        if slide.level_downsamples[level][1] != int(slide.level_downsamples[level][1]):
            continue
        height, width = slide.level_shapes[level]
        y0, x0, h, w = _regions(height, width)[1]
        np.testing.assert_array_equal(
            other.image(level)[y0 : y0 + h, x0 : x0 + w].values,
            slide.image(level)[y0 : y0 + h, x0 : x0 + w].values,
        )


@_over(WITH_ASSOCIATED)
def test_associated_images_equal_openslide(case: tuple[Expected, wa.Slide]) -> None:
    _expected, slide = case
    osr = openslide.OpenSlide(slide.path)
    for name, image in slide.associated.items():
        if name not in osr.associated_images:
            continue  # tifffile also lists NDPI's "map", which OpenSlide ignores
        theirs = np.asarray(osr.associated_images[name].convert("RGB"))
        assert image.shape == theirs.shape
        difference = np.abs(image.values.astype(int) - theirs.astype(int))
        # Label images are LZW (exact); JPEG ones are decoded by different code paths
        assert difference.mean() < 1.0, name


@_over(_cases())
def test_whole_level_mean_matches_numpy(case: tuple[Expected, wa.Slide]) -> None:
    _, slide = case
    level = slide.level_count - 1
    image = slide.image(level)
    expected = image.values.reshape(-1, image.shape[2]).mean(axis=0)
    np.testing.assert_allclose(image.mean(("y", "x")).compute().values, expected)


def test_dicom_folder_opens_and_openslide_says_why_it_cannot(real_slide) -> None:
    """The dicom reader reads the BPAEC folder, or the series of any of its instances;
    OpenSlide 4.0.1 cannot open them (PlanarConfiguration is absent) and says so."""
    folder = real_slide("dicom/BPAEC")
    slide = wa.open(folder)
    assert slide.metadata.reader == "dicom"
    assert wa.open(folder / "5_0").level_shapes == slide.level_shapes
    with pytest.raises(wa.UnsupportedFormatError, match="PlanarConfiguration"):
        wa.open(folder / "5_0", reader="openslide")
