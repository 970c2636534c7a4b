"""Concurrency stress of wsiarray's readers (issue 15, deliverable 3).

    python -m fuzz.stress --seconds 30 --seed 1              # what `make fuzz` runs
    python -m fuzz.stress --seconds 3 --report r.md --append

- **Threads**: for each real slide (an Aperio SVS, an NDPI, an OME-TIFF), one shared
  :class:`wsiarray.Slide` and one shared compat ``TileSource``; 8 threads read random windows
  of a seeded pool for ``seconds`` five ways (``Slide.read``, ``np.asarray(Slide.region(...))``,
  ``Slide.region(...).values``, a window of the dask image ``Slide.image(level)`` computed,
  compat ``getRegion`` with an output size). Each result must equal (``np.array_equal``) the same
  read done single-threaded before the threads start; after they stop, the pool is read
  single-threaded again and must still equal it (a cache the threads damaged would show).
- **Processes**: two spawned processes open the same file and, from a barrier, read the pool's
  windows over and over for ``seconds``; each result's digest must equal the parent's read.
- **A worker killed mid-job** is tests/test_cluster.py and tests/test_distributed.py
  (``make fuzz`` runs them with ``-k killed``), not repeated here.

The counts (reads, mismatches, errors) are printed and, with ``--report``, written as markdown.
Exit status 1 on any mismatch or error.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import queue
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fuzz import corpus

SLIDES = (
    "aperio/CMU-1-Small-Region.svs",
    "hamamatsu/test3-DAPI-2-(387).ndpi",
    "ome-tiff/OS-2-ndpi.ome.tif",
)
OPS = ("read", "region", "region.values", "image.compute", "compat getRegion")
#: windows in a slide's pool: few enough that several threads often read the same one at once
POOL = 12


@dataclass
class Tally:
    """Reads and their failures, per way of reading."""

    reads: Counter = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "reads": sum(self.reads.values()),
            "per_op": {op: self.reads[op] for op in OPS},
            "mismatches": len(self.mismatches),
            "errors": len(self.errors),
            "examples": (self.mismatches + self.errors)[:5],
        }


def pool(slide, name: str, seed: int, size: int = POOL) -> list[tuple[int, int, int, int, int]]:
    """``size`` windows ``(level, x, y, width, height)`` in level pixels, seeded by ``seed``
    and the slide's ``name``: any level, 16-512 px a side, some reaching past the level's right
    or bottom edge (clipped)."""
    rng = random.Random(f"{seed}-{name}")
    out = []
    for _ in range(size):
        level = rng.randrange(slide.level_count)
        height, width = slide.level_shapes[level]
        w, h = rng.randint(16, 512), rng.randint(16, 512)
        x, y = rng.randrange(max(1, width - w // 2)), rng.randrange(max(1, height - h // 2))
        out.append((level, x, y, w, h))
    return out


def readers(slide, source, images) -> dict[str, Callable[[tuple[int, ...]], np.ndarray]]:
    """The five ways of reading a window, on one shared slide, compat source and dask images."""
    from wsiarray.compat import large_image

    def region(window, *, values: bool) -> np.ndarray:
        level, x, y, w, h = window
        array = slide.region(x, y, w, h, units="level_pixels", level=level)
        return array.values if values else np.asarray(array)

    def image(window) -> np.ndarray:
        level, x, y, w, h = window
        return images[level].isel(y=slice(y, y + h), x=slice(x, x + w)).compute().values

    def compat(window) -> np.ndarray:
        level, x, y, w, h = window
        sy, sx = slide.level_downsamples[level]
        box = {"left": x * sx, "top": y * sy, "width": w * sx, "height": h * sy}
        output = {"maxWidth": w, "maxHeight": h}
        got, _ = source.getRegion(region=box, output=output, format=large_image.TILE_FORMAT_NUMPY)
        return got

    return {
        "read": lambda win: slide.read(win[1], win[2], win[3], win[4], level=win[0]),
        "region": lambda win: region(win, values=False),
        "region.values": lambda win: region(win, values=True),
        "image.compute": image,
        "compat getRegion": compat,
    }


def threads(path: Path, *, seconds: float, seed: int, count: int = 8) -> dict[str, Any]:
    """``count`` threads on one shared Slide of ``path`` for ``seconds`` (module docstring)."""
    import wsiarray as wa
    from wsiarray.compat import large_image

    started = time.monotonic()
    slide = wa.open(path)
    source = large_image.open(path)
    images = [slide.image(level) for level in range(slide.level_count)]
    ways = readers(slide, source, images)
    windows = pool(slide, path.name, seed)
    tasks = [(op, window) for op in OPS for window in windows]
    before = {task: ways[task[0]](task[1]) for task in tasks}
    tally = Tally()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def work(index: int) -> None:
        rng = random.Random(f"{seed}-{path.name}-{index}")
        while time.monotonic() < deadline:
            op, window = task = tasks[rng.randrange(len(tasks))]
            mismatch = error = None
            try:
                if not np.array_equal(ways[op](window), before[task]):
                    mismatch = f"{op} {window}: differs from the single-thread read"
            except Exception as exc:  # noqa: BLE001 - counted and reported
                error = f"{op} {window}: {type(exc).__name__}: {exc}"[:300]
            with lock:
                tally.reads[op] += 1
                if mismatch:
                    tally.mismatches.append(mismatch)
                if error:
                    tally.errors.append(error)

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 120)
    hung = sum(worker.is_alive() for worker in workers)
    after = sum(not np.array_equal(ways[op](window), before[op, window]) for op, window in tasks)
    return {
        "slide": path.name,
        "threads": count,
        "seconds": seconds,
        "windows": len(windows),
        **tally.as_dict(),
        "hung_threads": hung,
        "after_mismatches": after,
        "wall_s": round(time.monotonic() - started, 1),
    }


def digest(array: np.ndarray) -> str:
    """Shape, dtype and bytes of ``array``, hashed: what a process sends back instead of it."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{array.shape} {array.dtype}".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def _process_reads(path: str, windows, expected, seconds: float, barrier, results) -> None:
    """In a spawned process: open ``path``, wait for the other, read ``windows`` round and
    round for ``seconds``, compare each with the parent's digest; send back the tally."""
    import wsiarray as wa

    slide = wa.open(path)
    reads, mismatches, errors = 0, [], []
    barrier.wait(timeout=120)
    started = time.time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for window, want in zip(windows, expected, strict=True):
            level, x, y, w, h = window
            try:
                if digest(slide.read(x, y, w, h, level=level)) != want:
                    mismatches.append(f"read {window}: differs from the single-process read")
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"read {window}: {type(exc).__name__}: {exc}"[:300])
            reads += 1
    results.put({"reads": reads, "mismatches": mismatches, "errors": errors, "start": started})


