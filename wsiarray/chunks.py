"""Chunk policy: how big a piece of a level one dask task reads, in one place.

Three words, three meanings, never mixed:

- a **tile** is the file's own storage unit (a TIFF tile or strip, an OpenSlide tile, a zarr
  chunk of an OME-Zarr level): :attr:`wsiarray.sources.LevelInfo.tile`;
- a **chunk** is a dask chunk of a level, as many whole tiles as fit in :data:`DEFAULT_CHUNK`
  pixels a side (:func:`dask_chunks`), or of a resampled image, sized by the pixels it reads
  (:func:`scaled_chunks`);
- a **store chunk** is a chunk of a zarr array wsiarray writes (``export``): its own option.
"""

from __future__ import annotations

import math
import sys

__all__ = [
    "DEFAULT_CHUNK",
    "DIRECT_READ_PIXELS",
    "DISTRIBUTED_CHUNK",
    "ChunksLike",
    "aligned_chunks",
    "dask_chunks",
    "default_chunk",
    "scaled_chunks",
    "tiles_per_task",
]

#: Default dask chunk side in pixels: as many whole native tiles as fit in this much.
#: An RGB 8-bit chunk of at most 3072² px (2880² for 240-px tiles: 25 MB) stays under glibc's
#: largest mmap threshold (32 MiB): a freed chunk's memory is reused by the next one instead
#: of being mapped, page-faulted and zeroed afresh, as a 4096² chunk (50 MB) always is.
#: Whole-level mean on 2 cores: 346 vs 323 MP/s (medians of 6), page faults 2.9k vs 10-27k.
#: Tiles are never rounded up past it: 13 tiles of 240 px (3120², 29 MB) measured no faster
#: than 12 (2880²) on the 40000 x 30000 slide (medians of 5: 242 vs 247 MP/s, RSS 190 vs 182
#: MB) and 10 % slower on the 8000 x 6000 one (6 tasks on 2 threads balance worse than 9),
#: and rounding up would take 2000-px tiles to 4000² chunks (48 MB).
DEFAULT_CHUNK = 3072

#: Default chunk side when dask computes on a ``dask.distributed`` client by default (the
#: client made when the graph is built; :func:`default_chunk`): 25 tiles of 240 px, 6000²
#: (108 MB RGB), near dask's own advice for distributed chunks (~100 MB). A task costs far
#: more on a cluster than on a thread: the worker's event loop, the scheduler and the client
#: handle its messages on the same cores (no-op tasks on a LocalCluster of 2 single-thread
#: workers: 23-34 ms of CPU each across its processes on this 2-core machine under load 10-13),
#: and dask's nannies set ``MALLOC_TRIM_THRESHOLD_``, so every chunk is mmapped and faulted
#: afresh whatever its size. Whole-level mean of the 40000 x 30000 slide on that cluster:
#: 42 tasks instead of 154, 16.2 and 22.5 s of CPU across its processes instead of 24.9 and
#: 24.7 s with 2880² chunks (paired runs, load 6-15; threads: 9.2-11.8 s); on a quiet machine
#: chunks=6000 gave 0.86x of threads against 0.74x (docs/performance.md). Threads keep
#: :data:`DEFAULT_CHUNK`, whose chunks glibc reuses there (see above).
DISTRIBUTED_CHUNK = 6144

#: Regions of at most this many output pixels are read directly in the calling thread, not
#: through dask: a dask compute costs ~1 ms of its own, more than a patch's decode.
DIRECT_READ_PIXELS = 4096 * 4096

#: A dask chunk side in pixels, ``(rows, columns)``, or None for :func:`default_chunk`.
ChunksLike = int | tuple[int, int] | None


def default_chunk() -> int:
    """The default chunk side now: :data:`DISTRIBUTED_CHUNK` when dask's default scheduler is
    a ``dask.distributed`` client (outside that client's tasks), else :data:`DEFAULT_CHUNK`.

    Never imports dask or distributed: no client exists before they are imported.

    Examples
    --------
    >>> import dask
    >>> with dask.config.set(scheduler="threads"):
    ...     default_chunk()
    3072
    """
    dask = sys.modules.get("dask")
    config = getattr(dask, "config", None)
    if config is None:
        return DEFAULT_CHUNK
    # a Client made as the default sets scheduler="dask.distributed" (or the client itself)
    scheduler = config.get("scheduler", None)
    named = isinstance(scheduler, str) and scheduler in ("dask.distributed", "distributed")
    if not (named or "Client" in type(scheduler).__name__):
        return DEFAULT_CHUNK
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:  # inside a task (a cohort's per-slide work): its reads run in that worker thread
            distributed.get_worker()
        except ValueError:
            return DISTRIBUTED_CHUNK
        return DEFAULT_CHUNK
    return DISTRIBUTED_CHUNK


