"""The ``wsiarray`` command line: ``info`` and ``demo``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from wsiarray.errors import WsiArrayError

__all__ = ["main"]


def _level_table(slide: object) -> list[str]:
    from wsiarray.slide import Slide

    assert isinstance(slide, Slide)
    rows = [
        f"{'level':>5} {'width':>7} {'height':>7} {'downsample':>10} {'mag':>7} {'mm/px':>10} {'tile':>9}"
    ]
    for i, image in enumerate(slide.levels):
        attrs = slide.tree[f"level{i}"].attrs
        mag = f"{attrs['magnification']:.3g}" if attrs["magnification"] else "-"
        mm = f"{attrs['mm_x']:.3g}" if attrs["mm_x"] else "-"
        tile = f"{attrs['tile_width']}x{attrs['tile_height']}"
        rows.append(
            f"{i:>5} {image.shape[1]:>7} {image.shape[0]:>7} {attrs['downsample_x']:>10.4g} {mag:>7} {mm:>10} {tile:>9}"
        )
    return rows


def _info(path: str, as_json: bool) -> int:
    import wsiarray

    slide = wsiarray.open(path)
    meta = slide.metadata
    if as_json:
        payload = {
            **slide.tree.attrs,
            "channels": list(meta.channels),
            "dtype": meta.dtype,
            "levels": [list(level.shape) for level in meta.levels],
            "associated": {a.name: list(a.shape) for a in meta.associated},
        }
        print(json.dumps(payload, indent=2))
    else:
        print(repr(slide))
        print("\n".join(_level_table(slide)))
    return 0


def _demo(output: str) -> int:
    import dask
    import numpy as np
    from PIL import Image

    import wsiarray

    started = time.perf_counter()
    path = wsiarray.datasets.sample_slide()
    print(
        f"sample slide: {path} ({path.stat().st_size / 1e6:.1f} MB, ready in {time.perf_counter() - started:.1f} s)"
    )
    started = time.perf_counter()
    slide = wsiarray.open(path)
    print(f"opened in {(time.perf_counter() - started) * 1000:.1f} ms")
    print(repr(slide))
    print("\n".join(_level_table(slide)))
    image = slide.tree["level0"].image
    started = time.perf_counter()
    with dask.config.set(scheduler="threads"):
        mean = image.mean(("y", "x")).compute()
    seconds = time.perf_counter() - started
    megapixels = image.shape[0] * image.shape[1] / 1e6
    colour = ", ".join(f"{c}={v:.1f}" for c, v in zip(mean.c.values, mean.values, strict=True))
    print(
        f"level 0 mean colour: {colour}  ({megapixels:.1f} MP in {seconds:.2f} s, "
        f"{megapixels / seconds:.0f} MP/s, {image.data.npartitions} dask chunks)"
    )
    thumbnail = slide.thumbnail(512)
    Image.fromarray(np.ascontiguousarray(thumbnail)).save(output)
    print(
        f"thumbnail {thumbnail.shape[1]}x{thumbnail.shape[0]} written to {Path(output).resolve()}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 1 a slide error, 2 usage)."""
    parser = argparse.ArgumentParser(prog="wsiarray", description="Whole-slide images as arrays.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="metadata and level table of a slide")
    info.add_argument("slide")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    demo = commands.add_parser("demo", help="open the built-in sample slide and analyse it")
    demo.add_argument(
        "-o", "--output", default="wsiarray-demo-thumbnail.png", help="thumbnail PNG path"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            return _info(args.slide, args.json)
        return _demo(args.output)
    except WsiArrayError as exc:
        if args.debug:
            raise
        print(f"wsiarray: error: {exc}", file=sys.stderr)
        return 1