def processes(path: Path, *, seconds: float, seed: int, count: int = 2) -> dict[str, Any]:
    """``count`` spawned processes read the same file at once (module docstring)."""
    import wsiarray as wa

    started = time.monotonic()
    slide = wa.open(path)
    windows = pool(slide, path.name, seed)
    expected = [digest(slide.read(x, y, w, h, level=lv)) for lv, x, y, w, h in windows]
    # spawn, not fork: a process with threads (a pytest session's dask pool) must not fork
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(count)
    results = context.Queue()
    children = [
        context.Process(
            target=_process_reads, args=(str(path), windows, expected, seconds, barrier, results)
        )
        for _ in range(count)
    ]
    for child in children:
        child.start()
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds + 180
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(results.get(timeout=1))
        except queue.Empty:
            if not any(child.is_alive() for child in children) and results.empty():
                break  # a process died before sending its tally
    for child in children:
        child.join(30)
    died = [f"a process sent no result (exit code {c.exitcode})" for c in children][len(got) :]
    got += [{"reads": 0, "mismatches": [], "errors": [text], "start": 0.0} for text in died]
    return {
        "slide": path.name,
        "processes": count,
        "seconds": seconds,
        "reads": [g["reads"] for g in got],
        "mismatches": sum(len(g["mismatches"]) for g in got),
        "errors": sum(len(g["errors"]) for g in got),
        "start_spread_s": round(max(g["start"] for g in got) - min(g["start"] for g in got), 3),
        "examples": [e for g in got for e in g["mismatches"] + g["errors"]][:5],
        "exit_codes": [child.exitcode for child in children],
        "wall_s": round(time.monotonic() - started, 1),
    }


