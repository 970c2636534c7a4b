"""The lazy arrays under the levels: reads decode only what they touch, indexing, pickling."""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import xarray as xr

import wsiarray as wa
from wsiarray.arrays import PlaneStack, WindowArray, band_planar, pad_background, to_dask

SVS = "aperio/CMU-1-Small-Region.svs"  # 2220 x 2967, 240-px tiles
NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"


def test_reads_decode_only_the_tiles_they_touch(
    monkeypatch: pytest.MonkeyPatch, real_slide
) -> None:
    from wsiarray.sources._tifftiles import LevelTiles

    decoded: list[tuple[int, int]] = []
    original = LevelTiles._decode

    def counting(self, fetched, plane, index, ty, tx):
        decoded.append((ty, tx))
        return original(self, fetched, plane, index, ty, tx)

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


def test_pickled_graph_computes_in_a_fresh_process(tmp_path: Path, real_slide) -> None:
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


def test_single_pixel_selection_keeps_every_channel(real_slide) -> None:
    path = real_slide("aperio/CMU-1-Small-Region.svs")
    image = wa.open(path).tree["level0"].image
    expected = tifffile.imread(path, key=0)[1000, 1200]
    np.testing.assert_array_equal(image.isel(y=1000, x=1200).values, expected)
    np.testing.assert_array_equal(image.isel(y=1000, x=[1200, 1201]).values[0], expected)
    nearest = image.sel(y=image.y[1000], x=image.x[1200], method="nearest").values
    np.testing.assert_array_equal(nearest, expected)
    assert wa.open(path).region(1200, 1000, 1, 1).values.shape == (1, 1, 3)


def test_band_planar_keeps_values_and_makes_bands_contiguous() -> None:
    interleaved = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    planar = band_planar(interleaved)
    np.testing.assert_array_equal(planar, interleaved)
    assert np.moveaxis(planar, -1, 0).flags.c_contiguous
    assert band_planar(planar) is planar  # already planar: no copy


def test_pad_background_pads_each_band_with_its_colour_lazily() -> None:
    block = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    widths = ((1, 0), (2, 1))
    padded = pad_background(block, widths, (255, 250, 240))
    assert padded.shape == (3, 6, 3)
    assert padded.dtype == np.uint8
    np.testing.assert_array_equal(padded[1:, 2:5], block)
    np.testing.assert_array_equal(padded[0, 0], [255, 250, 240])
    np.testing.assert_array_equal(padded[2, 5], [255, 250, 240])
    lazy = pad_background(da.from_array(block, chunks=1), widths, (255, 250, 240))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), padded)
    only = pad_background(block[:0, :0], ((0, 2), (0, 2)), (1, 2, 3))  # nothing inside
    np.testing.assert_array_equal(only, np.broadcast_to([1, 2, 3], (2, 2, 3)))


def test_reads_without_dask_equal_dask_reads(real_slide) -> None:
    slide = wa.open(real_slide(NDPI))
    for options in ({"level": 1}, {"magnification": 7}):
        lazy = slide.image(**options, dask=False)
        chunked = slide.image(**options)
        assert not isinstance(lazy.variable._data, da.Array)
        window = {"y": slice(300, 700, 3), "x": [5, 17, 400]}
        np.testing.assert_array_equal(lazy.isel(window).values, chunked.isel(window).values)
        xr.testing.assert_identical(lazy[:64, :64].load(), chunked[:64, :64].compute())


def _outer(data: np.ndarray, key: tuple[object, ...]) -> np.ndarray:
    """``data[key]`` with each axis indexed on its own (outer indexing, as dask's getters)."""
    at = next((i for i, k in enumerate(key) if k is Ellipsis), len(key))
    key = (*key[:at], *[slice(None)] * (data.ndim - len(key) + (at < len(key))), *key[at + 1 :])
    for axis in reversed(range(len(key))):  # the last first: ints drop no axis still to index
        data = data[(slice(None),) * axis + (key[axis],)]
    return data


@dataclass(frozen=True)
class _Planes(WindowArray):
    """One plane of ``stack`` (planes, y, x, c), read as a level reads one."""

    stack: np.ndarray
    shape: tuple[int, int, int]
    dtype: np.dtype
    plane: tuple[int, ...] = ()

    def read_window(self, rows: slice, cols: slice) -> np.ndarray:
        return self.stack[self.plane][rows, cols]


def test_plane_stack_reads_the_planes_it_selects() -> None:
    data = np.arange(2 * 3 * 5 * 4 * 3, dtype=np.uint16).reshape(2, 3, 5, 4, 3)
    stack = PlaneStack(_Planes(data, (5, 4, 3), data.dtype), (2, 3))  # type: ignore[arg-type]
    assert (stack.shape, stack.ndim, stack.dtype) == (data.shape, 5, data.dtype)
    for key in [
        (1, 2),
        (slice(None), -1, slice(1, 4), [0, 3]),
        (0, slice(0, 3, 2), 4, slice(None), 1),
        (np.array([1, 0]), 1, ..., 2),
        (..., slice(2, 3), 0),
        (slice(1, 1), 0),  # no plane
    ]:
        np.testing.assert_array_equal(stack[key], _outer(data, key), err_msg=repr(key))
    block = stack[0:1, 2:3, 1:4]  # one plane: the read block itself, still band-planar
    assert np.moveaxis(block, -1, 0)[:, 0, 0].flags.c_contiguous
    lazy = to_dask(stack, (1, 1, 2, 3), "wsiarray-test-planes")
    assert lazy.chunks == ((1, 1), (1, 1, 1), (2, 2, 1), (3, 1), (3,))
    np.testing.assert_array_equal(lazy.compute(), data)
    np.testing.assert_array_equal(lazy[1, :, 3].compute(), data[1, :, 3])
