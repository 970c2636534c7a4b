"""Pixels of a file level as large_image returns them, read fast: padded, with its bands,
band-planar, and large regions on a bounded pool of threads.

Everything reads through the public :meth:`wsiarray.Slide.read` (the native decoder, ~0.98 x
the raw JPEG-decode limit on 2 threads for a whole-level mean). What this module adds is
what large_image's answers need on top, without a pass through xarray or dask:

- **Bands.** large_image's band count (:func:`._encode.with_bands`): the slide's first bands
  and a full alpha band where it returns RGBA.
- **Padding.** Parts of a virtual level outside the file level (a pixel of rounding at the
  right or bottom edge) are the slide's background colour, as ``Slide.region(pad=True)``
  pads them.
- **Band-planar results.** Each band's pixels are contiguous, as the native reader makes them
  and as the tiles of this layer always were: a block of the reader is pasted plane by plane
  (row copies at memory speed), where interleaving it into RGBA would cost ~2.7 ns a pixel
  (measured: per-band assignment 2.7 ms, uint32 shifts 2.6-3.4 ms, PIL ``merge`` 17 ms per
  1024² tile, against 0.24 ms for a band-planar RGBA copy), more than half the decode itself.
- **Threads.** :meth:`LevelPixels.read_parallel` splits a large region into blocks on the
  level's own tile edges, so no stored tile is decoded twice, and decodes them on a pool of
  one thread per core, writing into the one output array (memory: the output plus one
  block per thread).
"""

from __future__ import annotations

import itertools
import math
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from wsiarray.geometry import check_pixels

if TYPE_CHECKING:
    import wsiarray

#: Regions of at most this many pixels are read in the calling thread (a pool's start and
#: hand-off cost ~0.3 ms, a 1024² region's decode ~4 ms on one core).
SERIAL_PIXELS = 1024 * 1024

#: Block sides of :meth:`LevelPixels.read_parallel`, in pixels (rounded to whole tiles):
#: at least 4 blocks per thread to balance the threads, at most 2048 px so that a thread's
#: block (12 MB in RGB) stays under glibc's mmap threshold once it has grown (a freed block's
#: memory is reused, not mapped and zeroed afresh), at least 512 px so that a call's own
#: cost (~0.1 ms) stays small against its decode (~1 ms per 512² px).
BLOCK_MIN, BLOCK_MAX, BLOCKS_PER_THREAD = 512, 2048, 4


