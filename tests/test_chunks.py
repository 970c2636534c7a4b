"""Chunk policy: dask chunks are as many whole native tiles as fit in 3072 px a side."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import wsiarray as wa
from wsiarray.chunks import DEFAULT_CHUNK, dask_chunks, scaled_chunks, tiles_per_task

NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"


@pytest.mark.parametrize(
    ("tile", "shape", "target", "expected"),
    [
        ((240, 240), (30000, 40000), None, (2880, 2880)),  # 12 tiles: 25 MB of RGB
        ((256, 256), (30000, 40000), None, (3072, 3072)),
        ((512, 512), (30000, 40000), 1000, (512, 512)),  # never past the target
        ((2000, 2000), (30000, 40000), None, (2000, 2000)),  # not 4000² (48 MB)
        ((256, 256), (1000, 700), None, (1000, 700)),  # capped at the level
        ((8, 3968), (4864, 3968), None, (3072, 3968)),  # NDPI: strips of restart intervals
        ((240, 240), (30000, 40000), (100, 5000), (240, 4800)),  # at least one tile
    ],
)
def test_dask_chunks(tile, shape, target, expected) -> None:
    assert dask_chunks(tile, shape, target) == expected


def test_scaled_chunks_read_about_the_target() -> None:
    assert scaled_chunks((2.0, 2.0), (15000, 20000)) == (DEFAULT_CHUNK // 2, DEFAULT_CHUNK // 2)
    assert scaled_chunks((0.5, 0.5), (100, 100)) == (100, 100)  # upsampled: capped
    assert tiles_per_task((256, 256), (1.0, 1.0)) == (12, 12)
    assert tiles_per_task((256, 256), (4.0, 4.0), 1024) == (1, 1)


def test_default_chunks_of_real_slides(sample_svs: Path, real_slide: Callable[[str], Path]) -> None:
    # 240-px tiles: 12 tiles, 2880 px
    sample = wa.open(sample_svs)
    assert sample.image(0).data.chunksize == (2880, 2880, 3)
    assert sample.tree["level0"].image.data.chunksize == (2880, 2880, 3)
    cmu = wa.open(real_slide("aperio/CMU-1-Small-Region.svs"))  # 2967 x 2220
    assert cmu.image(0).data.chunks == ((2880, 87), (2220,), (3,))
    ndpi = wa.open(real_slide(NDPI))
    assert ndpi.metadata.levels[0].tile == (8, 3968)
    assert ndpi.image(0).data.chunks[:2] == ((3072, 1792), (3968,))
    # chunks= counts in tiles, not in the ~1024-px store chunks the tree once rounded to
    # (which gave 960 for 500 and 1024 for NDPI's 1000)
    assert wa.open(sample_svs, chunks=500).image(0).data.chunksize == (480, 480, 3)
    assert wa.open(sample_svs, chunks=(500, 1000)).image(0).data.chunksize == (480, 960, 3)
    assert wa.open(real_slide(NDPI), chunks=1000).image(0).data.chunksize == (1000, 3968, 3)
    openslide = wa.open(sample_svs, reader="openslide", chunks=500)
    assert openslide.image(0).data.chunksize == (480, 480, 3)


def test_default_chunks_follow_a_distributed_client(sample_svs: Path) -> None:
    # a default distributed client sets scheduler="dask.distributed": 25 tiles, 6000²
    import dask

    from wsiarray.chunks import DISTRIBUTED_CHUNK, default_chunk

    slide = wa.open(sample_svs)
    threaded = slide.image(0)
    with dask.config.set(scheduler="dask.distributed"):
        assert default_chunk() == DISTRIBUTED_CHUNK
        assert dask_chunks((240, 240), (30000, 40000)) == (6000, 6000)
        assert tiles_per_task((256, 256), (1.0, 1.0)) == (24, 24)
        on_cluster = slide.image(0)
        assert wa.open(sample_svs, chunks=500).image(0).data.chunksize == (480, 480, 3)
    with dask.config.set(scheduler="threads"):
        assert default_chunk() == DEFAULT_CHUNK
    # an image built under each policy is its own (cached) array, with its own dask name
    assert slide.image(0) is threaded
    assert on_cluster.data.name != threaded.data.name
    expected = dask_chunks((240, 240), slide.shape, DISTRIBUTED_CHUNK)
    assert on_cluster.data.chunksize[:2] == expected != threaded.data.chunksize[:2]
