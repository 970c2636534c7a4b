"""The DataTree: chunks, coordinates, attrs, laziness and pickling."""

from __future__ import annotations

import numpy as np
import pytest

import wsiarray as wa

NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"
SVS = "aperio/CMU-1-Small-Region.svs"


def test_chunks_are_multiples_of_the_native_tile_and_few_tasks(real_slide) -> None:
    slide = wa.open(real_slide(NDPI))
    image = slide.image(0)
    rows, cols = image.chunks[0], image.chunks[1]
    assert all(r % 8 == 0 for r in rows[:-1])
    assert cols == (3968,)
    assert image.data.npartitions == 2  # 4864 rows → 3072 + 1792, not 608 strips


def test_user_chunks(real_slide) -> None:
    image = wa.open(real_slide(SVS), chunks=1000).image(0)
    assert image.chunks[0][0] == 960
    assert image.chunks[1][0] == 960


def test_root_attrs(real_slide) -> None:
    slide = wa.open(real_slide(SVS))
    attrs = slide.tree.attrs
    assert attrs["format"] == "aperio"
    assert attrs["reader"] == "tifffile"
    assert attrs["mm_x"] == pytest.approx(0.000499)
    assert attrs["magnification"] == 20.0
    assert attrs["magnification_derived"] is False
    assert attrs["background_color"] == "#ffffff"
    assert attrs["properties"]["aperio.AppMag"] == "20"
    assert all(isinstance(v, str) for v in attrs["properties"].values())


def test_level_attrs_and_coordinates_on_a_pyramid(real_slide) -> None:
    slide = wa.open(real_slide(NDPI))
    level2 = slide.tree["level2"]
    assert level2.attrs["level"] == 2
    assert level2.attrs["downsample_x"] == 4.0
    assert level2.attrs["magnification"] == 10.0
    assert level2.attrs["mm_x"] == pytest.approx(4 * slide.mm_x)
    # pixel centres of level 2 sit at the centres of the 4x4 base blocks they cover
    x0 = slide.image(0).x.values
    x2 = level2.image.x.values
    np.testing.assert_allclose(x2[:3], [x0[0:4].mean(), x0[4:8].mean(), x0[8:12].mean()])


def test_selection_by_millimetres(real_slide) -> None:
    slide = wa.open(real_slide(SVS))
    image = slide.image(0)
    block = image.sel(x=slice(0.1, 0.2), y=slice(0.3, 0.4))
    # pixel i's centre is at (i + 0.5) * mm: the first and last centres inside the interval
    first_x, last_x = np.ceil(0.1 / slide.mm_x - 0.5), np.floor(0.2 / slide.mm_x - 0.5)
    first_y, last_y = np.ceil(0.3 / slide.mm_y - 0.5), np.floor(0.4 / slide.mm_y - 0.5)
    expected = image.isel(
        x=slice(int(first_x), int(last_x) + 1), y=slice(int(first_y), int(last_y) + 1)
    )
    assert block.shape == expected.shape == (201, 201, 3)
    np.testing.assert_array_equal(block.values, expected.values)


def test_associated_images_are_lazy_and_read_on_demand(real_slide) -> None:
    slide = wa.open(real_slide(SVS))
    label = slide.associated["label"]
    assert label.chunks is not None
    assert label.shape == (463, 387, 3)
    assert label.values.std() > 0
