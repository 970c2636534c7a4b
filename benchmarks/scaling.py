"""Costs that stay flat as slides grow (issue 14, target 6).

``python -m benchmarks.scaling [--sizes 10000 50000 ...] [--repeat N] [--map-max SIDE]`` (or
``python -m benchmarks --only scaling``, which runs this with its defaults; ``--quick`` stops
at 100k² and maps tiles up to 50k²):

1. writes square Aperio-style SVS slides of 10k², 50k², 100k² and 200k² px (240-px JPEG
   tiles, levels at downsample 1, 4, 16, 64, a thumbnail second) into the user cache, once.
   They are *sparse*: every tile is one of a few pre-encoded streams (a blank tile of glass;
   one tile in 256 one of 8 H&E-like tissue tiles), written verbatim, so the 200k² slide
   (40 Gpx, 695k level-0 tiles) takes seconds and ~720 MB;
2. measures, each slide in a fresh process (libraries imported before the clock starts):
   ``wa.open`` (open), the first 256² ``slide.read`` at the centre (first read), building
   ``slide.image(0).mean(("y", "x"))`` without computing it (graph build; its task count),
   building ``slide.tree`` (every level) and the process's RSS after these; in another
   fresh process a whole-slide ``wa.TileGrid(slide, 256).map(...)`` of a cheap function on
   dask's threaded scheduler: its graph build, wall time and the process's peak RSS
   (``ru_maxrss``), with the RSS before the map for reference.

Prints a table and writes it to ``benchmarks/results/scaling.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
SIZES = (10_000, 50_000, 100_000, 200_000)
TILE = 240
DOWNSAMPLES = (1, 4, 16, 64)
#: one tile in TISSUE_EVERY² is tissue (the rest blank glass)
TISSUE_EVERY = 16
MPP = 0.25
#: side of the tiny slide each measuring process opens first (see _warm_up)
WARM_UP = 2400
VERSION = 1  # bump when the files change, so that cached copies are rewritten


# ------------------------------------------------------------------------------------------
# slides
# ------------------------------------------------------------------------------------------


def slide_path(side: int) -> Path:
    """Where the ``side``² slide is cached (never in the repository)."""
    from wsiarray.datasets import cache_dir

    return cache_dir() / f"scaling-{side}-v{VERSION}.svs"


def _abbreviated(stream: bytes) -> tuple[bytes, bytes]:
    """A JPEG split into its tables (DQT, DHT) and the abbreviated stream without them."""
    from wsiarray._jpeg_markers import EOI, SOI, segments

    header = segments(stream)
    scan = stream[2 + sum(map(len, header)) :]
    tables = [s for s in header if s[1] in (0xDB, 0xC4)]
    rest = [s for s in header if s[1] not in (0xDB, 0xC4)]
    return SOI + b"".join(tables) + EOI, SOI + b"".join(rest) + scan


def _tile_streams() -> tuple[bytes, bytes, list[bytes]]:
    """(JPEGTables, blank tile, tissue tiles): YCbCr 4:2:0 at quality 80, one set of tables."""
    import imagecodecs

    from wsiarray.synthetic import SlideContent

    def encode(pixels: np.ndarray) -> tuple[bytes, bytes]:
        stream = imagecodecs.jpeg8_encode(
            pixels, level=80, colorspace="rgb", outcolorspace="ycbcr", subsampling="420"
        )
        return _abbreviated(bytes(stream))

    tables, blank = encode(np.full((TILE, TILE, 3), (243, 243, 241), np.uint8))
    content = SlideContent((8 * TILE, 8 * TILE), seed=3)
    tissue = []
    for k in range(8):
        pixels = content.block(k * TILE, k * TILE, TILE, TILE)
        more_tables, stream = encode(np.ascontiguousarray(pixels))
        assert more_tables == tables  # libjpeg's standard tables at one quality
        tissue.append(stream)
    return tables, blank, tissue


def _description(side: int, suffix: str) -> str:
    return (
        f"Aperio Image Library v12.0.15 \r\n{side}x{side} [0,0 {side}x{side}] ({TILE}x{TILE})"
        f"{suffix} JPEG/RGB Q=80|AppMag = 40|MPP = {MPP:.4f}|ScanScope ID = SCALING"
    )


def write_sparse_slide(path: Path, side: int) -> Path:
    """Write the ``side``² sparse slide to ``path`` (atomically)."""
    import tifffile

    tables, blank, tissue = _tile_streams()

    def tiles(height: int, width: int) -> Iterator[bytes]:
        for ty in range(-(-height // TILE)):
            for tx in range(-(-width // TILE)):
                if ty % TISSUE_EVERY == 0 and tx % TISSUE_EVERY == 0:
                    yield tissue[(ty + tx) % len(tissue)]
                else:
                    yield blank

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".svs.part", dir=path.parent)
    os.close(handle)
    try:
        with tifffile.TiffWriter(temporary, bigtiff=side * side * 3 > 2**31) as tif:
            for index, downsample in enumerate(DOWNSAMPLES):
                size = side // downsample
                if size < TILE:
                    break
                tif.write(
                    tiles(size, size),
                    shape=(size, size, 3),
                    dtype=np.uint8,
                    tile=(TILE, TILE),
                    compression="jpeg",
                    photometric="ycbcr",
                    subsampling=(2, 2),
                    extratags=[(347, 7, len(tables), tables, True)],
                    description=_description(side, f" -> {size}x{size}" if index else ""),
                    metadata=None,
                )
                if index == 0:  # Aperio writes the thumbnail second; readers rely on it
                    tif.write(
                        np.full((512, 512, 3), 243, np.uint8),
                        compression="jpeg",
                        photometric="rgb",
                        description=_description(side, " -> 512x512 -"),
                        metadata=None,
                    )
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def ensure_slide(side: int) -> Path:
    path = slide_path(side)
    if not path.exists():
        started = time.perf_counter()
        print(f"writing {path} ...", flush=True)
        write_sparse_slide(path, side)
        print(
            f"  {time.perf_counter() - started:.1f} s, {path.stat().st_size / 1e6:.0f} MB",
            flush=True,
        )
    return path


# ------------------------------------------------------------------------------------------
# measurements (each in a fresh process: python -m benchmarks.scaling --child WHAT PATH)
# ------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def first_band_mean(tile: np.ndarray) -> float:
    """The cheap function the tile map applies: the first band's mean."""
    return float(tile[..., 0].mean())


