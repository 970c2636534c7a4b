"""The compat layer's calls against the raw decode limit of the level they read (issue 14).

``python -m benchmarks --only "compat speed" --only "raw limit"``

Each case opens the slide untimed (``open_s`` is reported beside it), then times one call as
a large_image user writes it:

- ``tileIterator`` with 1024-px tiles, numpy, the loop touching every tile's pixels, at
  native scale (level 0), at ``scale={"magnification": 10}`` (the benchmark slide is 20x
  with levels at 1/4/16/32, so large_image reads 2048² boxes of level 0 and resizes each with
  PIL's LANCZOS to 1024²) and at 5x (level 1, read as stored); megapixels of the level read;
- ``getRegion`` of a 10000² base-pixel square (a quarter of the slide's width and height at
  most: 3000² on the quick slide) at full resolution and at 1/4 (level 1), numpy; megapixels
  of the level read. Its peak memory is the peak RSS above the RSS before the call (the
  kernel's high-water mark, reset through ``/proc/self/clear_refs`` just before), against
  the output array's size.

The references are ``raw limit, 2 threads`` (level 0) and ``raw limit, 2 threads, level 1``:
every stored tile of that level decoded once on 2 threads (``benchmarks.cases.raw_limit``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks import cases as base_cases

PREFIX = "compat speed: wsiarray"
TILE = 1024
SIDE = 10000
#: (case, reference, wanted ratio of rates)
TARGETS = [
    (f"{PREFIX} tileIterator 1024 base", "raw limit, 2 threads", 0.7),
    (f"{PREFIX} tileIterator 1024 at 10x", "raw limit, 2 threads", 0.7),
    (f"{PREFIX} tileIterator 1024 at 5x (level 1)", "raw limit, 2 threads, level 1", 0.7),
    (f"{PREFIX} getRegion 10000² base", "raw limit, 2 threads", 0.7),
    (f"{PREFIX} getRegion 10000² 1/4", "raw limit, 2 threads, level 1", 0.7),
]
#: getRegion's peak memory above the RSS before the call, per byte of output
MEMORY_TARGET = 1.5


def _open(path: str) -> tuple[Any, float]:
    from wsiarray.compat import large_image

    started = time.perf_counter()
    source = large_image.open(path)
    return source, time.perf_counter() - started


def tile_iterator(path: str, magnification: float | None = None) -> tuple[float, str, dict]:
    """Every 1024-px tile of a level through ``tileIterator``, the loop touching each."""
    source, open_s = _open(path)
    kwargs: dict[str, Any] = {"tile_size": {"width": TILE, "height": TILE}}
    if magnification is not None:
        kwargs["scale"] = {"magnification": magnification}
    pixels = 0
    started = time.perf_counter()
    for tile in source.tileIterator(format="numpy", **kwargs):
        array = tile["tile"]
        assert array[-1, -1, 0] >= 0  # the user's loop looks at the pixels
        # pixels of the level read (a resampled tile's box there: tile_width x tile_height)
        pixels += tile.get("tile_width", tile["width"]) * tile.get("tile_height", tile["height"])
    seconds = time.perf_counter() - started
    return pixels / 1e6, "MP", {"work_seconds": seconds, "open_s": open_s}


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def get_region(path: str, scale: float) -> tuple[float, str, dict]:
    """A 10000² base-pixel square (at most a quarter of the slide) through ``getRegion``."""
    source, open_s = _open(path)
    meta = source.getMetadata()
    side = min(SIDE, meta["sizeX"] // 2, meta["sizeY"] // 2)
    native = source.getNativeMagnification()["magnification"]
    kwargs = {
        "region": {"left": side // 2, "top": side // 2, "width": side, "height": side},
        "scale": {"magnification": native * scale},
        "format": "numpy",
    }
    try:  # the peak since now: reset the kernel's high-water mark to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
        before = _rss_kb("VmRSS")
    except OSError:  # pragma: no cover - not Linux
        before = 0
    started = time.perf_counter()
    image, _ = source.getRegion(**kwargs)
    seconds = time.perf_counter() - started
    peak = _rss_kb("VmHWM") - before
    assert image.shape[0] == round(side * scale)
    return (
        image.shape[0] * image.shape[1] / 1e6,
        "MP",
        {
            "work_seconds": seconds,
            "open_s": open_s,
            "output_mb": image.nbytes / 1e6,
            "peak_above_mb": peak * 1024 / 1e6,
        },
    )


FLOOR = "compat speed: output floor, a fresh 10000² RGBA array written on 2 threads"


def output_floor(path: str) -> tuple[float, str, dict]:
    """What any getRegion of that square pays besides decoding: a fresh output array of its
    size (allocated as getRegion allocates it) written once, band by band, on 2 threads."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from wsiarray.compat.large_image._reads import planar_empty

    source, _ = _open(path)
    meta = source.getMetadata()
    side = min(SIDE, meta["sizeX"] // 2, meta["sizeY"] // 2)
    started = time.perf_counter()
    out = planar_empty(side, side, 4, np.dtype(np.uint8), populate=True)
    step = -(-side // 16)

    def write(top: int) -> None:
        out[top : top + step] = 255

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(write, range(0, side, step)))
    seconds = time.perf_counter() - started
    return side * side / 1e6, "MP", {"work_seconds": seconds}


def cases() -> dict[str, tuple[Any, dict[str, Any]]]:
    """The cases, by name, for ``benchmarks.run_case.CASES``."""
    return {
        "raw limit, 2 threads, level 1": (base_cases.raw_limit, {"threads": 2, "level": 1}),
        f"{PREFIX} tileIterator 1024 base": (tile_iterator, {}),
        f"{PREFIX} tileIterator 1024 at 10x": (tile_iterator, {"magnification": 10}),
        f"{PREFIX} tileIterator 1024 at 5x (level 1)": (tile_iterator, {"magnification": 5}),
        f"{PREFIX} getRegion 10000² base": (get_region, {"scale": 1.0}),
        f"{PREFIX} getRegion 10000² 1/4": (get_region, {"scale": 0.25}),
        FLOOR: (output_floor, {}),
    }


def report(by_name: dict[str, dict[str, Any]]) -> list[str]:
    """The targets' rows (ratio to the raw limit of the level read; getRegion's memory)."""
    lines = [
        "",
        "| compat target (issue 14) | measured | wanted | met |",
        "|---|---:|---:|:-:|",
    ]
    for case, reference, wanted in TARGETS:
        ours, ref = by_name.get(case, {}), by_name.get(reference, {})
        if "rate" in ours and "rate" in ref:
            ratio = ours["rate"] / ref["rate"]
            met = "yes" if ratio >= wanted else "NO"
            lines.append(f"| {case} / {reference} | {ratio:.2f}x | >= {wanted}x | {met} |")
    for case, _, _ in TARGETS:
        row = by_name.get(case, {})
        if "peak_above_mb" in row and row.get("output_mb"):
            ratio = row["peak_above_mb"] / row["output_mb"]
            met = "yes" if ratio <= MEMORY_TARGET else "NO"
            lines.append(
                f"| {case}: peak RSS above the RSS before / output "
                f"({row['peak_above_mb']:.0f} / {row['output_mb']:.0f} MB) | {ratio:.2f}x | "
                f"<= {MEMORY_TARGET}x | {met} |"
            )
    region, raw, floor = (
        by_name.get(f"{PREFIX} getRegion 10000² base", {}),
        by_name.get("raw limit, 2 threads", {}),
        by_name.get(FLOOR, {}),
    )
    if "rate" in region and "rate" in raw and "rate" in floor:
        both = 1 / (1 / raw["rate"] + 1 / floor["rate"])  # decode, then write the output
        lines.append(
            f"| (not a target) getRegion 10000² base / (raw limit + output floor: "
            f"{both:.0f} MP/s) | {region['rate'] / both:.2f}x | | |"
        )
    opens = [
        f"{case}: {by_name[case]['open_s'] * 1000:.0f} ms"
        for case, _, _ in TARGETS
        if "open_s" in by_name.get(case, {})
    ]
    if opens:
        lines += ["", "Open (untimed above): " + "; ".join(opens) + "."]
    return lines
