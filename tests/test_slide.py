"""The Slide: the image at any resolution, regions, patches, pickling, light imports."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest

import wsiarray as wa

NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"  # 40x, 0.228 µm/px, levels 1/2/4/8
SVS = "aperio/CMU-1-Small-Region.svs"  # 20x, one level


@pytest.fixture(scope="module")
def ndpi(real_slide) -> wa.Slide:
    return wa.open(real_slide(NDPI))


def test_level_at_a_file_magnification_is_that_level(ndpi: wa.Slide) -> None:
    image = ndpi.image(magnification=10)
    assert image.attrs["level"] == 2
    assert image.shape == (1216, 992, 3)
    assert image.data.name == ndpi.image(2).data.name  # the same dask array: no resampling


def test_level_by_mm(ndpi: wa.Slide) -> None:
    image = ndpi.image(mpp=ndpi.metadata.resolution.mpp[0] * 8)
    assert image.attrs["level"] == 3


def test_integer_factor_between_levels_is_a_block_mean(ndpi: wa.Slide) -> None:
    """2.5x is not a file level (they stop at 5x): level 3 averaged over 2 x 2 blocks."""
    image = ndpi.image(magnification=2.5)
    assert image.attrs["read_level"] == 3
    assert image.shape == (304, 248, 3)
    level3 = ndpi.image(3).values.astype(np.float64)
    expected = level3.reshape(304, 2, 248, 2, 3).mean(axis=(1, 3))
    assert np.abs(image.values - expected).max() <= 0.5 + 1e-6  # rounded to uint8
    assert image.attrs["magnification"] == pytest.approx(2.5)
    assert image.attrs["mm_x"] == pytest.approx(16 * ndpi.mm_x)
    np.testing.assert_allclose(image.x.values[:2], np.array([0.5, 1.5]) * 16 * ndpi.mm_x)


def test_non_integer_factor_is_seamless_across_chunks(real_slide) -> None:
    fine = wa.open(real_slide(NDPI), chunks=256).image(magnification=15)
    whole = wa.open(real_slide(NDPI), chunks=8192).image(magnification=15)
    assert fine.attrs["read_level"] == 1
    assert fine.attrs["downsample_x"] == pytest.approx(40 / 15)
    assert len(fine.chunks[0]) > 5
    assert len(whole.chunks[0]) == 1
    np.testing.assert_array_equal(fine.values, whole.values)
    # and the mean colour is the level's, up to rounding
    level1 = wa.open(real_slide(NDPI)).image(1).values.reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(fine.values.reshape(-1, 3).mean(axis=0), level1, atol=0.6)


def test_upsampling_is_explicit(ndpi: wa.Slide) -> None:
    with pytest.raises(wa.ScaleError, match="upsample=True"):
        ndpi.image(magnification=80)
    big = ndpi.image(magnification=80, upsample=True)
    assert big.shape == (9728, 7936, 3)
    np.testing.assert_array_equal(
        big[:4, :4].values, np.repeat(np.repeat(ndpi.image(0)[:2, :2].values, 2, 0), 2, 1)
    )


def test_region_base_pixels_equals_slicing(ndpi: wa.Slide) -> None:
    region = ndpi.region(1000, 2000, 300, 200)
    assert region.shape == (200, 300, 3)
    np.testing.assert_array_equal(region.values, ndpi.image(0)[2000:2200, 1000:1300].values)
    xr_coords = ndpi.image(0).x.values[1000:1300]
    np.testing.assert_array_equal(region.x.values, xr_coords)


def test_small_regions_read_directly_large_ones_through_dask(ndpi: wa.Slide) -> None:
    small = ndpi.region(0, 0, 256, 256)
    assert small.chunks is None  # xarray's lazy indexing: .values reads just these pixels
    large = ndpi.region(0, 0, 3968, 4864)
    assert large.chunks is not None


def test_region_in_mm_at_a_magnification(ndpi: wa.Slide) -> None:
    region = ndpi.region(0.5, 0.25, 0.2, 0.1, units="mm", magnification=10)
    pixel_mm = 4 * ndpi.mm_x
    assert region.shape[1] == pytest.approx(0.2 / pixel_mm, abs=1)
    assert region.x.values[0] <= 0.5 <= region.x.values[0] + pixel_mm
    np.testing.assert_array_equal(region.values, ndpi.image(2).sel(x=region.x, y=region.y).values)


def test_region_level_pixels_and_fraction(ndpi: wa.Slide) -> None:
    by_level = ndpi.region(10, 20, 30, 40, units="level_pixels", level=2)
    np.testing.assert_array_equal(by_level.values, ndpi.image(2)[20:60, 10:40].values)
    half = ndpi.region(0.5, 0.5, 0.5, 0.5, units="fraction", level=3)
    assert half.shape == (304, 248, 3)


def test_region_clipped_by_default_and_padded_on_request(ndpi: wa.Slide) -> None:
    clipped = ndpi.region(3900, 4800, 200, 200)
    assert clipped.shape == (64, 68, 3)
    padded = ndpi.region(3900, 4800, 200, 200, pad=True)
    assert padded.shape == (200, 200, 3)
    np.testing.assert_array_equal(padded.values[:64, :68], clipped.values)
    assert (padded.values[64:] == 255).all()
    assert (padded.values[:, 68:] == 255).all()
    np.testing.assert_allclose(padded.x.values[[0, -1]] / ndpi.mm_x, [3900.5, 4099.5])


def test_region_errors(ndpi: wa.Slide) -> None:
    with pytest.raises(wa.RegionError, match="outside the slide"):
        ndpi.region(5000, 5000, 10, 10)
    with pytest.raises(wa.RegionError, match="is empty"):
        ndpi.region(10, 10, 0, 5)
    with pytest.raises(wa.UnitError):
        ndpi.region(0, 0, 1, 1, units="furlong")
    outside = ndpi.region(5000, 5000, 10, 10, pad=True)
    assert (outside.values == 255).all()


def test_missing_mpp_refuses_physical_units(real_slide) -> None:
    slide = wa.open(real_slide("aperio/tcga-cr-7395-01a-01-ts1.svs"))
    with pytest.raises(wa.MissingResolutionError, match="pixel size is unknown"):
        slide.region(0, 0, 1, 1, units="mm")
    with pytest.raises(wa.MissingResolutionError, match="magnification is unknown"):
        slide.image(magnification=5)
    assert slide.region(0, 0, 10, 10).shape == (10, 10, 3)


def test_region_on_openslide_reader_equals_tifffile_reader(real_slide) -> None:
    path = real_slide(SVS)
    a = wa.open(path).region(500, 600, 700, 300, magnification=10)
    b = wa.open(path, reader="openslide").region(500, 600, 700, 300, magnification=10)
    np.testing.assert_array_equal(a.values, b.values)


def test_slide_pickles(real_slide) -> None:
    slide = wa.open(real_slide(SVS), chunks=1000)
    clone = pickle.loads(pickle.dumps(slide))
    assert clone.level_shapes == slide.level_shapes
    assert clone.image(0).chunks == slide.image(0).chunks
    np.testing.assert_array_equal(clone.image(0)[:50, :50].values, slide.image(0)[:50, :50].values)


def test_concurrent_reads_give_identical_pixels(real_slide) -> None:
    slide = wa.open(real_slide(NDPI), chunks=512)
    image = slide.image(0)
    with dask.config.set(scheduler="threads", num_workers=8):
        threaded = image.sum(("y", "x")).compute().values
    with dask.config.set(scheduler="synchronous"):
        serial = image.sum(("y", "x")).compute().values
    np.testing.assert_array_equal(threaded, serial)


def test_read_is_a_numpy_fast_path(tmp_path: Path, real_slide) -> None:
    slide = wa.open(real_slide(NDPI))
    patch = slide.read(1000, 2000, 256, 128, level=1)
    assert isinstance(patch, np.ndarray)
    np.testing.assert_array_equal(patch, slide.image(1)[2000:2128, 1000:1256].to_numpy())
    assert slide.read(1900, 0, 500, 10, level=1).shape == (10, 84, 3)  # clipped at the right edge
    with pytest.raises(wa.RegionError, match="outside level 1"):
        slide.read(5000, 0, 10, 10, level=1)


def test_importing_and_reading_a_patch_loads_no_xarray_dask_or_zarr(real_slide) -> None:
    script = (
        "import sys, wsiarray as wa\n"
        f"wa.open({str(real_slide(SVS))!r}).read(0, 0, 256, 256)\n"
        "print(sorted(m for m in ('xarray', 'dask', 'zarr', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_a_thumbnail_of_a_level_too_large_to_hold_is_reduced_chunk_by_chunk(
    real_slide, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a slide without a pyramid: its one level was read whole (3 bytes a pixel) and, over the
    # pixel budget, refused. Here CMU-1-Small-Region (one level, 2220 x 2967) stands for one,
    # with the direct-read size and the budget lowered below it
    import tracemalloc

    from wsiarray import geometry
    from wsiarray import slide as slide_module

    slide = wa.open(real_slide("aperio/CMU-1-Small-Region.svs"), chunks=256)
    assert slide.level_count == 1
    whole = slide.thumbnail(256)  # read whole: the level is small enough
    monkeypatch.setattr(slide_module, "DIRECT_READ_PIXELS", 512 * 512)
    monkeypatch.setattr(geometry, "MAX_PIXELS", 1000 * 1000)
    tracemalloc.start()
    try:
        with dask.config.set(scheduler="synchronous"):
            chunked = slide.thumbnail(256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert chunked.shape == whole.shape == (256, 192, 3)
    # block means over 5 x 5 (the 2 rows past the last whole block left out), then Lanczos:
    # Pillow's reduce and resize of those blocks, within its reduce's rounding
    from PIL import Image

    level = np.asarray(slide.image(0).values)[:2965]
    blocks = Image.fromarray(level).reduce(5).resize((192, 256), Image.Resampling.LANCZOS)
    assert np.abs(chunked.astype(int) - np.asarray(blocks, dtype=int)).max() <= 1
    # and close to the Lanczos of the whole level (mean 1.24; Pillow's own reducing_gap=2,
    # which reduces the same way, differs from it by 0.53)
    assert np.abs(chunked.astype(int) - whole.astype(int)).mean() < 2
    # never the whole level (19.8 MB): a chunk's read, its mean and the small image
    assert peak < 2220 * 2967 * 3 / 4
