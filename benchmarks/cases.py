"""The benchmark cases. Each takes the slide path and returns ``(work_done, unit)``.

A case is timed by the runner around one call; ``work_done`` is megapixels or patches.
The runner imports a case's libraries before starting the clock (import time is measured
separately, by the "first read" cases, which time a whole fresh process).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PATCH = 256
PATCHES = 1000
BLOCK = 4096


def _level_blocks(width: int, height: int, block: int = BLOCK) -> list[tuple[int, int, int, int]]:
    return [
        (x, y, min(block, width - x), min(block, height - y))
        for y in range(0, height, block)
        for x in range(0, width, block)
    ]


def _fast_sum(pixels: np.ndarray) -> np.ndarray:
    """Per-band sum of a (h, w, c) uint8 block at memory speed.

    Contiguous rows are added as uint32 vectors (no float casts, no length-c inner loops),
    then folded per band. This is the "+ reduction" of the raw limit, and what peers'
    pixels get too, so the peers are not slowed by a slow reduction.
    """
    height, width, bands = pixels.shape
    rows = np.ascontiguousarray(pixels).reshape(height, width * bands)
    return rows.sum(axis=0, dtype=np.uint32).reshape(width, bands).sum(axis=0, dtype=np.uint64)


def raw_limit(path: str, threads: int, level: int = 0) -> tuple[float, str]:
    """imagecodecs decode of every tile's raw bytes, plus the per-band sum: the ceiling."""
    import imagecodecs
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[level].keyframe
        tables = page.jpegtables
        with open(path, "rb") as fh:
            chunks = []
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                fh.seek(offset)
                chunks.append(fh.read(count))
        pixels = page.imagewidth * page.imagelength

    buffers = threading.local()  # decoding into a reused buffer is the fastest way (~13 %)

    def decode(data: bytes) -> np.ndarray:
        if not hasattr(buffers, "tile"):
            buffers.tile = np.empty((page.tilelength, page.tilewidth, 3), np.uint8)
        return _fast_sum(imagecodecs.jpeg8_decode(data, tables=tables, out=buffers.tile))

    def decode_all(part: list[bytes]) -> np.ndarray:
        return sum(decode(data) for data in part)

    # one task per thread over its share of the tiles: no per-tile hand-off between threads
    # (a pool fed tile by tile took 5.2 instead of 4.3 s on one thread, 3.1 instead of 2.3 s on 2)
    parts = [chunks[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(decode_all, parts))
    assert np.all(np.asarray(total) > 0)
    return pixels / 1e6, "MP"


def _mean_by_blocks(read: Callable[[tuple[int, int, int, int]], np.ndarray], blocks, threads: int):
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(lambda b: _fast_sum(read(b)), blocks))


def openslide_mean(path: str, threads: int, level: int = 0) -> tuple[float, str]:
    import openslide

    slide = openslide.OpenSlide(path)
    width, height = slide.level_dimensions[level]
    ds = slide.level_downsamples[level]

    def read(b: tuple[int, int, int, int]) -> np.ndarray:
        return np.asarray(slide.read_region((int(b[0] * ds), int(b[1] * ds)), level, (b[2], b[3])))

    _mean_by_blocks(read, _level_blocks(width, height), threads)
    return width * height / 1e6, "MP"


def tiffslide_mean(path: str, threads: int, level: int = 0) -> tuple[float, str]:
    import tiffslide

    slide = tiffslide.TiffSlide(path)
    width, height = slide.level_dimensions[level]
    ds = slide.level_downsamples[level]

    def read(b: tuple[int, int, int, int]) -> np.ndarray:
        return slide.read_region(
            (int(b[0] * ds), int(b[1] * ds)), level, (b[2], b[3]), as_array=True
        )

    _mean_by_blocks(read, _level_blocks(width, height), threads)
    return width * height / 1e6, "MP"


def large_image_mean(path: str, source: str, level: int = 0) -> tuple[float, str]:
    import large_image

    ts = large_image.open(path, source=source) if source != "default" else large_image.open(path)
    meta = ts.getMetadata()
    scale = (
        {"magnification": ts.getNativeMagnification()["magnification"] / (4**level)}
        if level
        else None
    )
    total = 0
    pixels = 0
    kwargs = {
        "format": large_image.constants.TILE_FORMAT_NUMPY,
        "tile_size": {"width": BLOCK, "height": BLOCK},
    }
    if scale:
        kwargs["scale"] = scale
    for tile in ts.tileIterator(**kwargs):
        array = tile["tile"]
        total = total + _fast_sum(array)
        pixels += array.shape[0] * array.shape[1]
    assert pixels > 0
    assert meta["sizeX"] > 0
    return pixels / 1e6, "MP"


def wsiarray_mean(path: str, level: int = 0) -> tuple[float, str]:
    """What a user writes: the whole-level mean colour through xarray, default scheduler."""
    import wsiarray as wa

    image = wa.open(path).tree[f"level{level}"].image
    mean = image.mean(("y", "x")).compute()
    assert mean.shape == (3,)
    return image.shape[0] * image.shape[1] / 1e6, "MP"


def level_mean_work(path: str, level: int = 0):
    """The lazy whole-level mean colour and its megapixels (for the cluster cases)."""
    import wsiarray as wa

    image = wa.open(path).image(level)
    return image.mean(("y", "x")), image.shape[0] * image.shape[1] / 1e6


#: Ruifrok & Johnston's H&E(+residual) optical-density vectors, rows normalised
_STAINS = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_UNMIX = np.linalg.inv(_STAINS / np.linalg.norm(_STAINS, axis=1, keepdims=True))


