"""The compat layer's fast reads: tiles decoded ahead of the loop, regions on threads.

Pixels must be exactly those of a tile read on its own (which ``test_large_image`` compares
with large_image itself); the prefetcher must stay bounded, decode each stored tile once, and
stop when the loop is abandoned.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import wsiarray
from wsiarray.compat import large_image as compat
from wsiarray.compat.large_image._encode import resize
from wsiarray.compat.large_image._prefetch import TilePrefetcher, axis_blocks
from wsiarray.compat.large_image._reads import LevelPixels, tile_cuts
from wsiarray.errors import CorruptTileError
from wsiarray.synthetic import write_aperio_svs


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5000 x 3700 at 20x, 240-px tiles, levels 1/4/16/32."""
    return write_aperio_svs(
        tmp_path_factory.mktemp("pf") / "pf.svs", size=(3700, 5000), downsamples=(1, 4, 16, 32)
    )


class ReadCounter:
    """Counts (and optionally slows or breaks) :meth:`wsiarray.Slide.read` calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> None:
        self.calls: list[tuple[int, int, int, int]] = []
        self.lock = threading.Lock()
        self.fail_at: tuple[int, int] | None = None
        original = wsiarray.Slide.read

        def read(slide, left, top, width, height, *, level=0):
            with self.lock:
                self.calls.append((left, top, width, height))
            if (
                self.fail_at
                and left <= self.fail_at[0] < left + width
                and top <= self.fail_at[1] < top + height
            ):
                msg = "damaged tile"
                raise CorruptTileError(msg)
            time.sleep(delay)
            return original(slide, left, top, width, height, level=level)

        monkeypatch.setattr(wsiarray.Slide, "read", read)

    @property
    def pixels(self) -> int:
        return sum(w * h for _, _, w, h in self.calls)


TILINGS = [
    {"tile_size": {"width": 1024}},
    {"tile_size": {"width": 512}, "tile_overlap": {"x": 64, "y": 32}},
    {"tile_size": {"width": 100, "height": 700}},
    {"scale": {"magnification": 7}, "tile_size": {"width": 256}},  # resampled
    {"scale": {"magnification": 10}, "tile_size": {"width": 1024}},  # resampled, level 0
    {"scale": {"magnification": 5}},  # level 1, native tiles
    {
        "region": {"left": 500, "top": 600, "width": 2000, "height": 1500},
        "tile_size": {"width": 300, "height": 200},
        "tile_overlap": {"x": 20, "y": 10, "edges": True},
    },
    {
        "region": {"left": 1000, "top": 1000, "width": 1000, "height": 1000},
        "tile_offset": {"left": 7, "top": 3},
        "tile_size": {"width": 300},
    },
    {
        "region": {"left": 0, "top": 0, "width": 30, "height": 30},
        "tile_size": {"width": 5},
        "tile_overlap": {"x": 4},
    },
]


@pytest.mark.parametrize("kwargs", TILINGS)
@pytest.mark.parametrize("fmt", [compat.TILE_FORMAT_NUMPY, compat.TILE_FORMAT_PIL])
def test_prefetched_tiles_equal_tiles_read_alone(synthetic: Path, kwargs, fmt) -> None:
    source = compat.open(synthetic)
    tiles = [(dict(t), t["tile"], t["format"]) for t in source.tileIterator(format=fmt, **kwargs)]
    assert len(tiles) == source.getTileCount(**kwargs)
    for position, (keys, pixels, form) in enumerate(tiles):
        alone = source.getSingleTile(format=fmt, tile_position=position, **kwargs)  # no prefetch
        assert {k: v for k, v in keys.items() if k not in ("tile", "format")} == {
            k: v for k, v in dict(alone).items() if k not in ("tile", "format")
        }
        assert form == alone["format"] == fmt
        np.testing.assert_array_equal(np.asarray(pixels), np.asarray(alone["tile"]))


def test_each_stored_tile_is_decoded_once(synthetic: Path, monkeypatch) -> None:
    counter = ReadCounter(monkeypatch)
    source = compat.open(synthetic)
    shapes = [t["tile"].shape for t in source.tileIterator(tile_size={"width": 1024})]
    assert len(shapes) == 20
    assert counter.pixels == 5000 * 3700  # 1024-px tiles over 240-px ones, none read twice


def test_tiles_are_not_read_until_asked(synthetic: Path, monkeypatch) -> None:
    counter = ReadCounter(monkeypatch)
    source = compat.open(synthetic)
    keys = [dict(t)["level_x"] for t in source.tileIterator(tile_size={"width": 1024})]
    assert len(keys) == 20
    assert counter.calls == []


@pytest.mark.parametrize("how", ["close", "break"])
def test_an_abandoned_loop_stops_decoding(synthetic: Path, monkeypatch, how) -> None:
    counter = ReadCounter(monkeypatch, delay=0.02)
    source = compat.open(synthetic)
    if how == "close":
        tiles = source.tileIterator(tile_size={"width": 256})
        first = next(tiles)
        assert first["tile"].shape == (256, 256, 4)
        tiles.close()
    else:
        for first in source.tileIterator(tile_size={"width": 256}):
            assert first["tile"].shape == (256, 256, 4)
            break
        gc.collect()
    after_close = len(counter.calls)
    assert after_close <= 1 + 2 * 4  # the first tile, and at most 2 per thread ahead of it
    time.sleep(0.3)
    assert len(counter.calls) == after_close  # nothing decoded after the close
    assert {t.name for t in threading.enumerate() if t.name.startswith("wsiarray-tiles")} == set()


def test_tiles_yielded_before_a_close_still_read(synthetic: Path) -> None:
    source = compat.open(synthetic)
    tiles = source.tileIterator(tile_size={"width": 1024})
    first, second = next(tiles), next(tiles)
    assert first["tile"].shape == (1024, 1024, 4)
    tiles.close()
    alone = source.getSingleTile(tile_size={"width": 1024}, tile_position=1)
    np.testing.assert_array_equal(second["tile"], alone["tile"])


def test_skipping_tiles_and_reading_out_of_order(synthetic: Path) -> None:
    source = compat.open(synthetic)
    kwargs = {"tile_size": {"width": 512}, "tile_overlap": {"x": 16}}
    tiles = list(source.tileIterator(**kwargs))  # exhausted: each then reads on its own
    order = [5, 3, 40, 41, 0, len(tiles) - 1]
    for index in order:
        alone = source.getSingleTile(tile_position=index, **kwargs)
        np.testing.assert_array_equal(tiles[index]["tile"], alone["tile"])
    seen = []
    for position, tile in enumerate(source.tileIterator(**kwargs)):
        if position % 7 == 0:  # the loop skips most tiles' pixels
            seen.append((position, tile["tile"]))
    for position, pixels in seen:
        alone = source.getSingleTile(tile_position=position, **kwargs)
        np.testing.assert_array_equal(pixels, alone["tile"])


def test_a_damaged_tile_raises_when_its_pixels_are_read(synthetic: Path, monkeypatch) -> None:
    counter = ReadCounter(monkeypatch)
    counter.fail_at = (1500, 100)  # in the second tile of the first row
    source = compat.open(synthetic)
    tiles = source.tileIterator(tile_size={"width": 1024})
    assert next(tiles)["tile"].shape == (1024, 1024, 4)
    with pytest.raises(CorruptTileError, match="damaged tile"):
        next(tiles)["tile"]
    tiles.close()


def test_the_prefetcher_stays_bounded(synthetic: Path) -> None:
    slide = wsiarray.open(synthetic)
    pixels = LevelPixels(slide, 0, 4)
    columns = [(x, min(512, 5000 - x)) for x in range(0, 5000, 512)]
    rows = [(y, min(512, 3700 - y)) for y in range(0, 3700, 512)]
    prefetcher = TilePrefetcher(pixels, columns, rows, lambda image: image, workers=2)
    assert prefetcher.shared
    held = []
    for index in range(prefetcher.count):
        tile = prefetcher.result(index)
        column, row = index % len(columns), index // len(columns)
        np.testing.assert_array_equal(
            tile, pixels.read(columns[column][0], rows[row][0], columns[column][1], rows[row][1])
        )
        held.append(
            sum(b.pixels.nbytes for b in prefetcher._blocks.values() if b.pixels is not None)
        )
        assert len(prefetcher._futures) <= prefetcher.ahead
    prefetcher.close()
    # blocks held: those of the tiles in flight, and the rows the next row needs: less than
    # a stored tile's height (240) plus a tile's blocks, across the level
    assert max(held) <= (240 + 3 * 512) * 5000 * 3 + 6 * 752 * 752 * 3
    assert prefetcher._blocks == {}


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 600),  # stride
    st.integers(0, 100),  # overlap
    st.integers(1, 300),  # stored tile size
    st.integers(0, 700),  # first start
    st.integers(1, 12),  # tiles
    st.integers(1, 4000),  # extent
)
def test_axis_blocks_cover_every_span(stride, overlap, tile, first, count, extent) -> None:
    spans = [(first + k * stride, stride + overlap) for k in range(count)]
    edges, needs = axis_blocks(spans, tile, extent)
    assert edges == sorted(edges)
    assert len(edges) == count + 1
    assert all(e % tile == 0 or e == edges[-1] for e in edges[1:-1])  # on the tile grid
    for (start, length), (a, b) in zip(spans, needs, strict=True):
        inside = (max(start, 0), min(start + length, extent))
        if inside[0] >= inside[1]:
            continue
        assert edges[a] <= inside[0]
        assert edges[b] >= inside[1]


def test_tile_cuts() -> None:
    assert tile_cuts(0, 480, 240, 1) == [0, 240, 480]
    assert tile_cuts(5, 6, 240, 4) == [5, 6]


@pytest.mark.parametrize(
    "box",
    [(100, 200, 3000, 2500), (0, 0, 5000, 3700), (4000, 3000, 1500, 1200), (-10, -5, 1200, 900)],
)
def test_parallel_region_equals_serial(synthetic: Path, box) -> None:
    pixels = LevelPixels(wsiarray.open(synthetic), 0, 4)
    np.testing.assert_array_equal(pixels.read_parallel(*box, workers=3), pixels.read(*box))


@pytest.mark.parametrize("bands", [1, 3, 4])
@pytest.mark.parametrize("size", [(1024, 1024), (517, 1023), (7, 3), (2100, 1900)])
@pytest.mark.parametrize("resample", [True, None, Image.Resampling.BOX, Image.Resampling.BILINEAR])
def test_resize_band_by_band_equals_pil(bands, size, resample) -> None:
    """The band-planar resize gives PIL's pixels for the interleaved image (RGBA with a full
    alpha band: PIL premultiplies, which a full alpha leaves unchanged)."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (1500, 1700, bands), dtype=np.uint8)
    if bands == 4:
        image[..., 3] = 255
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[bands]
    upsample = size[0] > image.shape[1]
    method = (
        Image.Resampling.NEAREST
        if resample is None
        else (Image.Resampling.BICUBIC if upsample else Image.Resampling.LANCZOS)
        if resample is True
        else resample
    )
    pil = Image.fromarray(image[..., 0] if bands == 1 else image, mode).resize(size, method)
    expected = np.asarray(pil).reshape(size[1], size[0], bands)
    planar = np.ascontiguousarray(np.moveaxis(image, -1, 0)).transpose(1, 2, 0)
    np.testing.assert_array_equal(
        resize(planar, *size, upsample=upsample, resample=resample), expected
    )
