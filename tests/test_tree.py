"""The DataTree: chunks, coordinates, attrs, laziness and pickling."""

from __future__ import annotations

import pickle
import time
import tracemalloc

import numpy as np
import pytest
import xarray as xr
from dask.base import tokenize

import wsiarray as wa
from wsiarray.geometry import ScalePlan
from wsiarray.sources import LevelInfo, PlaneAxis, SlideMetadata, SourceSpec
from wsiarray.tree import PixelCentresIndex, build_tree, image_at

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


def _declared(
    shape: tuple[int, int], planes: tuple[PlaneAxis, ...] = ()
) -> tuple[SourceSpec, SlideMetadata]:
    """A slide that only exists as metadata (nothing is read while a tree is built)."""
    meta = SlideMetadata(
        format="ome-tiff",
        reader="tifffile",
        levels=(LevelInfo(shape, (512, 512)),),
        dtype="uint8",
        channels=("R", "G", "B"),
        mm_x=0.00025,
        mm_y=0.0005,
        planes=planes,
    )
    return SourceSpec("/nowhere/declared.ome.tif", "tifffile"), meta


def test_coordinates_of_a_huge_declared_level_cost_no_memory() -> None:
    # a fuzzed OME-TIFF declared a level 2**31 - 1 wide: its coordinates asked for 16 GiB
    spec, meta = _declared((2**31, 2**31 - 1))
    tracemalloc.start()
    try:
        image = image_at(spec, meta, ScalePlan.of_level(meta.level_shapes, 0), dask=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # measured 0.3 MB (coordinates stored: 32 GiB)
    assert isinstance(image.xindexes["x"], PixelCentresIndex)
    assert image.x[-1].item() == (2**31 - 2 + 0.5) * 0.00025
    tail = image.isel(x=slice(-3, None), y=slice(2**30, 2**30 + 2))
    np.testing.assert_array_equal(tail.x.values, (np.arange(2**31 - 4, 2**31 - 1) + 0.5) * 0.00025)
    np.testing.assert_array_equal(tail.y.values, (np.arange(2**30, 2**30 + 2) + 0.5) * 0.0005)
    far = image.sel(x=1e9, y=[-5.0, 0.00074], method="nearest")
    assert far.x.item() == (2**31 - 2 + 0.5) * 0.00025
    np.testing.assert_array_equal(far.y.values, [0.00025, 0.00075])


def test_coordinates_are_pixel_centres_bit_for_bit(real_slide) -> None:
    # one definition everywhere: pixel i's centre is (i + 0.5) * pixel size, exactly, in the
    # image, in any slice of it (of a slice, strided) and in a padded region
    slide = wa.open(real_slide(NDPI))
    for level in (0, 2):
        image = slide.image(level)
        step_x, step_y = slide.mm_x * 2**level, slide.mm_y * 2**level
        centres = (np.arange(image.sizes["x"]) + 0.5) * step_x
        np.testing.assert_array_equal(image.x.values, centres)
        np.testing.assert_array_equal(image.y.values, (np.arange(image.sizes["y"]) + 0.5) * step_y)
        part = image.isel(x=slice(100, 900)).isel(x=slice(7, None, 3))
        assert isinstance(part.xindexes["x"], PixelCentresIndex)
        np.testing.assert_array_equal(part.x.values, centres[100:900][7::3])
        np.testing.assert_array_equal(image.isel(x=[5, 3, 700]).x.values, centres[[5, 3, 700]])
    padded = slide.region(3900, 4800, 200, 200, pad=True)  # coordinates made for the window
    np.testing.assert_array_equal(padded.x.values, (np.arange(3900, 4100) + 0.5) * slide.mm_x)
    np.testing.assert_array_equal(padded.y.values, (np.arange(4800, 5000) + 0.5) * slide.mm_y)


def _selections(x: xr.DataArray) -> list[tuple[object, dict[str, object]]]:
    """Label selections along ``x``: exact, slices, nearest, tolerance, pad, outside."""
    v, step = x.values, float(x.values[1] - x.values[0])
    return [
        (v[5], {}),
        (v[5] + step / 10, {}),  # not a label: KeyError
        (v[[3, 0, 17]], {}),
        (xr.DataArray(v[[4, 9]], dims="points"), {}),
        (slice(v[3], v[40]), {}),
        (slice(v[3] - step / 3, v[40] + step / 3), {}),
        (slice(None, v[10]), {}),
        (slice(v[-10], None), {}),
        (slice(v[40], v[3]), {}),  # reversed: empty
        (slice(-1.0, 1e9), {}),
        (slice(1e9, 2e9), {}),
        (slice(v[3], v[40], 4), {}),
        (v[7] + step / 2, {"method": "nearest"}),  # a tie between two pixels
        (v[7] + 0.4 * step, {"method": "nearest"}),
        (np.array([-1.0, v[2], 1e9]), {"method": "nearest"}),
        (v[7] + 0.4 * step, {"method": "nearest", "tolerance": step / 2}),
        (v[7] + 0.4 * step, {"method": "nearest", "tolerance": step / 10}),  # KeyError
        (v[7] + 0.4 * step, {"method": "pad"}),
        (v[7] + 0.4 * step, {"method": "backfill"}),
        (1e9, {"method": "pad"}),
        (np.nan, {}),
    ]


def test_selection_by_label_is_pandas_selection_over_the_same_values(real_slide) -> None:
    x = wa.open(real_slide(NDPI)).image(2).x
    assert isinstance(x.xindexes["x"], PixelCentresIndex)
    stored = xr.DataArray(x.values, dims="x", coords={"x": x.values}, name="x")  # pandas
    for label, options in _selections(x):
        try:
            expected = stored.sel(x=label, **options)
        except KeyError:
            with pytest.raises(KeyError):
                x.sel(x=label, **options)
            continue
        xr.testing.assert_identical(x.sel(x=label, **options).drop_attrs(), expected)


def test_alignment_concatenation_and_pickling(real_slide) -> None:
    path = real_slide(NDPI)
    level = wa.open(path).image(2)
    centres = level.x.values
    left, right = level.isel(x=slice(0, 100)), level.isel(x=slice(50, 150))
    inner, _ = xr.align(left, right, join="inner")
    np.testing.assert_array_equal(inner.x.values, centres[50:100])
    outer, _ = xr.align(left, right, join="outer")
    np.testing.assert_array_equal(outer.x.values, centres[:150])
    joined = xr.concat([left, level.isel(x=slice(100, 150))], "x")
    np.testing.assert_array_equal(joined.x.values, centres[:150])
    # the same level opened twice aligns exactly, without a reindex
    again = wa.open(path).image(2)
    assert xr.align(level, again, join="exact")[1].x.equals(level.x)
    with pytest.raises(ValueError, match="exact"):
        xr.align(level, wa.open(path).image(3), join="exact")
    copy = pickle.loads(pickle.dumps(level))
    assert isinstance(copy.xindexes["x"], PixelCentresIndex)
    xr.testing.assert_identical(copy.isel(y=slice(0, 3)).x, level.x)
    assert tokenize(level) == tokenize(again)


def test_many_declared_planes_are_one_array() -> None:
    # a fuzzed OME-XML declared SizeZ=1000000: one DataArray per plane, stacked by xr.concat,
    # did not finish in 15 s (12 ms per plane and level)
    depth = 200_000
    z = PlaneAxis("z", tuple(i * 0.002 for i in range(depth)), "mm")
    t = PlaneAxis("t", (0.0, 30.0), "s")
    spec, meta = _declared((2202, 2202), (t, z))
    started = time.perf_counter()
    image = build_tree(spec, meta)["level0"].image
    assert time.perf_counter() - started < 10  # measured 0.2 s
    assert image.dims == ("t", "z", "y", "x", "c")
    assert image.shape == (2, depth, 2202, 2202, 3)
    assert len(image.data.dask.layers) == 2  # from_array's two, not two per plane
    assert image.chunks[:2] == ((1, 1), (1,) * depth)
    assert image.z.values.tolist() == list(z.values)
    assert image.t.values.tolist() == [0.0, 30.0]
    assert (image.z.attrs, image.t.attrs) == ({"units": "mm"}, {"units": "s"})
    assert image.data.name == build_tree(spec, meta)["level0"].image.data.name
