"""The DataTree: chunks, coordinates, attrs, laziness and pickling."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
import tifffile

import wsiarray as wa
from tests.conftest import real_slide
from wsiarray.tree import dask_chunks

NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"
SVS = "aperio/CMU-1-Small-Region.svs"


@pytest.mark.parametrize(
    ("tile", "shape", "target", "expected"),
    [
        ((240, 240), (30000, 40000), None, (3120, 3120)),
        ((240, 240), (2967, 2220), None, (2967, 2220)),  # capped at the level
        ((8, 3968), (4864, 3968), None, (3072, 3968)),  # NDPI strips: rows add up, width whole
        ((256, 256), (1000, 1000), 100, (256, 256)),  # never less than one tile
        ((240, 240), (5000, 5000), (500, 1000), (480, 960)),
    ],
)
def test_dask_chunks_are_whole_tiles(tile, shape, target, expected) -> None:
    assert dask_chunks(tile, shape, target) == expected


def test_chunks_are_multiples_of_the_native_tile_and_few_tasks() -> None:
    slide = wa.open(real_slide(NDPI))
    image = slide.image(0)
    rows, cols = image.chunks[0], image.chunks[1]
    assert all(r % 8 == 0 for r in rows[:-1])
    assert cols == (3968,)
    assert image.data.npartitions == 2  # 4864 rows → 3072 + 1792, not 608 strips


def test_user_chunks() -> None:
    image = wa.open(real_slide(SVS), chunks=1000).image(0)
    assert image.chunks[0][0] == 960
    assert image.chunks[1][0] == 960


def test_root_attrs() -> None:
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


def test_level_attrs_and_coordinates_on_a_pyramid() -> None:
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


def test_selection_by_millimetres() -> None:
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


def test_reads_decode_only_the_tiles_they_touch(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsiarray.sources._tifftiles import LevelTiles

    decoded: list[tuple[int, int]] = []
    original = LevelTiles._decode

    def counting(self, plane, index, ty, tx):
        decoded.append((ty, tx))
        return original(self, plane, index, ty, tx)

    monkeypatch.setattr(LevelTiles, "_decode", counting)
    slide = wa.open(real_slide(SVS))
    image = slide.tree["level0"].image
    assert image.shape == (2967, 2220, 3)
    assert decoded == []  # opening decodes nothing
    image[:10, 250:260].to_numpy()
    assert decoded == [(0, 1)]  # a 10-px patch decodes the one 240-px tile holding it
    decoded.clear()
    image[230:250, 470:490].to_numpy()
    assert sorted(decoded) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    decoded.clear()
    image.mean(("y", "x")).compute()
    assert sorted(decoded) == sorted(
        {(ty, tx) for ty in range(13) for tx in range(10)}
    )  # each once


def test_associated_images_are_lazy_and_read_on_demand() -> None:
    slide = wa.open(real_slide(SVS))
    label = slide.associated["label"]
    assert label.chunks is not None
    assert label.shape == (463, 387, 3)
    assert label.values.std() > 0


def test_pickled_graph_computes_in_a_fresh_process(tmp_path: Path) -> None:
    slide = wa.open(real_slide(NDPI))
    reduction = slide.image(1).mean(("y", "x"))
    expected = reduction.compute().values
    payload = tmp_path / "graph.pkl"
    payload.write_bytes(pickle.dumps(reduction))
    script = (
        "import pickle, sys, numpy as np\n"
        f"r = pickle.loads(open({str(payload)!r}, 'rb').read())\n"
        "np.save(sys.argv[1], r.compute().values)\n"
    )
    out = tmp_path / "out.npy"
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(out), expected)


def test_slide_pickles() -> None:
    slide = wa.open(real_slide(SVS), chunks=1000)
    clone = pickle.loads(pickle.dumps(slide))
    assert clone.level_shapes == slide.level_shapes
    assert clone.image(0).chunks == slide.image(0).chunks
    np.testing.assert_array_equal(clone.image(0)[:50, :50].values, slide.image(0)[:50, :50].values)


def test_concurrent_reads_give_identical_pixels() -> None:
    slide = wa.open(real_slide(NDPI), chunks=512)
    image = slide.image(0)
    with dask.config.set(scheduler="threads", num_workers=8):
        threaded = image.sum(("y", "x")).compute().values
    with dask.config.set(scheduler="synchronous"):
        serial = image.sum(("y", "x")).compute().values
    np.testing.assert_array_equal(threaded, serial)


def test_read_is_a_numpy_fast_path(tmp_path: Path) -> None:
    slide = wa.open(real_slide(NDPI))
    patch = slide.read(1000, 2000, 256, 128, level=1)
    assert isinstance(patch, np.ndarray)
    np.testing.assert_array_equal(patch, slide.image(1)[2000:2128, 1000:1256].to_numpy())
    assert slide.read(1900, 0, 500, 10, level=1).shape == (10, 84, 3)  # clipped at the right edge
    with pytest.raises(wa.RegionError, match="outside level 1"):
        slide.read(5000, 0, 10, 10, level=1)


def test_importing_and_reading_a_patch_loads_no_xarray_dask_or_zarr() -> None:
    script = (
        "import sys, wsiarray as wa\n"
        f"wa.open({str(real_slide(SVS))!r}).read(0, 0, 256, 256)\n"
        "print(sorted(m for m in ('xarray', 'dask', 'zarr', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_single_pixel_selection_keeps_every_channel() -> None:
    path = real_slide("aperio/CMU-1-Small-Region.svs")
    image = wa.open(path).tree["level0"].image
    expected = tifffile.imread(path, key=0)[1000, 1200]
    np.testing.assert_array_equal(image.isel(y=1000, x=1200).values, expected)
    np.testing.assert_array_equal(image.isel(y=1000, x=[1200, 1201]).values[0], expected)
    nearest = image.sel(y=image.y[1000], x=image.x[1200], method="nearest").values
    np.testing.assert_array_equal(nearest, expected)
    assert wa.open(path).region(1200, 1000, 1, 1).values.shape == (1, 1, 3)