def campaign(seconds: float, seed: int, thread_count: int = 8) -> dict[str, Any]:
    """Threads on each slide of :data:`SLIDES` present, then two processes on each."""
    paths = [corpus.TESTDATA / s for s in SLIDES if (corpus.TESTDATA / s).exists()]
    started = time.monotonic()
    data = {
        "seed": seed,
        "threads": [threads(p, seconds=seconds, seed=seed, count=thread_count) for p in paths],
        "processes": [processes(p, seconds=seconds / len(paths), seed=seed) for p in paths],
    }
    data["seconds"] = round(time.monotonic() - started, 1)
    return data


def failed(data: dict[str, Any]) -> bool:
    return any(
        r["mismatches"]
        or r["errors"]
        or r.get("hung_threads")
        or r.get("after_mismatches")
        or any(r.get("exit_codes", []))
        for r in data["threads"] + data["processes"]
    )


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "## Stress: one shared Slide under threads, one file under two processes",
        "",
        (
            f"`python -m fuzz.stress` — seed {data['seed']}, {data['seconds']} s. Every result is "
            "compared (np.array_equal, or a SHA-256 of shape, dtype and bytes across processes) "
            "with the same window read single-threaded in one process."
        ),
        "",
        "| slide | threads | s | reads | per way | mismatches | errors | after |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in data["threads"]:
        ways = ", ".join(f"{op} {n}" for op, n in r["per_op"].items())
        lines.append(
            f"| {r['slide']} | {r['threads']} | {r['seconds']:g} | {r['reads']} | {ways} | "
            f"{r['mismatches']} | {r['errors']} | {r['after_mismatches']} |"
        )
    lines += [
        "",
        "| slide | processes | s | reads per process | mismatches | errors | start spread (s) |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in data["processes"]:
        lines.append(
            f"| {r['slide']} | {r['processes']} | {r['seconds']:g} | "
            f"{', '.join(map(str, r['reads']))} | {r['mismatches']} | {r['errors']} | "
            f"{r['start_spread_s']} |"
        )
    examples = [e for r in data["threads"] + data["processes"] for e in r["examples"]]
    lines += ["", *(f"- {e}" for e in examples[:10])] if examples else []
    lines += [
        "",
        (
            "A worker killed mid-job: tests/test_cluster.py and tests/test_distributed.py "
            "(`make fuzz` runs them with `-k killed`)."
        ),
    ]
    return "\n".join(lines) + "\n"


def summary(data: dict[str, Any]) -> str:
    t = data["threads"]
    p = data["processes"]
    return (
        f"stress (seed {data['seed']}, {data['seconds']} s): threads {sum(r['reads'] for r in t)} "
        f"reads, {sum(r['mismatches'] + r['after_mismatches'] for r in t)} mismatches, "
        f"{sum(r['errors'] for r in t)} errors; processes {sum(sum(r['reads']) for r in p)} "
        f"reads, {sum(r['mismatches'] for r in p)} mismatches, {sum(r['errors'] for r in p)} "
        "errors"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.stress", description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="threads' time per slide (default 30)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--report", type=Path, default=None, help="markdown report path")
    parser.add_argument("--append", action="store_true", help="append to --report")
    args = parser.parse_args(argv)
    data = campaign(args.seconds, args.seed, args.threads)
    if args.report:
        with args.report.open("a" if args.append else "w") as file:
            file.write(("\n" if args.append else "") + markdown(data))
    print(summary(data))
    return 1 if failed(data) else 0


if __name__ == "__main__":
    sys.exit(main())