def measure_open(path: str) -> dict[str, Any]:
    """Open, first 256² read at the centre, whole-level mean graph build, tree build."""
    import dask.array  # noqa: F401 - imported untimed, as the other benchmarks do
    import xarray  # noqa: F401

    import wsiarray as wa

    cold = _warm_up(wa)
    started = time.perf_counter()
    slide = wa.open(path)
    opened = time.perf_counter()
    height, width = slide.shape
    patch = slide.read(width // 2, height // 2, 256, 256)
    read = time.perf_counter()
    assert patch.shape == (256, 256, 3)
    mean = slide.image(0).mean(("y", "x"))
    built = time.perf_counter()
    tasks = len(mean.data.__dask_graph__())
    tree_started = time.perf_counter()
    tree = slide.tree
    tree_built = time.perf_counter()
    assert len(tree.children) >= 2
    return {
        "open_ms": (opened - started) * 1000,
        "first_read_ms": (read - opened) * 1000,
        "graph_build_ms": (built - read) * 1000,
        "graph_tasks": tasks,
        "tree_build_ms": (tree_built - tree_started) * 1000,
        "rss_mb": _rss_mb(),
        **cold,
    }


def _warm_up(wa: Any) -> dict[str, float]:
    """Open, read and build a graph on a tiny slide first: what the first call in a process
    pays once (lazy imports of the reader and its codecs, dask's and xarray's first-use set-up)
    stays out of the per-slide figures. Returns those first-call costs."""
    started = time.perf_counter()
    slide = wa.open(slide_path(WARM_UP))
    opened = time.perf_counter()
    slide.read(0, 0, 256, 256)
    read = time.perf_counter()
    slide.image(0).mean(("y", "x"))
    built = time.perf_counter()
    return {
        "cold_open_ms": (opened - started) * 1000,
        "cold_first_read_ms": (read - opened) * 1000,
        "cold_graph_build_ms": (built - read) * 1000,
    }


def measure_map(path: str) -> dict[str, Any]:
    """A whole-slide tile map at 256 px on the threaded scheduler: build, time, peak RSS."""
    import dask.array  # noqa: F401
    import xarray  # noqa: F401

    import wsiarray as wa

    slide = wa.open(path)
    before = _rss_mb()
    started = time.perf_counter()
    grid = wa.TileGrid(slide, 256)
    lazy = grid.map(first_band_mean)
    built = time.perf_counter()
    tasks = len(lazy.data.__dask_graph__())
    result = lazy.values
    done = time.perf_counter()
    assert np.isfinite(result).all()
    return {
        "tiles": int(result.size),
        "map_build_ms": (built - started) * 1000,
        "map_tasks": tasks,
        "map_s": done - built,
        "map_rss_before_mb": before,
        "map_peak_rss_mb": _peak_mb(),
    }


def _child(what: str, path: str) -> dict[str, Any]:
    result = {"open": measure_open, "map": measure_map}[what](path)
    print(json.dumps(result))
    return result


def run_child(what: str, path: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", "--child", what, str(path)],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"PYTHONWARNINGS": "ignore"},
    )
    if completed.returncode:
        tail = completed.stderr.strip().splitlines()[-1:] or ["failed"]
        return {"error": tail[0]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def _cell(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def report(rows: list[dict[str, Any]], repeat: int, load: str) -> str:
    lines = [
        (
            f"Sparse Aperio-style slides, {TILE}-px JPEG tiles; {repeat} fresh processes per slide "
            f"for open/read/build (medians), one for the tile map. Load: {load}."
        ),
        "",
        (
            "| slide | level-0 tiles | open | first 256² read | mean graph build (tasks) "
            "| tree build | RSS after these | 256-px tile map: tiles | map build | map time "
            "| RSS before | peak RSS |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        side = row["side"]
        tiles = (-(-side // TILE)) ** 2
        lines.append(
            f"| {side // 1000}k² ({side * side / 1e9:.1f} Gpx) | {tiles:,} "
            f"| {_cell(row.get('open_ms'), '.0f')} ms | {_cell(row.get('first_read_ms'), '.1f')} ms "
            f"| {_cell(row.get('graph_build_ms'), '.0f')} ms ({row.get('graph_tasks', '')}) "
            f"| {_cell(row.get('tree_build_ms'), '.0f')} ms "
            f"| {_cell(row.get('rss_mb'), '.0f')} MB "
            f"| {row.get('tiles', '')} | {_cell(row.get('map_build_ms'), '.0f')} ms "
            f"| {_cell(row.get('map_s'), '.1f')} s | {_cell(row.get('map_rss_before_mb'), '.0f')} MB "
            f"| {_cell(row.get('map_peak_rss_mb'), '.0f')} MB |"
        )
    biggest = rows[-1]
    smallest = rows[0]
    lines += ["", "| target (issue 14) | measured | wanted | met |", "|---|---:|---:|:-:|"]
    if "graph_build_ms" in biggest:
        build = biggest["graph_build_ms"]
        lines.append(
            f"| whole-level mean graph build at {biggest['side'] // 1000}k² | {build:.0f} ms "
            f"| <= 1000 ms | {'yes' if build <= 1000 else 'NO'} |"
        )
    for key, name in (("open_ms", "open"), ("first_read_ms", "first 256² read")):
        if key in biggest and key in smallest:
            ratio = biggest[key] / smallest[key]
            lines.append(
                f"| {name}, {biggest['side'] // 1000}k² / {smallest['side'] // 1000}k² "
                f"| {ratio:.2f}x | flat (<= 1.5x) | {'yes' if ratio <= 1.5 else 'NO'} |"
            )
    mapped = [r for r in rows if "map_peak_rss_mb" in r]
    if len(mapped) >= 2:
        growth = mapped[-1]["map_peak_rss_mb"] - mapped[-1]["map_rss_before_mb"]
        base = mapped[0]["map_peak_rss_mb"] - mapped[0]["map_rss_before_mb"]
        lines.append(
            f"| tile map RSS growth, {mapped[-1]['side'] // 1000}k² vs "
            f"{mapped[0]['side'] // 1000}k² | {growth:.0f} vs {base:.0f} MB "
            f"| bounded (<= 2x + 64 MB) | {'yes' if growth <= 2 * base + 64 else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--map-max", type=int, default=max(SIZES), help="largest slide side given a tile map"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return
    ensure_slide(WARM_UP)
    paths = {side: ensure_slide(side) for side in args.sizes}
    load = os.getloadavg()
    runs: dict[int, list[dict[str, Any]]] = {side: [] for side in args.sizes}
    for round_ in range(args.repeat):  # interleaved: a machine that slows moves every size alike
        for side in args.sizes:
            runs[side].append(run_child("open", paths[side]))
            print(f"[{round_ + 1}/{args.repeat}] {side}²: {json.dumps(runs[side][-1])}", flush=True)
    rows = []
    for side in args.sizes:
        good = [r for r in runs[side] if "error" not in r] or runs[side]
        row: dict[str, Any] = {"side": side}
        for key in ("open_ms", "first_read_ms", "graph_build_ms", "tree_build_ms", "rss_mb"):
            value = _median(good, key)
            if value is not None:
                row[key] = value
        if "graph_tasks" in good[0]:
            row["graph_tasks"] = good[0]["graph_tasks"]
        if "error" in good[0]:
            row["error"] = good[0]["error"]
        if side <= args.map_max:
            mapped = run_child("map", paths[side])
            print(f"map {side}²: {json.dumps(mapped)}", flush=True)
            row |= mapped
        rows.append(row)
    load_text = "load average {:.1f}, {:.1f}, {:.1f} at the start, {:.1f} at the end".format(
        *load, os.getloadavg()[0]
    )
    text = report(rows, args.repeat, load_text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.md").write_text(text + "\n")
    (RESULTS / "scaling.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
