"""Other codecs (issue 14, target 5): JPEG 2000 SVS and NDPI, each level's mean, three ways.

``python -m benchmarks.codecs [--repeat N] [--seconds S] [--quick]`` (or
``python -m benchmarks --only codecs``) reads every level of the real test slides in
``../shared/testdata`` (the TCGA JPEG 2000 SVS, 256-px tiles, compression 33005; the two
NDPI files, one JPEG per level whose restart intervals tifffile lists as 8-row "tiles"):

- **wsiarray**: ``wa.open(path).image(level).mean(("y", "x")).compute()`` on dask's threaded
  scheduler with 2 threads, the public API as a user calls it (the slide stays open in
  wsiarray's process-wide cache after the warm-up read, as it does for a user);
- **openslide**: ``read_region`` of 512-px blocks (tile-aligned: 256-px tiles, 8-row restart
  intervals) on a 2-thread pool, plus a per-band sum; a fresh ``OpenSlide`` handle for each
  read, so its tile cache never serves a read from the previous one (512 was OpenSlide's
  best block on both files among 256, 512, 1024, 2048);
- **raw limit**: the codec alone on 2 threads, every stored tile's bytes already in memory,
  plus a per-band sum. JPEG 2000: imagecodecs' ``jpeg2k_decode`` (OpenJPEG, one thread per
  call) of every tile, one task per thread over its share. NDPI: the fastest of three honest
  decodes of the level's restart-interval JPEG with simplejpeg (libjpeg-turbo) into a reused
  buffer: each interval alone (with the header tifffile builds for it), runs of 8 intervals
  (one SOF 64 rows high, the interval markers RST0-7 in order), and the level as two halves,
  one per thread. The fastest is named in the table.

Every case runs in a fresh process: one warm-up read, then reads until ``--seconds`` have
passed (at least 5), the median read taken. Cases are interleaved, ``--repeat`` rounds, and
the table gives the median of the rounds' medians, the CPU seconds per read (all threads),
and the machine's 1-minute load while the case ran. On a machine busy with other sessions'
work (Linux gives each session an equal share of the cores: a second thread then adds no
CPU), the wall-clock rates are noisy and the CPU ratio is the steadier measure of waste. The files are small (4-19 MP a level),
so a read is short and the per-call costs of the public API (graph, scheduler) weigh on the
smaller levels.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
#: name → (path below TESTDATA, number of levels)
SLIDES = {
    "tcga j2k svs": ("aperio/tcga-cr-7395-01a-01-ts1.svs", 2),
    "ndpi DAPI": ("hamamatsu/test3-DAPI-2-(387).ndpi", 4),
    "ndpi TRITC": ("hamamatsu/test3-TRITC 2 (560).ndpi", 4),
}
LIBRARIES = ("raw limit", "wsiarray", "openslide")
THREADS = 2
OPENSLIDE_BLOCK = 512
#: the goal: wsiarray's rate over the codec's raw limit
TARGET = 0.85


# ------------------------------------------------------------------------------------------
# the cases, in a child process
# ------------------------------------------------------------------------------------------


def _band_sum(pixels: np.ndarray, bands: int) -> np.ndarray:
    """Per-band sum of an interleaved ``(h, w, c)`` uint8 block (``c >= bands``) at memory
    speed: rows added as uint32 vectors, then folded per band (as ``cases._fast_sum``)."""
    height, width, channels = pixels.shape
    rows = pixels.reshape(height, width * channels).sum(axis=0, dtype=np.uint32)
    return rows.reshape(width, channels)[:, :bands].sum(axis=0, dtype=np.uint64)


def _stored_tiles(path: str, level: int) -> tuple[Any, list[bytes]]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[level].keyframe
        with open(path, "rb") as fh:
            tiles = []
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                fh.seek(offset)
                tiles.append(fh.read(count))
    return page, tiles


def _on_threads(parts: list[list[Any]], work: Callable[[Any], np.ndarray]) -> np.ndarray:
    """``work`` over each part on its own thread (one task per thread: no per-item hand-off)."""

    def run(part: list[Any]) -> np.ndarray:
        return sum((work(item) for item in part), np.zeros(3, np.uint64))

    with ThreadPoolExecutor(len(parts)) as pool:
        return sum(pool.map(run, parts))


def _j2k_limit(path: str, level: int) -> tuple[Callable[[], Any], str]:
    import imagecodecs

    _page, tiles = _stored_tiles(path, level)
    parts = [tiles[i::THREADS] for i in range(THREADS)]

    def decode(data: bytes) -> np.ndarray:
        return _band_sum(imagecodecs.jpeg2k_decode(data, numthreads=1), 3)

    return lambda: _on_threads(parts, decode), "jpeg2k_decode per tile"


def _sof_offset(header: bytes) -> int:
    """Offset of the SOF0 segment's height field in a JPEG header."""
    position = 2
    while header[position + 1] != 0xC0:
        position += 2 + int.from_bytes(header[position + 2 : position + 4], "big")
    return position + 5