def _pair(target: ChunksLike) -> tuple[int, int]:
    if target is None:
        side = default_chunk()
        return side, side
    if isinstance(target, int):
        return target, target
    return int(target[0]), int(target[1])


def dask_chunks(
    tile: tuple[int, int], shape: tuple[int, int], target: ChunksLike = None
) -> tuple[int, int]:
    """Dask chunk shape of a level: as many whole tiles as fit in ``target`` pixels a side.

    Parameters
    ----------
    tile : tuple of int
        ``(rows, cols)`` of the level's native tile (:attr:`LevelInfo.tile`).
    shape : tuple of int
        ``(height, width)`` of the level.
    target : int or tuple of int or None
        Largest chunk side(s) in pixels; ``None`` means :func:`default_chunk`. Rounded down
        to whole tiles (at least one) and capped at the level size.

    Examples
    --------
    >>> dask_chunks((240, 240), (30000, 40000))
    (2880, 2880)
    >>> dask_chunks((8, 3968), (4864, 3968), 1000)
    (1000, 3968)
    """
    out = []
    for side, size, want in zip(tile, shape, _pair(target), strict=True):
        tiles = max(1, want // side)
        out.append(max(1, min(side * tiles, size)))
    return out[0], out[1]


def aligned_chunks(
    chunk: tuple[int, int], shape: tuple[int, int], offset: tuple[int, int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Dask chunks of a level whose tile grid starts at ``offset``: chunk edges on tile edges.

    The first chunk also takes the partial tile before ``offset``; the others are ``chunk``
    long (the last one what remains).

    Examples
    --------
    >>> aligned_chunks((128, 128), (300, 200), (44, 0))
    ((172, 128), (128, 72))
    """
    axes = []
    for side, size, start in zip(chunk, shape, offset, strict=True):
        first = min(size, start + side) if start else min(size, side)
        rest = size - first
        axes.append((first, *(side,) * (rest // side), *((rest % side,) if rest % side else ())))
    return axes[0], axes[1]


def scaled_chunks(
    factor: tuple[float, float], shape: tuple[int, int], target: ChunksLike = None
) -> tuple[int, int]:
    """Dask chunk shape of a resampled image: each chunk reads about ``target`` pixels a side.

    Parameters
    ----------
    factor : tuple of float
        Read-level pixels per output pixel, ``(rows, cols)``.
    shape : tuple of int
        ``(height, width)`` of the output.
    target : int or tuple of int or None
        Read pixels per chunk side; ``None`` means :func:`default_chunk`.

    Examples
    --------
    >>> scaled_chunks((2.0, 2.0), (7500, 10000))
    (1536, 1536)
    """
    return tuple(  # type: ignore[return-value]
        max(1, min(math.floor(want / f), size))
        for want, f, size in zip(_pair(target), factor, shape, strict=True)
    )


def tiles_per_task(
    stride: tuple[int, int], factor: tuple[float, float], target: int | None = None
) -> tuple[int, int]:
    """Tiles of a grid per task along each axis, so that a task reads about ``target`` px a side.

    A resampled grid reads more pixels than it shows (4 times as many at 10x from a 20x
    level): memory per task follows the pixels read.

    Parameters
    ----------
    stride : tuple of int
        Pixels between neighbouring tiles' starts, ``(rows, cols)``, at the grid's resolution.
    factor : tuple of float
        Read-level pixels per grid pixel, ``(rows, cols)``.
    target : int, optional
        Read pixels per task side; :func:`default_chunk` by default.

    Examples
    --------
    >>> tiles_per_task((224, 224), (2.0, 2.0))
    (6, 6)
    """
    target = default_chunk() if target is None else target
    return tuple(  # type: ignore[return-value]
        max(1, math.floor(target / f / s)) for s, f in zip(stride, factor, strict=True)
    )
