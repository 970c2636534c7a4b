"""Cohorts: many slides' headers as one table, and per-tile features over all of them.

:func:`open_cohort` opens the headers of many slides (paths or URLs) in parallel and lists
them, one row per slide, the slides that did not open with their error. :func:`map_tiles`
applies a function to the tiles of every slide in one dask computation and writes the
results as a Parquet dataset, **one part per slide**, written whole or not at all: memory
stays bounded by the slides in flight, an interrupted job loses only the slides it was
working on, ``resume=True`` skips the slides whose part is complete, and a slide that fails
is recorded with its error without stopping the others.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from wsiarray.api import open as open_slide
from wsiarray.errors import OptionError, WsiArrayError
from wsiarray.sources import StorageOptions, redact

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COHORT_COLUMNS", "map_tiles", "open_cohort"]

#: The columns of :func:`open_cohort`'s table.
COHORT_COLUMNS = (
    "id",
    "path",
    "format",
    "reader",
    "width",
    "height",
    "mm_x",
    "mm_y",
    "magnification",
    "levels",
    "error",
)
#: Threads opening headers: the work is waiting on disks and servers, not the CPU.
OPEN_THREADS = 16


def open_cohort(
    slides: Iterable[str | os.PathLike[str]] | pd.DataFrame,
    *,
    storage_options: Mapping[str, Any] | None = None,
    reader: str = "auto",
    errors: Literal["record", "raise"] = "record",
    threads: int = OPEN_THREADS,
) -> pd.DataFrame:
    """Open the headers of many slides in parallel: one row per slide.

    Parameters
    ----------
    slides : iterable of paths or URLs, or pandas.DataFrame
        The slides; a table needs a ``path`` column and may have an ``id`` column (by
        default a slide's id is its file name without the suffix, made unique).
    storage_options : mapping, optional
        For URLs: the filesystem's options (see :func:`wsiarray.open`).
    reader : str
        The reader, ``"auto"`` by default.
    errors : {"record", "raise"}
        ``"record"`` (default) lists a slide that does not open with its error in the
        ``error`` column; ``"raise"`` raises the first such error.
    threads : int
        Headers opened at once.

    Returns
    -------
    pandas.DataFrame
        :data:`COHORT_COLUMNS`; ``width``/``height`` of level 0 in pixels, ``error`` empty
        for slides that opened. Paths of URLs are shown redacted.
    """
    import pandas as pd

    if errors not in ("record", "raise"):
        msg = f"errors={errors!r}: use 'record' or 'raise'"
        raise OptionError(msg)
    if isinstance(slides, pd.DataFrame):
        if "path" not in slides.columns:
            msg = "the cohort table needs a 'path' column"
            raise OptionError(msg)
        paths = [str(p) for p in slides["path"]]
        ids = [str(i) for i in slides["id"]] if "id" in slides.columns else _ids(paths)
    else:
        paths = [os.fspath(p) for p in slides]
        ids = _ids(paths)
    if len(set(ids)) != len(ids):
        msg = "slide ids must be unique"
        raise OptionError(msg)

    def header(path: str) -> dict[str, Any]:
        try:
            slide = open_slide(path, reader=reader, storage_options=storage_options)
        except WsiArrayError as exc:
            if errors == "raise":
                raise
            return {"path": redact(path), "error": f"{type(exc).__name__}: {exc}"}
        height, width = slide.shape
        return {
            "path": slide.path,
            "format": slide.metadata.format,
            "reader": slide.metadata.reader,
            "width": width,
            "height": height,
            "mm_x": slide.mm_x,
            "mm_y": slide.mm_y,
            "magnification": slide.magnification,
            "levels": slide.level_count,
            "error": "",
        }

    with ThreadPoolExecutor(max(1, threads)) as pool:
        rows = list(pool.map(header, paths))
    table = pd.DataFrame([{"id": i, **row} for i, row in zip(ids, rows, strict=True)])
    table = table.reindex(columns=list(COHORT_COLUMNS))
    table["error"] = table["error"].fillna("")
    # the paths as given (a signed URL's secret included) and the storage options, for
    # map_tiles, out of sight
    table.attrs["sources"] = dict(zip(ids, paths, strict=True))
    table.attrs["storage_options"] = StorageOptions(storage_options)
    return table


def _ids(paths: list[str]) -> list[str]:
    """File names without their suffix, numbered where they repeat."""
    stems = [re.sub(r"\.[^./]*$", "", p.rstrip("/").rsplit("/", 1)[-1]) for p in paths]
    seen: dict[str, int] = {}
    ids = []
    for stem in stems:
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        ids.append(stem if count == 0 else f"{stem}-{count}")
    return ids


def map_tiles(
    cohort: pd.DataFrame,
    function: Callable[..., Any],
    output: str | os.PathLike[str],
    *,
    size: int,
    magnification: float | None = None,
    mpp: float | None = None,
    level: int | None = None,
    tissue: bool = False,
    min_tissue: float = 0.5,
    storage_options: Mapping[str, Any] | None = None,
    resume: bool = True,
    progress: bool = True,
    **kwargs: Any,
) -> pd.DataFrame:
    """Apply ``function`` to the tiles of every slide; write a Parquet part per slide.

    One dask computation over the cohort (threads by default, or the active
    ``distributed`` client), one task per slide: each reads its slide's tiles and writes
    ``output/<id>.parquet`` (to a temporary name, renamed when complete).

    Parameters
    ----------
    cohort : pandas.DataFrame
        :func:`open_cohort`'s table (rows with an ``error`` are skipped and reported).
    function : callable
        ``function(tile, **kwargs)`` takes a ``(y, x, c)`` numpy tile and returns a number
        or a 1-D array of the same length for every tile (as :meth:`TileGrid.map`).
    output : str or os.PathLike
        Directory of the dataset (created): ``pandas.read_parquet(output)`` reads it whole.
    size : int
        Tile side in pixels at the chosen resolution.
    magnification, mpp, level : optional
        The tiles' resolution, one way at most (full resolution by default).
    tissue : bool
        Only tiles with at least ``min_tissue`` tissue (:func:`wsiarray.tissue_mask`).
    min_tissue : float
        See ``tissue``.
    storage_options : mapping, optional
        For URLs (see :func:`wsiarray.open`); by default those :func:`open_cohort` was
        given.
    resume : bool
        Skip slides whose part is already complete (default); ``False`` recomputes them.
    progress : bool
        Show a progress bar (dask's, on the local schedulers).
    **kwargs
        Passed to ``function``.

    Returns
    -------
    pandas.DataFrame
        One row per slide: ``id``, ``path``, ``status`` (``"written"``, ``"skipped"`` —
        complete from an earlier run —, or ``"failed"``), ``tiles`` written, ``part`` and
        ``error``. Each part's rows: ``slide``, ``tile_row``, ``tile_col``, ``y_mm``,
        ``x_mm`` (tile centres; base pixels where the slide has no pixel size) and the
        features ``f0``, ``f1``, ...
    """
    import dask
    import pandas as pd

    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    if storage_options is None and "storage_options" in cohort.attrs:
        storage_options = StorageOptions(cohort.attrs["storage_options"]).to_dict()
    tasks, rows = [], []
    for record in cohort.to_dict("records"):
        part = folder / f"{record['id']}.parquet"
        row = {"id": record["id"], "path": record["path"], "part": str(part), "error": ""}
        if record.get("error"):
            rows.append({**row, "status": "failed", "tiles": 0, "error": record["error"]})
        elif resume and part.exists():
            rows.append({**row, "status": "skipped", "tiles": _rows_in(part)})
        else:
            rows.append(row)
            tasks.append(
                dask.delayed(_slide_part, pure=False)(
                    record["id"],
                    _real_path(cohort, record),
                    part,
                    function,
                    dict(kwargs),
                    {"size": size, "magnification": magnification, "mpp": mpp, "level": level},
                    tissue,
                    min_tissue,
                    storage_options,
                )
            )
    results = iter(_compute(tasks, progress))
    for row in rows:
        if "status" not in row:
            row.update(next(results))
    return pd.DataFrame(rows, columns=["id", "path", "status", "tiles", "part", "error"])


def _real_path(cohort: pd.DataFrame, record: Mapping[str, Any]) -> str:
    """The path to open: as given to :func:`open_cohort` (its table shows URLs redacted)."""
    return str(cohort.attrs.get("sources", {}).get(record["id"], record["path"]))


def _compute(tasks: list[Any], progress: bool) -> list[dict[str, Any]]:
    import dask

    if not tasks:
        return []
    if progress and _local_scheduler():
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return list(dask.compute(*tasks))
    return list(dask.compute(*tasks))


def _local_scheduler() -> bool:
    try:
        from distributed import default_client

        default_client()
    except (ImportError, ValueError):
        return True
    return False


def _slide_part(
    slide_id: str,
    path: str,
    part: Path,
    function: Callable[..., Any],
    kwargs: dict[str, Any],
    grid: dict[str, Any],
    tissue: bool,
    min_tissue: float,
    storage_options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One slide's tiles, written to ``part``; its outcome (never raises a slide's error)."""
    import dask

    from wsiarray.tiling import TileGrid
    from wsiarray.tissue import tissue_mask

    try:
        slide = open_slide(path, storage_options=storage_options)
        # a slide without a pixel size gets its mask from its smallest level
        mask = (
            (tissue_mask(slide, mpp=None) if slide.mm_x is None else tissue_mask(slide))
            if tissue
            else None
        )
        resolution = {k: v for k, v in grid.items() if k != "size" and v is not None}
        tiles = TileGrid(slide, grid["size"], mask=mask, min_tissue=min_tissue, **resolution)
        with dask.config.set(scheduler="sync"):  # the slides run in parallel, not their tiles
            features = tiles.map(function, **kwargs)
            values = np.asarray(features.values, dtype=np.float64)
        table = _feature_table(slide_id, features, values, tiles.keep)
        temporary = part.with_name(f".{part.name}.{uuid.uuid4().hex}.partial")
        table.to_parquet(temporary, index=False)
        temporary.replace(part)  # complete or absent: resume trusts a part that exists
    except Exception as exc:  # noqa: BLE001 - recorded per slide; the others go on
        text = redact(f"{type(exc).__name__}: {exc}")
        return {"status": "failed", "tiles": 0, "error": text}
    return {"status": "written", "tiles": len(table)}


def _feature_table(
    slide_id: str, features: Any, values: np.ndarray, keep: np.ndarray
) -> pd.DataFrame:
    import pandas as pd

    values = values.reshape(*values.shape[:2], -1)
    rows, cols = np.nonzero(keep[: values.shape[0], : values.shape[1]])
    data: dict[str, Any] = {
        "slide": np.full(len(rows), slide_id, dtype=object),
        "tile_row": rows.astype(np.int32),
        "tile_col": cols.astype(np.int32),
        "y_mm": np.asarray(features["tile_y"].values)[rows],
        "x_mm": np.asarray(features["tile_x"].values)[cols],
    }
    for index in range(values.shape[2]):
        data[f"f{index}"] = values[rows, cols, index]
    return pd.DataFrame(data)


def _rows_in(part: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(part).metadata.num_rows)