def stain_density(tile: np.ndarray) -> np.ndarray:
    """Mean optical density of haematoxylin, eosin and the residual over a tile."""
    od = -np.log10(np.maximum(tile[..., :3].reshape(-1, 3), 1).astype(np.float32) / 255)
    return (od @ _UNMIX.astype(np.float32)).mean(axis=0)


def tile_map_work(path: str):
    """The parallel-analysis notebook's map on the whole slide: 256-px tiles at 10x (overlap
    32), stain densities per tile; returns the lazy result and the 10x megapixels."""
    import wsiarray as wa

    grid = wa.TileGrid(wa.open(path), 256, 32, magnification=10)
    height, width = grid.image.shape[:2]
    return grid.map(stain_density), height * width / 1e6


def tile_map_threads(path: str) -> tuple[float, str]:
    """The tile map on dask's default (threaded) scheduler."""
    result, megapixels = tile_map_work(path)
    assert np.isfinite(result.compute().values).all()
    return megapixels, "MP"


def _patch_origins(width: int, height: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(12345)
    xs = rng.integers(0, width - PATCH, PATCHES)
    ys = rng.integers(0, height - PATCH, PATCHES)
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


def _timed_patches(
    read: Callable[[int, int], object], width: int, height: int
) -> tuple[float, str, dict]:
    """Read every patch, timing each: returns the count and the 95th-percentile latency."""
    import time

    latencies = []
    for x, y in _patch_origins(width, height):
        started = time.perf_counter()
        read(x, y)
        latencies.append(time.perf_counter() - started)
    return PATCHES, "patches", {"p95_ms": float(np.percentile(latencies, 95) * 1000)}


def wsiarray_patches(path: str) -> tuple[float, str, dict]:
    import wsiarray as wa

    slide = wa.open(path)
    height, width = slide.shape

    def read(x: int, y: int) -> None:
        patch = slide.region(left=x, top=y, width=PATCH, height=PATCH, units="base_pixels").values
        assert patch.shape == (PATCH, PATCH, 3)

    return _timed_patches(read, width, height)


def wsiarray_patches_dask_slicing(path: str) -> tuple[float, str]:
    """The same patches by slicing the level's dask-backed DataArray (pays dask per compute)."""
    import wsiarray as wa

    image = wa.open(path).image(0)
    height, width = image.shape[:2]
    for x, y in _patch_origins(width, height):
        assert image[y : y + PATCH, x : x + PATCH].values.shape == (PATCH, PATCH, 3)
    return PATCHES, "patches"


def openslide_patches(path: str) -> tuple[float, str, dict]:
    import openslide

    slide = openslide.OpenSlide(path)
    return _timed_patches(
        lambda x, y: np.asarray(slide.read_region((x, y), 0, (PATCH, PATCH))), *slide.dimensions
    )


def tiffslide_patches(path: str) -> tuple[float, str, dict]:
    import tiffslide

    slide = tiffslide.TiffSlide(path)
    return _timed_patches(
        lambda x, y: slide.read_region((x, y), 0, (PATCH, PATCH), as_array=True), *slide.dimensions
    )


def first_pixel(path: str, library: str) -> tuple[float, str]:
    """Import, open and read one 256² patch (the runner times the whole fresh process)."""
    if library == "wsiarray":
        import wsiarray as wa

        wa.open(path).read(0, 0, PATCH, PATCH)
    elif library == "wsiarray-xarray":
        import wsiarray as wa

        wa.open(path).region(0, 0, PATCH, PATCH).to_numpy()
    elif library == "openslide":
        import openslide

        np.asarray(openslide.OpenSlide(path).read_region((0, 0), 0, (PATCH, PATCH)))
    elif library == "tiffslide":
        import tiffslide

        tiffslide.TiffSlide(path).read_region((0, 0), 0, (PATCH, PATCH), as_array=True)
    elif library == "large_image":
        import large_image

        large_image.open(path).getRegion(
            region={"left": 0, "top": 0, "width": PATCH, "height": PATCH},
            format=large_image.constants.TILE_FORMAT_NUMPY,
        )
    return 1, "first read"


def _tile_source(library: str, path: str, source: str = "default"):
    if library == "wsiarray":
        from wsiarray.compat import large_image

        return large_image.open(path)
    import large_image

    return large_image.open(path) if source == "default" else large_image.open(path, source=source)


def compat_tile_iterator(path: str, library: str, source: str = "default") -> tuple[float, str]:
    """tileIterator with 1024-px tiles at native scale, numpy, touching every tile's pixels."""
    ts = _tile_source(library, path, source)
    pixels = 0
    for tile in ts.tileIterator(format="numpy", tile_size={"width": 1024, "height": 1024}):
        array = tile["tile"]
        pixels += array.shape[0] * array.shape[1]
    assert pixels == ts.getMetadata()["sizeX"] * ts.getMetadata()["sizeY"]
    return pixels / 1e6, "MP"


def compat_get_region(
    path: str, library: str, scale: float, source: str = "default"
) -> tuple[float, str]:
    """getRegion of a 10000² base-pixel square (smaller on a smaller slide), at full
    resolution or a fraction of it."""
    ts = _tile_source(library, path, source)
    meta = ts.getMetadata()
    side = min(10000, meta["sizeX"] // 2, meta["sizeY"] // 2)
    native = ts.getNativeMagnification()["magnification"]
    image, _ = ts.getRegion(
        region={"left": side // 2, "top": side // 2, "width": side, "height": side},
        scale={"magnification": native * scale},
        format="numpy",
    )
    assert image.shape[0] == round(side * scale)
    return side * side / 1e6, "MP"
