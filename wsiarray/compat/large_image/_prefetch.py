"""Decode ``tileIterator``'s tiles ahead of the loop that consumes them, on a bounded pool.

large_image's iterator reads a tile when its ``tile`` key is first read; the loop then waits
for every decode on one thread. :class:`TilePrefetcher` keeps the loop's tiles decoded
ahead of it, on one thread per core, and decodes each of the level's stored tiles once:

- **Ahead, bounded.** Nothing starts before the loop reads a first tile's pixels (a loop that
  only looks at the keys decodes nothing). From then on, the tiles from the one read to
  ``ahead`` tiles past it are decoded or being decoded (``ahead`` = 2 per thread, fewer for
  tiles over 16 MB, never fewer than the threads); results the loop skipped are dropped.
- **Each stored tile decoded once.** Output tiles seldom fall on the level's tile grid
  (1024-px tiles over 240-px stored tiles), so reading each output tile's box on its own
  decodes the stored tiles along its edges twice or four times: 1.2 x the pixels along each
  axis, ~1.5 x in all. Instead, along each axis the level is cut into one block per output
  tile, from its start rounded up to the tile grid (:func:`axis_blocks`); a tile is pasted
  from its own block and the edges of its neighbours' before it. A block is kept while the
  tiles still to come need it, and when a row of tiles is done with it, only the rows the next
  row needs are kept (less than a stored tile's height across the region: 240 rows x 40000
  px x 3 bands = 29 MB at most on the benchmark slide). Where that would hold more than
  :data:`SHARED_BYTES`, tiles are read on their own (still ahead, on the pool).
- **An abandoned loop stops.** :meth:`TilePrefetcher.close` (the iterator's ``finally``: on
  exhaustion, ``break`` and garbage collection, or ``close()``) cancels what has not started
  and waits for what has: after it returns, nothing more is decoded. Tiles already yielded
  then read their pixels themselves when asked.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from wsiarray.compat.large_image._reads import LevelPixels, planar_empty

#: Most bytes of decoded blocks a shared read may keep (the carried rows of a row of blocks,
#: or one block); above it each tile reads its own box.
SHARED_BYTES = 128 * 1024 * 1024

#: Tile bytes above which fewer than 2 tiles per thread are decoded ahead.
AHEAD_BYTES = 16 * 1024 * 1024


def axis_blocks(
    spans: Sequence[tuple[int, int]], tile: int, extent: int
) -> tuple[list[int], list[tuple[int, int]]]:
    """Cut the level along one axis into one block per output tile, on the tile grid.

    Parameters
    ----------
    spans : sequence of (int, int)
        ``(start, length)`` of each output tile along the axis, starts and ends not
        decreasing (large_image's grids).
    tile : int
        The level's tile size along the axis.
    extent : int
        The level's size along the axis: blocks stop there (the rest is padding).

    Returns
    -------
    edges : list of int
        ``len(spans) + 1`` block edges: block ``k`` is ``[edges[k], edges[k + 1])`` (maybe
        empty), starting at span ``k``'s start rounded up to the tile grid (the first
        rounded down).
    needs : list of (int, int)
        For each span, the blocks ``[first, stop)`` it overlaps.

    Examples
    --------
    >>> axis_blocks([(0, 1024), (1024, 1024), (2048, 952)], 240, 3000)
    ([0, 1200, 2160, 3000], [(0, 1), (0, 2), (1, 3)])
    """
    last = min(max(start + length for start, length in spans), extent)
    edges = [min(max(0, spans[0][0] // tile * tile), last)]
    edges += [min(max(0, -(-start // tile) * tile), last) for start, _ in spans[1:]]
    edges.append(last)
    for k in range(1, len(edges)):  # clamping keeps them sorted; make sure
        edges[k] = max(edges[k], edges[k - 1])
    needs = []
    for start, length in spans:
        first = bisect.bisect_right(edges, start) - 1
        stop = bisect.bisect_left(edges, start + length)
        first, stop = max(0, first), min(len(edges) - 1, stop)
        needs.append((first, max(first, stop)))
    return edges, needs


class _Block:
    """A block of the level being decoded, or decoded (``pixels`` from row ``top``)."""

    __slots__ = ("done", "error", "pixels", "top")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.pixels: np.ndarray | None = None
        self.top = 0
        self.error: BaseException | None = None


class _Closed(Exception):
    """The prefetcher was closed: the task stops."""


class TilePrefetcher:
    """Decodes the tiles of one ``tileIterator`` loop ahead of it (see the module's notes).

    Parameters
    ----------
    pixels : LevelPixels
        The file level the tiles are read from.
    columns, rows : sequence of (int, int)
        ``(start, length)`` of the tiles along x (columns) and y (rows), in level pixels; the
        loop visits them row by row, column by column.
    finish : callable
        ``finish(pixels)`` → the tile as :meth:`result` returns it (resized and encoded as
        large_image would), run on the pool.
    workers : int
        Threads to decode on.
    """

    def __init__(
        self,
        pixels: LevelPixels,
        columns: Sequence[tuple[int, int]],
        rows: Sequence[tuple[int, int]],
        finish: Callable[[np.ndarray], Any],
        workers: int,
    ) -> None:
        self.pixels, self.columns, self.rows, self._finish = pixels, columns, rows, finish
        self.count = len(columns) * len(rows)
        self.workers = max(1, workers)
        width = max(w for _, w in columns)
        height = max(h for _, h in rows)
        item = pixels.bands * pixels.dtype.itemsize
        per_tile = 2 if width * height * item <= AHEAD_BYTES else 1
        self.ahead = self.workers * per_tile
        self._x_edges, self._x_needs = axis_blocks(columns, pixels.tile[1], pixels.width)
        self._y_edges, self._y_needs = axis_blocks(rows, pixels.tile[0], pixels.height)
        self._x_users = _users(self._x_needs, len(self._x_edges) - 1)
        self._y_users = _users(self._y_needs, len(self._y_edges) - 1)
        self.shared = self._shared_bytes() <= SHARED_BYTES
        self._lock = threading.Lock()
        self._blocks: dict[tuple[int, int], _Block] = {}
        # per block (x, y) and tile row: the row's tiles that have yet to be done with it
        self._users: dict[tuple[int, int, int], int] = {}
        self._futures: dict[int, Future[Any]] = {}
        self._next = 0  # the first tile not yet submitted (or skipped)
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None
        self._thread_names = f"wsiarray-tiles-{id(self):x}"

    def _shared_bytes(self) -> int:
        """Most bytes the shared reads may hold: a row's carried rows across the region, or
        (with tiles far from the grid) one block."""
        item = len(self.pixels.slide.metadata.channels) * self.pixels.dtype.itemsize
        widths = np.diff(self._x_edges)
        heights = np.diff(self._y_edges)
        region = self._x_edges[-1] - self._x_edges[0]
        carried = max(self.pixels.tile[0], max(h for _, h in self.rows) - self._stride_y())
        return int(max(widths.max() * heights.max(), carried * region) * item)

    def _stride_y(self) -> int:
        starts = [start for start, _ in self.rows]
        return min((b - a for a, b in itertools.pairwise(starts)), default=0)

    # -- the loop's side ---------------------------------------------------------------------

    def result(self, index: int) -> Any | None:
        """Tile ``index``'s finished pixels, waiting for them; None when this prefetcher no
        longer has them (closed, or the loop has moved past them): the tile then reads
        them itself."""
        with self._lock:
            if self._closed or not 0 <= index < self.count:
                return None
            if index >= self._next:  # the loop skipped tiles: they are never decoded
                for skipped in range(self._next, index):
                    self._release(skipped)
                self._next = index
            self._drop_before(index)
            self._submit_until(index + 1 + self.ahead)
            future = self._futures.pop(index, None)
        if future is None:
            return None
        try:
            return future.result()
        except (CancelledError, _Closed):
            return None

    def close(self) -> None:
        """Cancel what has not started, wait for what has, drop what is held."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            futures, self._futures = self._futures, {}
            for future in futures.values():
                future.cancel()
        if pool is not None:
            # not waiting in one of its own threads (the garbage collector may close an
            # iterator there), which would wait for itself
            own = threading.current_thread().name.startswith(self._thread_names)
            pool.shutdown(wait=not own, cancel_futures=True)
        with self._lock:
            self._blocks.clear()
            self._users.clear()

    # -- scheduling (under the lock) ---------------------------------------------------------

    def _drop_before(self, index: int) -> None:
        """Forget the results of tiles before ``index`` (the loop will not ask for them)."""
        for earlier in [i for i in self._futures if i < index]:
            if self._futures.pop(earlier).cancel():
                self._release(earlier)

    def _submit_until(self, stop: int) -> None:
        """Have the tiles up to ``stop`` (exclusive) decoding."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=self._thread_names)
        for index in range(self._next, min(stop, self.count)):
            self._futures[index] = self._pool.submit(self._tile, index)
        self._next = max(self._next, min(stop, self.count))

    def _keys(self, index: int) -> list[tuple[int, int]]:
        column, row = index % len(self.columns), index // len(self.columns)
        (x0, x1), (y0, y1) = self._x_needs[column], self._y_needs[row]
        return [
            (bx, by)
            for by in range(y0, y1)
            for bx in range(x0, x1)
            if self._x_edges[bx] < self._x_edges[bx + 1]
            and self._y_edges[by] < self._y_edges[by + 1]
        ]

    def _release(self, index: int) -> None:
        """Tile ``index`` is done with its blocks: a block no row needs any more is dropped,
        one the next row needs keeps only the rows it needs (called under the lock)."""
        if not self.shared:
            return
        row = index // len(self.columns)
        for bx, by in self._keys(index):
            key = (bx, by, row)
            if key not in self._users:
                first, stop = self._x_users[bx]
                self._users[key] = stop - first
            self._users[key] -= 1
            if self._users[key]:
                continue
            del self._users[key]
            block = self._blocks.get((bx, by))
            last_row = self._y_users[by][1] - 1
            if row >= last_row:
                self._blocks.pop((bx, by), None)
            elif block is not None and block.done.is_set() and block.pixels is not None:
                keep_from = self.rows[row + 1][0]  # later rows start no higher
                if keep_from > block.top:
                    cut = keep_from - block.top
                    # a copy: a view would keep the whole block alive
                    block.pixels = block.pixels[cut:].copy(order="K")
                    block.top = keep_from

    # -- the pool's side ---------------------------------------------------------------------

    def _tile(self, index: int) -> Any:
        """Decode (or take) tile ``index``'s blocks, paste the tile, finish it."""
        if self._closed:
            raise _Closed
        column, row = index % len(self.columns), index // len(self.columns)
        (left, width), (top, height) = self.columns[column], self.rows[row]
        if not self.shared:
            return self._finish(self.pixels.read(left, top, width, height))
        keys = self._keys(index)
        with self._lock:
            mine = [key for key in keys if key not in self._blocks]
            for key in mine:
                self._blocks[key] = _Block()
            blocks = [self._blocks[key] for key in keys]
        for key, block in zip(keys, blocks, strict=True):
            if key in mine:  # decode what this task claimed before waiting for any other's
                self._decode(key, block)
        out = planar_empty(height, width, self.pixels.bands, self.pixels.dtype)
        try:
            for (bx, _), block in zip(keys, blocks, strict=True):
                block.done.wait()
                if block.error is not None:
                    raise block.error
                with self._lock:  # a row done with the block may have cut it meanwhile
                    pixels, block_top = block.pixels, block.top
                self.pixels.paste(out, left, top, pixels, self._x_edges[bx], block_top)  # type: ignore[arg-type]
        finally:
            with self._lock:
                self._release(index)
        self.pixels.finish(out, left, top, slice(None), slice(None))
        return self._finish(out)

    def _decode(self, key: tuple[int, int], block: _Block) -> None:
        bx, by = key
        if self._closed:
            block.error = _Closed()
            block.done.set()
            return
        try:
            x0, x1 = self._x_edges[bx], self._x_edges[bx + 1]
            y0, y1 = self._y_edges[by], self._y_edges[by + 1]
            block.pixels, block.top = self.pixels.read_block(x0, y0, x1, y1), y0
        except BaseException as exc:  # noqa: BLE001 - handed to every tile that needs the block
            block.error = exc
        finally:
            block.done.set()


def _users(needs: Sequence[tuple[int, int]], blocks: int) -> list[tuple[int, int]]:
    """For each block, the spans ``[first, stop)`` that need it (``needs`` from
    :func:`axis_blocks`: contiguous, since spans are sorted)."""
    first: list[int | None] = [None] * blocks
    stop = [0] * blocks
    for span, (a, b) in enumerate(needs):
        for block in range(a, b):
            first[block] = span if first[block] is None else first[block]
            stop[block] = span + 1
    return [(f if f is not None else 0, s) for f, s in zip(first, stop, strict=True)]
