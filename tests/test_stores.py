"""The hand-written zarr store and OpenSlide's RGBA handling."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from wsiarray.sources._store import ArraySpec, ChunkStore
from wsiarray.sources.openslide_ import composite_over


def _store(calls: list[tuple[int, int, int]]) -> tuple[ChunkStore, np.ndarray]:
    data = np.arange(70 * 50 * 3, dtype=np.uint16).reshape(70, 50, 3)

    def read_chunk(level: int, row: int, col: int) -> np.ndarray:
        calls.append((level, row, col))
        return data[row * 32 : (row + 1) * 32, col * 32 : (col + 1) * 32]  # edge chunks are short

    return ChunkStore([ArraySpec((70, 50, 3), (32, 32), "uint16")], read_chunk, label="demo"), data


def test_chunk_store_serves_a_zarr_array() -> None:
    calls: list[tuple[int, int, int]] = []
    store, data = _store(calls)
    array = zarr.open_array(store=store, path="0", mode="r")
    assert array.shape == (70, 50, 3)
    assert array.chunks == (32, 32, 3)
    np.testing.assert_array_equal(array[:], data)
    assert sorted(calls) == [(0, r, c) for r in range(3) for c in range(2)]
    calls.clear()
    np.testing.assert_array_equal(array[40:45, 33:40], data[40:45, 33:40])
    assert calls == [(0, 1, 1)]


def test_chunk_store_is_read_only_and_lists_metadata() -> None:
    store, _ = _store([])
    group = zarr.open_group(store=store, mode="r")
    assert list(group.array_keys()) == ["0"]
    with pytest.raises(PermissionError):
        zarr.open_array(store=store, path="0", mode="r")[0, 0, 0] = 1  # type: ignore[index]
    assert repr(store) == "ChunkStore('demo')"


def test_composite_over_background() -> None:
    rgba = np.array([[[10, 20, 30, 255], [0, 0, 0, 0], [200, 100, 50, 128]]], dtype=np.uint8)
    rgb = composite_over(rgba, (255, 250, 240))
    np.testing.assert_array_equal(rgb[0, 0], [10, 20, 30])  # opaque: unchanged
    np.testing.assert_array_equal(rgb[0, 1], [255, 250, 240])  # transparent: background
    expected = np.round((np.array([200, 100, 50]) * 128 + np.array([255, 250, 240]) * 127) / 255)
    np.testing.assert_array_equal(rgb[0, 2], expected)
    assert rgb.dtype == np.uint8
    assert rgb.shape == (1, 3, 3)