def _ndpi_limits(path: str, level: int) -> dict[str, Callable[[], Any]]:
    import simplejpeg

    page, intervals = _stored_tiles(path, level)
    header, rows, width = page.jpegheader, page.tilelength, page.tilewidth
    assert page.imagewidth <= width, "one restart interval a row, as in these files"
    sof = _sof_offset(header)
    buffers = threading.local()

    def stream(first: int, count: int) -> bytes:
        """Intervals ``first`` to ``first + count - 1`` as one JPEG: SOF ``count`` intervals
        high; ``first`` a multiple of 8, so the markers between them are RST0-7 in order."""
        data = b"".join(intervals[first : first + count])
        patched = header[:sof] + (count * rows).to_bytes(2, "big") + header[sof + 2 :]
        return patched + data[:-2] + b"\xff\xd9"

    def decode(jpeg: bytes) -> np.ndarray:
        height, _, _, _ = simplejpeg.decode_jpeg_header(jpeg)
        size = height * width * 4
        if getattr(buffers, "size", 0) < size:
            buffers.buffer, buffers.size = np.empty(size, np.uint8), size
        pixels = simplejpeg.decode_jpeg(jpeg, colorspace="RGBX", buffer=buffers.buffer)
        return _band_sum(pixels, 3)

    n = len(intervals)
    singles = [stream(i, 1) for i in range(n)]
    runs = [stream(i, min(8, n - i)) for i in range(0, n, 8)]
    half = (n // 2 + 7) // 8 * 8
    halves = [stream(0, half), stream(half, n - half)]
    return {
        "simplejpeg per interval": lambda: _on_threads(
            [singles[i::THREADS] for i in range(THREADS)], decode
        ),
        "simplejpeg runs of 8 intervals": lambda: _on_threads(
            [runs[i::THREADS] for i in range(THREADS)], decode
        ),
        "simplejpeg 2 halves": lambda: _on_threads([[h] for h in halves], decode),
    }


def _wsiarray(path: str, level: int) -> Callable[[], Any]:
    import wsiarray as wa

    def read() -> Any:
        image = wa.open(path).image(level)
        return image.mean(("y", "x")).compute(scheduler="threads", num_workers=THREADS)

    return read


def _openslide(path: str, level: int) -> Callable[[], Any]:
    import openslide

    def read() -> Any:
        slide = openslide.OpenSlide(path)  # fresh: its tile cache starts empty
        width, height = slide.level_dimensions[level]
        downsample = slide.level_downsamples[level]
        step = OPENSLIDE_BLOCK
        blocks = [
            (x, y, min(step, width - x), min(step, height - y))
            for y in range(0, height, step)
            for x in range(0, width, step)
        ]

        def block(b: tuple[int, int, int, int]) -> np.ndarray:
            location = (int(b[0] * downsample), int(b[1] * downsample))
            return _band_sum(np.asarray(slide.read_region(location, level, (b[2], b[3]))), 3)

        total = _on_threads([blocks[i::THREADS] for i in range(THREADS)], block)
        slide.close()
        return total

    return read


def _time(read: Callable[[], Any], seconds: float) -> tuple[float, float, int]:
    """Median wall and CPU seconds of ``read`` after one warm-up call."""
    read()
    walls, cpus = [], []
    started = time.perf_counter()
    while len(walls) < 5 or (time.perf_counter() - started < seconds and len(walls) < 500):
        wall, cpu = time.perf_counter(), time.process_time()
        read()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), len(walls)


def run_case(slide: str, level: int, library: str, seconds: float) -> dict[str, Any]:
    """One case in this process: the median read's wall and CPU seconds."""
    path = str(TESTDATA / SLIDES[slide][0])
    load = os.getloadavg()[0]
    if library == "wsiarray":
        candidates = {"": _wsiarray(path, level)}
    elif library == "openslide":
        candidates = {"": _openslide(path, level)}
    elif slide.startswith("ndpi"):
        candidates = _ndpi_limits(path, level)
    else:
        read, name = _j2k_limit(path, level)
        candidates = {name: read}
    timed = {name: _time(read, seconds / len(candidates)) for name, read in candidates.items()}
    best = min(timed, key=lambda name: timed[name][0])
    wall, cpu, reads = timed[best]
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[level].keyframe
        megapixels = page.imagewidth * page.imagelength / 1e6
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "reads": reads,
        "megapixels": megapixels,
        "variant": best,
        "load": (load + os.getloadavg()[0]) / 2,
    }


