"""ICC profiles: exposed, converted to sRGB on request, and compat converting as large_image does.

The test slide is written by libvips (pyvips) with its built-in Display P3 profile embedded:
P3 values differ from sRGB by up to ~120 levels, so a missed conversion cannot pass.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

import wsiarray as wa
from wsiarray.compat import large_image as compat
from wsiarray.sources import source_cache

pyvips = pytest.importorskip("pyvips", reason="pyvips (a test dependency) writes the P3 slide")


@pytest.fixture(scope="module")
def p3_slide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 3-level libvips pyramid (deflate, 128-px tiles) with a Display P3 profile."""
    path = tmp_path_factory.mktemp("colour") / "p3.tif"
    pixels = np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    image = pyvips.Image.new_from_array(pixels).copy(interpretation="srgb")
    image.tiffsave(
        str(path),
        tile=True,
        pyramid=True,
        tile_width=128,
        tile_height=128,
        compression="deflate",
        profile="p3",
    )
    return path, pixels


def _to_srgb(pixels: np.ndarray, profile: bytes) -> np.ndarray:
    transform = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(profile)),
        ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")),
        "RGB",
        "RGB",
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
    )
    return np.asarray(transform.apply(Image.fromarray(pixels)))


def test_profile_exposed_and_pixels_stored_by_default(p3_slide: tuple[Path, np.ndarray]) -> None:
    path, pixels = p3_slide
    slide = wa.open(path)
    with tifffile.TiffFile(path) as tif:
        assert slide.icc_profile == bytes(tif.pages[0].tags["InterColorProfile"].value)
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(slide.icc_profile)))
    np.testing.assert_array_equal(slide.read(0, 0, 800, 600), pixels)
    assert wa.open(path, reader="openslide").icc_profile == slide.icc_profile


def test_to_srgb_on_every_level(p3_slide: tuple[Path, np.ndarray]) -> None:
    path, _ = p3_slide
    stored, srgb = wa.open(path), wa.open(path, to_srgb=True)
    assert srgb.icc_profile != stored.icc_profile
    assert "sRGB" in ImageCms.getProfileDescription(
        ImageCms.ImageCmsProfile(io.BytesIO(srgb.icc_profile))
    )
    # against libvips' own conversion (its littleCMS settings round a few pixels apart)
    vips = np.asarray(pyvips.Image.new_from_file(str(path)).icc_transform("srgb"))
    converted = srgb.image(level=0, chunks=128).values
    assert np.abs(converted.astype(int) - vips).max() <= 1
    assert np.mean(converted != vips) < 0.02
    assert np.abs(converted.astype(int) - stored.image(level=0).values).max() > 60
    for level in range(len(srgb.level_shapes)):
        expected = _to_srgb(stored.image(level=level).values, stored.icc_profile)
        np.testing.assert_array_equal(srgb.image(level=level, chunks=128).values, expected)
        np.testing.assert_array_equal(
            srgb.read(37, 21, 90, 70, level=level), expected[21:91, 37:127]
        )
    # a worker reopens the slide from the spec its graph carries: still converted
    source_cache.clear()
    np.testing.assert_array_equal(srgb.read(0, 0, 800, 600), converted)


def test_compat_converts_as_large_image_does(p3_slide: tuple[Path, np.ndarray]) -> None:
    large_image = pytest.importorskip("large_image")
    path, _ = p3_slide
    region = {"left": 130, "top": 70, "width": 300, "height": 200}
    reference = large_image.open(str(path))
    assert reference.getICCProfiles()  # large_image sees the profile and converts by default
    for style in (None, {"icc": False}):
        theirs, _ = large_image.open(str(path), style=style).getRegion(
            region=region, format=large_image.constants.TILE_FORMAT_NUMPY
        )
        ours, _ = compat.open(path, style=style).getRegion(
            region=region, format=compat.TILE_FORMAT_NUMPY
        )
        np.testing.assert_array_equal(ours[..., :3], theirs[..., :3])


def test_to_srgb_refused_for_grey(tmp_path: Path) -> None:
    path = tmp_path / "grey.tif"
    grey = pyvips.Image.new_from_array(np.zeros((64, 64), np.uint8)).copy(interpretation="b-w")
    grey.tiffsave(str(path), tile=True, tile_width=64, tile_height=64, profile="p3")
    if wa.open(path).icc_profile is None:
        pytest.skip("libvips embedded no profile in a grey image")
    with pytest.raises(wa.OptionError, match="8-bit RGB"):
        wa.open(path, to_srgb=True)


def test_no_profile_served_unchanged(sample_svs: Path) -> None:
    slide = wa.open(sample_svs, to_srgb=True)
    assert slide.icc_profile is None
    np.testing.assert_array_equal(
        slide.read(10, 20, 64, 48), wa.open(sample_svs).read(10, 20, 64, 48)
    )


def test_xarray_engine_converts_on_request(p3_slide: tuple[Path, np.ndarray]) -> None:
    import xarray as xr

    path, pixels = p3_slide
    stored = xr.open_dataset(path, engine="wsiarray")
    np.testing.assert_array_equal(stored.image.values, pixels)
    converted = xr.open_dataset(path, engine="wsiarray", to_srgb=True)
    np.testing.assert_array_equal(
        converted.image.values, wa.open(path, to_srgb=True).image(level=0).values
    )
