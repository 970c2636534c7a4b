"""Decode the native tiles (or strips) of one TIFF pyramid level into blocks.

A dask chunk of a level (thousands of pixels a side) is one :meth:`LevelTiles.read` call
that decodes its tiles in the calling thread, rather than one read per tile through
tifffile's zarr store: zarr 3 spends roughly as long on each chunk's bookkeeping as
libjpeg-turbo spends decoding a 240-px tile, and serves chunks on one event-loop thread, so
tile-sized zarr chunks ran at a quarter of the decoder's speed. The raw bytes of a block's
tiles are asked of the slide's :class:`~wsiarray.sources._store.ByteStore` together: a local
file answers each with ``pread`` (thread-safe, releases the GIL), a remote object with a few
merged, concurrent range requests. Tiled 8-bit grey and RGB JPEG (NDPI's restart intervals
too) is decoded by :class:`~wsiarray.sources._jpeg.JpegTileDecoder`; every other tile tifffile
reads is decoded by tifffile.

A large read shares its tiles with idle cores (:class:`_Crew`): a level smaller than two dask
chunks, or the last chunk of a level, is otherwise decoded by one thread while the others wait.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from tifffile import COMPRESSION, PLANARCONFIG

from wsiarray.errors import CorruptTileError, DamagedFileError
from wsiarray.sources._jpeg import JpegTileDecoder
from wsiarray.sources._store import ByteStore
from wsiarray.sources._tifffile_internals import decode_tile, tile_table

__all__ = ["LevelTiles"]

#: Decoded pixels from which a read shares its tiles with idle cores: a hand-off to a helper
#: thread costs ~0.1 ms, 1 MP of JPEG ~5 ms of one core (16 JPEG 2000 tiles of 256 px: ~70 ms).
SHARE_PIXELS = 1 << 20
#: Compressions whose tiles decode ~15x slower per pixel than JPEG (JPEG 2000: 4.2 vs 0.25
#: ms per 256-px tile), shared from this many fewer pixels and one tile at a time.
SLOW_CODECS = frozenset(
    {
        COMPRESSION.APERIO_JP2000_YCBC,
        COMPRESSION.JPEG_2000_LOSSY,
        COMPRESSION.APERIO_JP2000_RGB,
        COMPRESSION.JPEG2000,
    }
)
SLOW_FACTOR = 16
#: Pixels of the tiles a helper takes at a time from a shared read (fast codecs): a few
#: milliseconds of work, so the threads finish together.
UNIT_PIXELS = 1 << 18


def _cores() -> int:
    """Threads that may decode at once in this process: ``OMP_NUM_THREADS`` where set (dask's
    nanny sets 1 in each worker process of a cluster), else the CPUs the process may use."""
    try:
        cores = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        cores = 0
    if cores > 0:
        return cores
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


class _Job:
    """The units of one shared read: taken one at a time by the reading thread and helpers."""

    def __init__(self, units: Sequence[object], work: Callable[[object], None]) -> None:
        self._units, self._work = units, work
        self._next = itertools.count()
        self._taking = threading.Lock()
        self._done = threading.Condition()
        self._left = len(units)
        self.error: BaseException | None = None

    def work(self, stop: Callable[[], bool] | None = None) -> None:
        """Do units until none is left (or ``stop()`` says so, before a unit)."""
        while stop is None or not stop():
            with self._taking:
                index = next(self._next)
            if index >= len(self._units):
                return
            try:
                if self.error is None:  # after a failure the rest are only counted
                    self._work(self._units[index])
            except BaseException as exc:  # noqa: BLE001 - re-raised in the reading thread
                self.error = self.error or exc
            finally:
                with self._done:
                    self._left -= 1
                    if not self._left:
                        self._done.notify_all()

    def wait(self) -> None:
        """Until every unit taken is done (the reading thread takes all that are left)."""
        with self._done:
            while self._left:
                self._done.wait()


class _Crew:
    """Helper threads that decode part of a read's tiles while the process has idle cores.

    Counts the threads decoding (reads in progress and helpers at work); a read asks for as
    many helpers as :func:`_cores` leaves idle. A helper starts only if a core is still idle,
    and stops taking tiles once more threads decode than there are cores, so threads that
    read on their own (dask's) keep their cores. Why: the 4443 x 3567 JPEG 2000 level of the
    TCGA SVS is 4 chunks of 3072 px (9.4, 4.2, 1.5 and 0.7 MP), which dask's 2 threads finish
    as 9.4 MP on one and 6.4 MP on the other, one core idle for the last third; its level 1
    and the NDPI's levels 1-3 are one chunk each, decoded on one core of two.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0
        self._cores: int | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0

    def run(self, units: Sequence[object], work: Callable[[object], None]) -> None:
        """``work(unit)`` for every unit, in this thread and in idle helpers; re-raises the
        first exception a unit raised."""
        job = _Job(units, work)
        with self._lock:
            if self._cores is None:
                self._cores = _cores()
            self._busy += 1
            helpers = min(self._cores - self._busy, len(units) - 1)
            pool = self._executor() if helpers > 0 else None
        try:
            for _ in range(helpers):
                pool.submit(self._help, job)  # type: ignore[union-attr]
            job.work()
            job.wait()
        finally:
            with self._lock:
                self._busy -= 1
        if job.error is not None:
            raise job.error

    def _help(self, job: _Job) -> None:
        with self._lock:
            if self._busy >= self._cores:  # type: ignore[operator]
                return
            self._busy += 1
        try:
            job.work(stop=lambda: self._busy > self._cores)  # type: ignore[operator]
        finally:
            with self._lock:
                self._busy -= 1

    def forget(self) -> None:
        """Start afresh in a forked child: the parent's helpers, reads and lock are not there."""
        self.__init__()  # type: ignore[misc]

    def _executor(self) -> ThreadPoolExecutor:
        """The helpers' pool (a new one in a forked child, where the parent's threads are not)."""
        if self._pool is None or self._pid != os.getpid():
            self._pool = ThreadPoolExecutor(
                max(1, self._cores - 1),  # type: ignore[operator]
                thread_name_prefix="wsiarray-decode",
            )
            self._pid = os.getpid()
        return self._pool


_CREW = _Crew()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_CREW.forget)