# ------------------------------------------------------------------------------------------
# the runner
# ------------------------------------------------------------------------------------------


def _cases(quick: bool) -> list[tuple[str, int, str]]:
    return [
        (slide, level, library)
        for slide, (_path, levels) in SLIDES.items()
        for level in range(1 if quick else levels)
        for library in LIBRARIES
    ]


def _child(case: tuple[str, int, str], seconds: float) -> dict[str, Any]:
    slide, level, library = case
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.codecs",
            "--child",
            slide,
            str(level),
            library,
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"PYTHONWARNINGS": "ignore"},
    )
    if completed.returncode:
        lines = completed.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else "failed"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def summarise(runs: dict[tuple[str, int, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for (slide, level, library), results in runs.items():
        good = [r for r in results if "error" not in r]
        row: dict[str, Any] = {"slide": slide, "level": level, "library": library}
        if not good:
            rows.append(row | {"error": results[0]["error"]})
            continue
        seconds = statistics.median(r["seconds"] for r in good)
        row |= {
            "seconds": seconds,
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in good),
            "megapixels": good[0]["megapixels"],
            "rate": good[0]["megapixels"] / seconds,
            "reads": sum(r["reads"] for r in good),
            "variant": statistics.mode(r["variant"] for r in good),
            "load": [min(r["load"] for r in good), max(r["load"] for r in good)],
            "runs": len(good),
        }
        rows.append(row)
    return rows


def report(rows: list[dict[str, Any]], repeat: int) -> str:
    by_key = {(r["slide"], r["level"], r["library"]): r for r in rows}
    loads = [x for r in rows if "load" in r for x in r["load"]]
    lines = [
        (
            f"Whole-level mean, {THREADS} threads each; {repeat} fresh processes per case, "
            "interleaved; medians (a process's median read, then the median of the "
            f"processes). Machine: {os.cpu_count()} cores, 1-minute load "
            f"{min(loads, default=0):.1f}-{max(loads, default=0):.1f} while the cases ran."
        ),
        "",
        (
            "| slide | level | MP | raw limit | wsiarray | openslide | wsiarray / limit "
            f"(goal {TARGET}) | wsiarray / openslide | CPU ms per read: limit, wsiarray, "
            "openslide | limit / wsiarray in CPU | load |"
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for slide, (_path, levels) in SLIDES.items():
        for level in range(levels):
            cells = [by_key.get((slide, level, library)) for library in LIBRARIES]
            if not all(cells):
                continue
            limit, ours, theirs = cells
            if any("error" in c for c in cells):
                errors = "; ".join(f"{c['library']}: {c['error']}" for c in cells if "error" in c)
                lines.append(f"| {slide} | {level} | | {errors} | | | | | | | |")
                continue
            ratio = ours["rate"] / limit["rate"]
            cpu = ", ".join(f"{c['cpu_seconds'] * 1e3:.0f}" for c in cells)
            load = [x for c in cells for x in c["load"]]
            lines.append(
                f"| {slide} | {level} | {limit['megapixels']:.1f} "
                f"| {limit['rate']:.1f} MP/s ({limit['variant']}) | {ours['rate']:.1f} MP/s "
                f"| {theirs['rate']:.1f} MP/s | {ratio:.2f}x {'met' if ratio >= TARGET else 'NOT met'} "
                f"| {ours['rate'] / theirs['rate']:.2f}x | {cpu} "
                f"| {limit['cpu_seconds'] / ours['cpu_seconds']:.2f}x | {min(load):.1f}-{max(load):.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.codecs")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per case")
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="reads per process: at least 5, and this long"
    )
    parser.add_argument("--quick", action="store_true", help="level 0 only, one round")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--report", action="store_true", help="print the table of the last run")
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads((RESULTS / "codecs.json").read_text()), args.repeat))
        return
    if args.child:
        slide, level, library = args.child
        print(json.dumps(run_case(slide, int(level), library, args.seconds)))
        return
    repeat = 1 if args.quick else args.repeat
    cases = _cases(args.quick)
    runs: dict[tuple[str, int, str], list[dict[str, Any]]] = {case: [] for case in cases}
    for round_ in range(repeat):
        for case in cases:
            runs[case].append(_child(case, args.seconds))
            print(f"[{round_ + 1}/{repeat}] {case}: {json.dumps(runs[case][-1])}", flush=True)
    rows = summarise(runs)
    text = report(rows, repeat)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "codecs.md").write_text(text + "\n")
    (RESULTS / "codecs.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
