"""One-shot commands (issue 14, target 3): how fast a fresh process answers.

``python -m benchmarks.oneshot [--rounds N]`` (or ``python -m benchmarks --only oneshot``):

1. every command below runs once per round in a fresh process, the rounds interleaved (the
   order reversed every other round), so a machine that slows down moves every command alike;
   ``wsiarray info`` and the OpenSlide one-liner are measured as pairs (adjacent in every
   round) and their ratio is the median of the per-pair ratios;
2. each wsiarray command runs once more under ``python -X importtime``: the modules it
   imports, whether it imports the heavy ones (xarray, pandas, dask, ...), and its largest
   imports by cumulative time.

Bytecode is cached (``PYTHONPYCACHEPREFIX`` in the user cache; one warm-up round not counted),
as an installed package has it: an editable install under ``PYTHONDONTWRITEBYTECODE`` would
compile wsiarray's own modules in every process. Load averages are recorded before and after:
the machine is shared. Prints a table and writes ``benchmarks/results/oneshot.{md,json}``.
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
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
CMU = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "testdata"
    / "aperio"
    / "CMU-1-Small-Region.svs"
)
#: the issue's reference: what OpenSlide needs to print the facts ``wsiarray info`` prints
ONE_LINER = (
    "import openslide, sys; p = sys.argv[1]; s = openslide.OpenSlide(p); "
    "print(s.dimensions, s.level_count, dict(s.properties))"
)
#: a 512² window of level 0 (the slide is 2220 x 2967)
WINDOW = (1000, 1000, 512, 512)
VALUES = f"import sys; import wsiarray as wa; s = wa.open(sys.argv[1]); s.region{WINDOW}.values"
#: modules a one-shot command should not need to import (each costs 0.1-1 s here)
HEAVY = ("xarray", "pandas", "dask", "distributed", "zarr", "scipy", "pyarrow", "fsspec", "PIL")
#: (command, wanted wall time in ms)
WALL_TARGETS = {
    "wsiarray region 512²": 400,
    "wsiarray thumbnail": 400,
    "fresh slide.region(...).values": 400,
}
INFO_RATIO = 1.3
#: the commands whose imports are listed
TRACED = ("wsiarray info", *WALL_TARGETS)


def commands(slide: Path, out: Path) -> dict[str, list[str]]:
    """The commands measured, as argument lists (the ``wsiarray`` script beside this Python)."""
    python = sys.executable
    script = Path(python).with_name("wsiarray")
    cli = [str(script)] if script.exists() else [python, "-m", "wsiarray"]
    left, top, width, height = (str(v) for v in WINDOW)
    return {
        "openslide one-liner": [python, "-c", ONE_LINER, str(slide)],
        "wsiarray info": [*cli, "info", str(slide)],
        "wsiarray region 512²": [
            *cli,
            "region",
            str(slide),
            *("--left", left, "--top", top, "--width", width, "--height", height),
            *("-o", str(out / "region.png")),
        ],
        "wsiarray thumbnail": [*cli, "thumbnail", str(slide), "-o", str(out / "thumbnail.png")],
        "fresh slide.region(...).values": [python, "-c", VALUES, str(slide)],
        # floors, for the reasons: the interpreter, and the imports no wsiarray change can drop
        "floor: python -c pass": [python, "-c", "pass"],
        "floor: import numpy, tifffile": [python, "-c", "import numpy, tifffile"],
        "floor: import numpy, tifffile, xarray": [python, "-c", "import numpy, tifffile, xarray"],
    }


def environment() -> dict[str, str]:
    """The children's environment: bytecode cached in the user cache, warnings off."""
    from wsiarray.datasets import cache_dir

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env | {
        "PYTHONPYCACHEPREFIX": str(cache_dir() / "pycache"),
        "PYTHONWARNINGS": "ignore",
    }


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one fresh process; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode:
        msg = f"{argv[:3]} failed: {completed.stderr.strip()[-500:]}"
        raise RuntimeError(msg)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def imports(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The modules a command imports (``-X importtime``): count, heavy ones, largest five."""
    python = sys.executable
    if argv[0] == python:  # python -c CODE args
        traced = [python, "-X", "importtime", *argv[1:]]
    else:  # the wsiarray script, or python -m wsiarray
        start = argv.index("-m") + 2 if "-m" in argv else 1
        code = "import sys; from wsiarray.cli import main; sys.exit(main(sys.argv[1:]))"
        traced = [python, "-X", "importtime", "-c", code, *argv[start:]]
    completed = subprocess.run(traced, capture_output=True, text=True, env=env, check=True)
    rows = []
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit():
            rows.append((name.strip(), int(cumulative) / 1000))
    names = {name for name, _ in rows}
    packages = {name.split(".")[0] for name in names}
    top = sorted(rows, key=lambda row: -row[1])[:5]
    return {
        "modules": len(names),
        "heavy": [m for m in HEAVY if m in packages],
        "top_ms": [(name, round(ms)) for name, ms in top],
    }


def measure(rounds: int, slide: Path = CMU) -> dict[str, Any]:
    """Run every command ``rounds`` times, interleaved; then once each under importtime."""
    env = environment()
    with tempfile.TemporaryDirectory(prefix="wsiarray-oneshot-") as folder:
        argvs = commands(slide, Path(folder))
        names = list(argvs)
        load_before = os.getloadavg()
        for name in names:  # warm-up: bytecode written, files in the page cache
            run(argvs[name], env)
        walls: dict[str, list[float]] = {name: [] for name in names}
        cpus: dict[str, list[float]] = {name: [] for name in names}
        for round_ in range(rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                wall, cpu = run(argvs[name], env)
                walls[name].append(wall)
                cpus[name].append(cpu)
            print(
                f"[{round_ + 1}/{rounds}] info {walls['wsiarray info'][-1] * 1000:.0f} ms, "
                f"openslide {walls['openslide one-liner'][-1] * 1000:.0f} ms",
                flush=True,
            )
        load_after = os.getloadavg()
        traced = {name: imports(argvs[name], env) for name in names if name in TRACED}
    ratios = [
        a / b for a, b in zip(walls["wsiarray info"], walls["openslide one-liner"], strict=True)
    ]
    # CPU seconds too: they grow less than wall time when other work shares the cores
    cpu_ratios = [
        a / b for a, b in zip(cpus["wsiarray info"], cpus["openslide one-liner"], strict=True)
    ]
    return {
        "slide": slide.name,
        "rounds": rounds,
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": load_after,
        "commands": {
            name: {
                "median_ms": statistics.median(walls[name]) * 1000,
                "min_ms": min(walls[name]) * 1000,
                "cpu_ms": statistics.median(cpus[name]) * 1000,
                **traced.get(name, {}),
            }
            for name in names
        },
        "info_ratio": statistics.median(ratios),
        "info_cpu_ratio": statistics.median(cpu_ratios),
        "info_ratio_of_medians": statistics.median(walls["wsiarray info"])
        / statistics.median(walls["openslide one-liner"]),
    }


def report(result: dict[str, Any]) -> str:
    """The results as Markdown: one row per command, then the targets."""
    load = "load average {:.2f} / {:.2f} / {:.2f}"
    lines = [
        (
            f"One-shot commands on `{result['slide']}`: {result['rounds']} interleaved rounds "
            f"of fresh processes, medians; bytecode cached. {result['cores']} cores; "
            f"{load.format(*result['load_before'])} before, "
            f"{load.format(*result['load_after'])} after."
        ),
        "",
        "| command | median wall | min wall | median CPU | modules | heavy imports | largest imports (cumulative ms) |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name, row in result["commands"].items():
        heavy = ", ".join(row.get("heavy", [])) or ("none" if "modules" in row else "")
        top = ", ".join(f"{m} {ms}" for m, ms in row.get("top_ms", [])[:3])
        lines.append(
            f"| {name} | {row['median_ms']:.0f} ms | {row['min_ms']:.0f} ms | "
            f"{row['cpu_ms']:.0f} ms | {row.get('modules', '')} | {heavy} | {top} |"
        )
    commands = result["commands"]
    ratio = result["info_ratio"]
    lines += [
        "",
        "| target | measured | wanted | met |",
        "|---|---:|---:|:-:|",
        (
            f"| wsiarray info / openslide one-liner (median of per-pair ratios) | {ratio:.2f}x "
            f"({commands['wsiarray info']['median_ms']:.0f} / "
            f"{commands['openslide one-liner']['median_ms']:.0f} ms; CPU "
            f"{result['info_cpu_ratio']:.2f}x) | <= {INFO_RATIO}x | "
            f"{'yes' if ratio <= INFO_RATIO else 'NO'} |"
        ),
    ]
    for name, wanted in WALL_TARGETS.items():
        ms, cpu = commands[name]["median_ms"], commands[name]["cpu_ms"]
        lines.append(
            f"| {name} | {ms:.0f} ms (CPU {cpu:.0f} ms) | <= {wanted} ms | "
            f"{'yes' if ms <= wanted else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Measure, print and save; returns the Markdown report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.oneshot")
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds (>= 15)")
    parser.add_argument("--slide", type=Path, default=CMU, help="default: CMU-1-Small-Region.svs")
    args = parser.parse_args(argv)
    result = measure(args.rounds, args.slide.resolve())
    text = report(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "oneshot.md").write_text(text + "\n")
    (RESULTS / "oneshot.json").write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