def worker_count() -> int:
    """Threads to decode on: one per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: Outputs of :meth:`LevelPixels.read_parallel` of at least this many bytes are mapped with
#: all their pages populated at once, not faulted in page by page as they are first written.
#: A fresh page is expensive here (a virtual machine: ~1.2 ms per MB under load): getRegion
#: 10000² RGBA (400 MB) on the 40000 x 30000 slide took 2.6-3.9 s into ``np.empty`` (numpy
#: advises transparent huge pages for it; the pages faulted by the decoding threads), 2.1-3.6
#: s into a plain anonymous mapping, 1.4-2.3 s into one populated up front (the paste into
#: it 1.0 instead of 4.5-6.4 ns a pixel); two runs each, on a loaded machine (load 6-12).
POPULATE_BYTES = 16 * 1024 * 1024


def planar_empty(
    height: int, width: int, bands: int, dtype: np.dtype, *, populate: bool = False
) -> np.ndarray:
    """An uninitialised ``(height, width, bands)`` array stored band by band; ``populate``:
    a large one has its pages mapped at once (see :data:`POPULATE_BYTES`).

    Raises
    ------
    PixelBudgetError
        Over the pixel budget (:func:`wsiarray.geometry.check_pixels`): every read of this
        layer allocates here, so :meth:`LevelPixels.read_parallel` refuses before it plans
        its blocks (a 10^6 x 10^6 region once spent > 10 s submitting ~10^7 of them).
    """
    check_pixels(height, width, "the region read")
    shape = (bands, height, width)
    size = bands * height * width * np.dtype(dtype).itemsize
    if populate and size >= POPULATE_BYTES and hasattr(mmap, "MAP_POPULATE"):
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE
        return (
            np.frombuffer(mmap.mmap(-1, size, flags=flags), dtype).reshape(shape).transpose(1, 2, 0)
        )
    return np.empty(shape, dtype).transpose(1, 2, 0)


def tile_cuts(start: int, stop: int, tile: int, step: int) -> list[int]:
    """Edges splitting ``[start, stop)`` into pieces of ``step`` tiles of ``tile`` pixels,
    on the tile grid (the first and last pieces are cut by ``start`` and ``stop``).

    Examples
    --------
    >>> tile_cuts(100, 1000, 240, 2)
    [100, 480, 960, 1000]
    """
    size = tile * max(1, step)
    first = (start // size + 1) * size
    return [start, *range(first, stop, size), stop]


class LevelPixels:
    """Reads a file level's pixels with large_image's bands, padded, band-planar.

    Parameters
    ----------
    slide : wsiarray.Slide
        The slide (read through its public :meth:`~wsiarray.Slide.read`).
    level : int
        The file level.
    bands : int
        large_image's band count: the slide's first ``bands`` bands, and a full band
        (255 for uint8) for each one more than the slide has (alpha).
    """

    def __init__(self, slide: wsiarray.Slide, level: int, bands: int) -> None:
        self.slide, self.level, self.bands = slide, level, bands
        self.height, self.width = slide.level_shapes[level]
        self.tile: tuple[int, int] = slide.metadata.levels[level].tile
        self.dtype = np.dtype(slide.metadata.dtype)
        channels = len(slide.metadata.channels)
        self.kept = min(channels, bands)  # bands taken from the slide
        self.background = slide.background_pixel[: self.kept]
        self.fill = np.iinfo(self.dtype).max if self.dtype.kind in "ui" else 1

    # -- pieces ------------------------------------------------------------------------------

    def read_block(self, left: int, top: int, right: int, bottom: int) -> np.ndarray:
        """The slide's pixels ``[top:bottom, left:right]``, all inside the level, as read."""
        return self.slide.read(left, top, right - left, bottom - top, level=self.level)

    def paste(
        self, out: np.ndarray, left: int, top: int, block: np.ndarray, x0: int, y0: int
    ) -> None:
        """Copy the part of ``block`` (whose top-left pixel is ``(x0, y0)`` of the level) that
        falls in ``out`` (whose top-left is ``(left, top)``), band by band, kept bands only."""
        height, width = out.shape[:2]
        ya, yb = max(top, y0), min(top + height, y0 + block.shape[0])
        xa, xb = max(left, x0), min(left + width, x0 + block.shape[1])
        if ya >= yb or xa >= xb:
            return
        target = out[ya - top : yb - top, xa - left : xb - left]
        source = block[ya - y0 : yb - y0, xa - x0 : xb - x0]
        for band in range(self.kept):
            # plane to plane: contiguous row copies (an (h, w, 3) assignment into band-planar
            # memory walks the bands innermost: ~9x slower)
            np.copyto(target[..., band], source[..., band])

    def finish(self, out: np.ndarray, left: int, top: int, rows: slice, cols: slice) -> None:
        """Fill ``out[rows, cols]``'s extra bands (alpha), and its kept bands with the
        background colour where it lies outside the level."""
        height, width = out.shape[:2]
        area = out[rows, cols]
        for band in range(self.kept, self.bands):
            area[..., band] = self.fill
        ys = range(top + (rows.start or 0), top + (rows.stop if rows.stop is not None else height))
        xs = range(left + (cols.start or 0), left + (cols.stop if cols.stop is not None else width))
        inside_y = (max(ys.start, 0), min(ys.stop, self.height))
        inside_x = (max(xs.start, 0), min(xs.stop, self.width))
        if inside_y == (ys.start, ys.stop) and inside_x == (xs.start, xs.stop):
            return
        outside = np.ones((len(ys), len(xs)), bool)
        if inside_y[0] < inside_y[1] and inside_x[0] < inside_x[1]:
            outside[
                inside_y[0] - ys.start : inside_y[1] - ys.start,
                inside_x[0] - xs.start : inside_x[1] - xs.start,
            ] = False
        for band, value in enumerate(self.background):
            area[..., band][outside] = value

    # -- regions -----------------------------------------------------------------------------

    def read(self, left: int, top: int, width: int, height: int) -> np.ndarray:
        """Pixels ``[top:top + height, left:left + width]`` in the calling thread."""
        out = planar_empty(height, width, self.bands, self.dtype)
        x0, x1 = max(left, 0), min(left + width, self.width)
        y0, y1 = max(top, 0), min(top + height, self.height)
        if x0 < x1 and y0 < y1:
            self.paste(out, left, top, self.read_block(x0, y0, x1, y1), x0, y0)
        self.finish(out, left, top, slice(None), slice(None))
        return out

    def read_parallel(
        self, left: int, top: int, width: int, height: int, workers: int | None = None
    ) -> np.ndarray:
        """The same as :meth:`read`, decoded in blocks on ``workers`` threads (one per core
        by default) straight into the output: at most ``workers`` blocks besides it."""
        workers = worker_count() if workers is None else workers
        x0, x1 = max(left, 0), min(left + width, self.width)
        y0, y1 = max(top, 0), min(top + height, self.height)
        if workers < 2 or width * height <= SERIAL_PIXELS or x0 >= x1 or y0 >= y1:
            return self.read(left, top, width, height)
        out = planar_empty(height, width, self.bands, self.dtype, populate=True)
        side = math.sqrt((x1 - x0) * (y1 - y0) / (BLOCKS_PER_THREAD * workers))
        side = min(BLOCK_MAX, max(BLOCK_MIN, side))
        xs = tile_cuts(x0, x1, self.tile[1], round(side / self.tile[1]))
        ys = tile_cuts(y0, y1, self.tile[0], round(side / self.tile[0]))
        blocks = [
            (a, b, c, d) for b, d in itertools.pairwise(ys) for a, c in itertools.pairwise(xs)
        ]

        def read_one(box: tuple[int, int, int, int]) -> None:
            a, b, c, d = box
            self.paste(out, left, top, self.read_block(a, b, c, d), a, b)
            self.finish(out, left, top, slice(b - top, d - top), slice(a - left, c - left))

        with ThreadPoolExecutor(min(workers, len(blocks))) as pool:
            for _ in pool.map(read_one, blocks):  # raises the first block's error
                pass
        self._finish_outside(out, left, top, (x0, y0, x1, y1))
        return out

    def _finish_outside(
        self, out: np.ndarray, left: int, top: int, inside: tuple[int, int, int, int]
    ) -> None:
        """Background and alpha of the strips of ``out`` outside the level."""
        height, width = out.shape[:2]
        x0, y0, x1, y1 = (inside[0] - left, inside[1] - top, inside[2] - left, inside[3] - top)
        strips = [
            (slice(0, y0), slice(None)),
            (slice(y1, height), slice(None)),
            (slice(y0, y1), slice(0, x0)),
            (slice(y0, y1), slice(x1, width)),
        ]
        for rows, cols in strips:
            if out[rows, cols].size:
                self.finish(out, left, top, rows, cols)
