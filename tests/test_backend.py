"""The xarray engine gives the same tree as the native API."""

from __future__ import annotations

from functools import partial

import pytest
import xarray as xr

import wsiarray as wa
from wsiarray.backend import WsiArrayBackendEntrypoint

NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"


@pytest.mark.parametrize(
    "opener",
    [wa.open_datatree, partial(xr.open_datatree, engine="wsiarray")],
    ids=["native", "engine"],
)
def test_engine_and_native_trees_are_identical(opener, real_slide) -> None:
    path = real_slide(NDPI)
    xr.testing.assert_identical(opener(path), wa.open_datatree(path))


def test_open_dataset_one_level(real_slide) -> None:
    path = real_slide(NDPI)
    level1 = xr.open_dataset(path, engine="wsiarray", group="level1")
    assert level1.image.shape == (2432, 1984, 3)
    assert level1.attrs["downsample_x"] == 2.0
    image = wa.open(path).image(1)
    xr.testing.assert_identical(level1.image, image.drop_attrs(deep=False))
    assert level1.attrs == image.attrs
    default = xr.open_dataset(path, engine="wsiarray")
    assert default.attrs["level"] == 0


def test_chunks_follow_the_preferred_whole_tile_chunking(real_slide) -> None:
    path = real_slide(NDPI)
    dataset = xr.open_dataset(path, engine="wsiarray", chunks={})
    assert dataset.image.chunks[0] == (3072, 1792)
    merged = xr.open_dataset(path, engine="wsiarray", chunks={"y": 8192})
    assert merged.image.chunks[0] == (4864,)


def test_open_groups(real_slide) -> None:
    groups = xr.open_groups(real_slide(NDPI), engine="wsiarray")
    assert {"/level0", "/level3", "/associated/macro"} <= set(groups)


def test_missing_group_names_the_ones_there(real_slide) -> None:
    with pytest.raises(wa.LevelError, match="has no group 'level9'"):
        xr.open_dataset(real_slide(NDPI), engine="wsiarray", group="level9")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.svs", True),
        ("b.NDPI", True),
        ("c.ome.tif", True),
        ("d.mrxs", True),
        ("plain.tif", False),
        ("e.nc", False),
    ],
)
def test_guess_can_open_by_suffix(name: str, expected: bool) -> None:
    assert WsiArrayBackendEntrypoint().guess_can_open(name) is expected


def test_guess_can_open_by_content(tmp_path, real_slide) -> None:
    import shutil

    import numpy as np
    import tifffile

    renamed = tmp_path / "slide.tif"
    shutil.copyfile(real_slide("aperio/CMU-1-Small-Region.svs"), renamed)
    plain = tmp_path / "photo.tif"
    tifffile.imwrite(plain, np.zeros((16, 16), np.uint8))
    entrypoint = WsiArrayBackendEntrypoint()
    assert entrypoint.guess_can_open(renamed) is True  # an Aperio file, whatever its name
    assert entrypoint.guess_can_open(plain) is False  # a plain TIFF belongs to rasterio
    assert entrypoint.guess_can_open(real_slide("ome-tiff/test_pyramid.ome.tif")) is True