@dataclass(frozen=True, slots=True)
class _Plane:
    """One page of the level (a channel of a CYX image, or the whole YXS image)."""

    page: tifffile.TiffPage
    offsets: np.ndarray
    counts: np.ndarray
    jpegtables: bytes | None
    #: decodes the plane's grey or RGB JPEG tiles, or None: tifffile does
    jpeg: JpegTileDecoder | None


class LevelTiles:
    """Read blocks of one level from its native tiles.

    Parameters
    ----------
    path : Path or str
        The file or its (redacted) URL, for error messages.
    store : ByteStore
        The file's bytes; owned (and closed) by the caller.
    level : int
        Level index, for error messages.
    series : tifffile.TiffPageSeries
        The level, as tifffile sees it: axes ``YX``, ``YXS`` or ``CYX`` (one page per channel).
    fill : int
        Value of tiles the file does not store (sparse tiles).
    pages : sequence of tifffile.TiffPage, optional
        The pages to read, one per channel (default: all of ``series``): one plane of a
        level with focal planes or time points.
    """

    def __init__(
        self,
        path: Path | str,
        store: ByteStore,
        level: int,
        series: tifffile.TiffPageSeries,
        fill: int,
        pages: Sequence[tifffile.TiffPage] | None = None,
    ) -> None:
        self.path, self.level, self.fill = path, level, fill
        self._store = store
        keyframe = series.keyframe
        self._keyframe = keyframe
        self.dtype = keyframe.dtype
        contiguous_samples = (
            keyframe.samplesperpixel > 1 and keyframe.planarconfig == PLANARCONFIG.CONTIG
        )
        tile_dims = keyframe.chunks[:-1] if contiguous_samples else keyframe.chunks
        self.tile: tuple[int, int] = (tile_dims[-2], tile_dims[-1])
        self.shape = (keyframe.imagelength, keyframe.imagewidth)
        if 0 in self.tile:
            # a damaged directory: the tile grid below would divide by zero. tifffile reads a
            # TileWidth of 0 as "not tiled": name the tags the file has
            tags = keyframe.tags
            tiled = "TileWidth" in tags or "TileLength" in tags
            width, length = (
                (tags.valueof("TileWidth", 0), tags.valueof("TileLength", 0))
                if tiled
                else (self.shape[1], self.tile[0])
            )
            msg = (
                f"{path}: level {level} declares a {self.shape[1]} x {self.shape[0]} image in "
                f"{width} x {length} {'tiles' if tiled else 'strips'}; a tile or strip cannot be "
                "0 pixels wide or high, so the file is damaged"
            )
            raise DamagedFileError(msg)
        self.grid = (
            math.ceil(self.shape[0] / self.tile[0]),
            math.ceil(self.shape[1] / self.tile[1]),
        )
        self.separate_samples = (
            keyframe.planarconfig == PLANARCONFIG.SEPARATE and keyframe.samplesperpixel > 1
        )
        self.samples = keyframe.samplesperpixel
        # libjpeg decodes a tile whose end is missing (zeroed or cut off) with only a warning,
        # filling it with grey: such tiles must end with the EOI marker. NDPI's "tiles" are
        # restart intervals of one big JPEG: each ends with a restart marker (RST0-7), the
        # last with EOI, as OpenSlide checks too.
        self._end_markers: tuple[bytes, ...] = ()
        if keyframe.compression == COMPRESSION.JPEG:
            self._end_markers = (
                (*(bytes((0xFF, m)) for m in range(0xD0, 0xD8)), b"\xff\xd9")
                if keyframe.parent.is_ndpi
                else (b"\xff\xd9",)
            )
        self._planes = []
        for page in series.pages if pages is None else pages:
            tables = getattr(page, "jpegtables", None) or keyframe.jpegtables
            self._planes.append(
                _Plane(
                    page,
                    *tile_table(page),
                    tables,
                    JpegTileDecoder.for_page(keyframe, self.tile, tables),
                )
            )
        self.bands = len(self._planes) * self.samples
        pixels = self.tile[0] * self.tile[1] * len(self._planes)
        slow = keyframe.compression in SLOW_CODECS
        #: a read of this many stored tiles is shared with idle cores, this many at a time
        self._share_tiles = max(2, SHARE_PIXELS // (SLOW_FACTOR if slow else 1) // pixels)
        self._unit_tiles = 1 if slow else max(1, UNIT_PIXELS // pixels)
        #: NDPI restart intervals decoded several at a time (one page, intervals of 1x1 sampling)
        jpeg = self._planes[0].jpeg
        self._runs = len(self._planes) == 1 and jpeg is not None and jpeg.runs

    @property
    def jpeg(self) -> JpegTileDecoder | None:
        """The fast decoder of the level's JPEG tiles, or ``None`` where tifffile decodes them."""
        return self._planes[0].jpeg

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Return pixels ``[y0:y1, x0:x1]`` as a ``(h, w, bands)`` array."""
        # band-planar memory (see wsiarray.arrays.band_planar): tiles are transposed as they are pasted
        out = np.empty((self.bands, y1 - y0, x1 - x0), dtype=self.dtype).transpose(1, 2, 0)
        th, tw = self.tile
        rows = range(y0 // th, (y1 - 1) // th + 1)
        cols = range(x0 // tw, (x1 - 1) // tw + 1)
        fetched = self._fetch([(ty, tx) for ty in rows for tx in cols])

        def paste(unit: tuple[range, range]) -> None:
            unit_rows, unit_cols = unit
            if self._runs and self._paste_run(fetched, unit_rows, unit_cols, y0, y1, x0, x1, out):
                return
            for ty in unit_rows:
                for tx in unit_cols:
                    top, left = ty * th, tx * tw
                    ys = slice(max(y0, top) - top, min(y1, top + th) - top)
                    xs = slice(max(x0, left) - left, min(x1, left + tw) - left)
                    target = out[
                        max(y0, top) - y0 : min(y1, top + th) - y0,
                        max(x0, left) - x0 : min(x1, left + tw) - x0,
                    ]
                    self._paste(fetched, ty, tx, ys, xs, target)

        units = self._units(rows, cols)
        if len(rows) * len(cols) < self._share_tiles:
            for unit in units:
                paste(unit)
        else:
            _CREW.run(units, paste)  # type: ignore[arg-type]
        return out

    def _units(self, rows: range, cols: range) -> list[tuple[range, range]]:
        """A read's tiles as rectangles of about :data:`UNIT_PIXELS` (one JPEG 2000 tile): the
        pieces a read shares, and the restart intervals an NDPI run decodes at once (rows of
        one interval each, or intervals side by side in a row)."""
        step = self._unit_tiles
        if step >= len(cols) and (not self._runs or self.grid[1] == 1):
            down = step // len(cols)
            return [(rows[i : i + down], cols) for i in range(0, len(rows), down)]
        step = min(step, len(cols))
        return [
            (range(ty, ty + 1), cols[i : i + step])
            for ty in rows
            for i in range(0, len(cols), step)
        ]

    def _paste_run(
        self,
        fetched: dict[int, bytes],
        rows: range,
        cols: range,
        y0: int,
        y1: int,
        x0: int,
        x1: int,
        out: np.ndarray,
    ) -> bool:
        """Decode NDPI restart intervals ``rows`` x ``cols`` as one JPEG into ``out``.

        ``False`` (nothing pasted) where the run cannot be decoded that way: a missing, short
        or damaged interval, which the tile by tile path then reads or names.
        """
        plane, (th, tw) = self._planes[0], self.tile
        pieces = []
        for ty in rows:
            for tx in cols:
                index = ty * self.grid[1] + tx
                offset, count = int(plane.offsets[index]), int(plane.counts[index])
                data = fetched.get(offset, b"") if offset and count else b""
                if len(data) < count or not count:
                    return False
                pieces.append(data if len(data) == count else data[:count])
        bands = plane.jpeg.decode_run(pieces, len(rows), len(cols))  # type: ignore[union-attr]
        if bands is None:
            return False
        top, left = rows[0] * th, cols[0] * tw
        bottom, right = top + len(rows) * th, left + len(cols) * tw
        ys = slice(max(y0, top) - top, min(y1, bottom) - top)
        xs = slice(max(x0, left) - left, min(x1, right) - left)
        target = out[
            max(y0, top) - y0 : min(y1, bottom) - y0, max(x0, left) - x0 : min(x1, right) - x0
        ]
        for band, pixels in enumerate(bands):
            np.copyto(target[..., band], pixels[ys, xs], casting="unsafe")
        return True

    def _indices(self, ty: int, tx: int) -> list[tuple[_Plane, int]]:
        """The stored tiles (plane, index) that hold tile ``(ty, tx)``'s bands."""
        return [
            (plane, (sample * self.grid[0] + ty) * self.grid[1] + tx)
            for plane in self._planes
            for sample in range(self.samples if self.separate_samples else 1)
        ]

    def _fetch(self, tiles: list[tuple[int, int]]) -> dict[int, bytes]:
        """The raw bytes of ``tiles``' stored tiles, by offset, asked of the store at once."""
        ranges: dict[int, int] = {}
        for ty, tx in tiles:
            for plane, index in self._indices(ty, tx):
                offset, count = int(plane.offsets[index]), int(plane.counts[index])
                if offset and count:  # tiles may share data (a blank tile stored once)
                    ranges[offset] = max(count, ranges.get(offset, 0))
        try:
            blobs = self._store.read_ranges(list(ranges.items()))
        except Exception as exc:
            msg = (
                f"{self.path}: the tiles of level {self.level} at rows {tiles[0][0]}-"
                f"{tiles[-1][0]}, columns {tiles[0][1]}-{tiles[-1][1]} cannot be read "
                f"({type(exc).__name__}: {exc})"
            )
            raise CorruptTileError(msg) from exc
        return dict(zip(ranges, blobs, strict=True))

    def _paste(
        self,
        fetched: dict[int, bytes],
        ty: int,
        tx: int,
        ys: slice,
        xs: slice,
        target: np.ndarray,
    ) -> None:
        band = 0
        for plane, index in self._indices(ty, tx):
            # band by band: numpy copies an interleaved tile into band-planar memory ~9x
            # faster this way than as one (h, w, 3) assignment (43 vs 400 µs per 240² tile)
            for pixels in self._decode(fetched, plane, index, ty, tx):
                np.copyto(target[..., band], pixels[ys, xs], casting="unsafe")
                band += 1

    def _decode(
        self, fetched: dict[int, bytes], plane: _Plane, index: int, ty: int, tx: int
    ) -> list[np.ndarray]:
        """The bands of one stored tile, each ``(tile height, tile width)``."""
        offset, count = int(plane.offsets[index]), int(plane.counts[index])
        bands = 1 if self.separate_samples else self.samples
        if not count:
            # a tile the file does not store (sparse slides): background, as in OpenSlide
            return [np.broadcast_to(np.array(self.fill, self.dtype), self.tile)] * bands
        try:
            data = self._checked(offset, fetched.get(offset, b"")[:count], count)
            decoded = plane.jpeg.decode(data) if plane.jpeg is not None else None
            if decoded is not None:
                return decoded
            tile = decode_tile(self._keyframe, data, index, plane.jpegtables)
        except Exception as exc:
            msg = (
                f"{self.path}: the tile at row {ty}, column {tx} of level {self.level} cannot be "
                f"decoded ({type(exc).__name__}: {exc}). The file is damaged or incomplete; copy "
                "it again from the scanner or archive."
            )
            raise CorruptTileError(msg) from exc
        return [tile[..., c] for c in range(tile.shape[-1])]

    def _checked(self, offset: int, data: bytes, count: int) -> bytes:
        """A tile's bytes, refused if at offset 0, cut short or, for JPEG, without its end
        marker."""
        if not offset:
            # byte 0 is the TIFF header: a tile of a non-zero byte count there is a damaged
            # offset, not a tile the file leaves out (that is a byte count of 0)
            msg = f"its offset is 0 but its byte count {count:,}"
            raise ValueError(msg)
        if len(data) < count:
            msg = f"the file ends {count - len(data)} bytes into the tile"
            raise ValueError(msg)
        if self._end_markers and not data.rstrip(b"\x00").endswith(self._end_markers):
            msg = "the JPEG data does not end with its end-of-image or restart marker"
            raise ValueError(msg)
        return data
