"""``python -m benchmarks [--quick] [--repeat N] [--only SUBSTRING ...]``: run, compare, report.

``--only cohort_scale`` runs the 1,000-slide cohort from S3 instead (100 slides with
``--quick``; ``benchmarks/cohort_scale.py``, never part of a run without ``--only``).
``--only scaling`` runs the costs that should stay flat as slides grow instead (sparse slides
of 10k² to 200k² px; up to 100k², tile map up to 50k², with ``--quick``; ``benchmarks/scaling.py``,
never part of a run without ``--only``).
``--only codecs`` runs the other codecs instead (the real JPEG 2000 SVS and NDPI files, every
level, against OpenSlide and the codec's raw limit; level 0 once with ``--quick``;
``benchmarks/codecs.py``, never part of a run without ``--only``).
``--only oneshot`` runs just the one-shot commands (``benchmarks/oneshot.py``: ``wsiarray
info`` paired with an OpenSlide one-liner, region, thumbnail; 15 rounds with ``--quick``, else
21), which a run without ``--only`` includes, after the cases.

Runs are interleaved (every selected case once, then again, ``--repeat`` times), so a machine
that slows down or speeds up during the run moves every case alike and the ratios stay fair.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import codecs, cohort_scale, compat_speed, oneshot, remote, scaling
from benchmarks.run_case import CASES

RESULTS = Path(__file__).parent / "results"
FULL = (30000, 40000)
QUICK = (6000, 8000)

#: (case, reference case, target ratio) — what the issue asks of wsiarray.
TARGETS = [
    ("wsiarray image.mean level 0", "raw limit, 2 threads", 0.85),
    ("wsiarray image.mean level 0", "tiffslide, 1 thread", 2.5),
    ("wsiarray image.mean level 0", "openslide, 2 threads", 3.5),
    ("patches: wsiarray", "patches: tiffslide", 1.2),
    ("patches: wsiarray", "patches: openslide", 1.0),
    ("wsiarray LocalCluster(2 procs) level 0", "wsiarray image.mean level 0", 0.9),  # issue 14
    ("wsiarray tile map 10x: LocalCluster(2 procs)", "wsiarray tile map 10x: threads", 0.9),
    (
        "compat tileIterator 1024: wsiarray",
        "compat tileIterator 1024: large_image default source",
        2.0,
    ),
    (
        "compat tileIterator 1024: wsiarray",
        "compat tileIterator 1024: large_image tiff source",
        2.0,
    ),
    (
        "compat getRegion 10000² base: wsiarray",
        "compat getRegion 10000² base: large_image default source",
        2.0,
    ),
    (
        "compat getRegion 10000² 1/4: wsiarray",
        "compat getRegion 10000² 1/4: large_image default source",
        2.0,
    ),
]


def bench_slide(size: tuple[int, int]) -> Path:
    """The benchmark slide, generated once into the user cache (never into the repo)."""
    from wsiarray.datasets import cache_dir
    from wsiarray.synthetic import write_aperio_svs

    path = cache_dir() / f"bench-{size[1]}x{size[0]}-q80.svs"
    if not path.exists():
        print(f"writing benchmark slide {path} ...", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_aperio_svs(path, size=size, tile=240, downsamples=(1, 4, 16, 32), quality=80)
    return path


def run_case(name: str, slide: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_case", name, str(slide)],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"PYTHONWARNINGS": "ignore"} | (env or {}),
    )
    wall = time.perf_counter() - started
    if completed.returncode:
        return {
            "error": completed.stderr.strip().splitlines()[-1] if completed.stderr else "failed"
        }  # type: ignore[dict-item]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    if name.startswith("first read"):
        result["seconds"] = wall  # the whole fresh process: interpreter, imports, open, read
    return result


def summarise(name: str, runs: list[dict[str, float]]) -> dict[str, object]:
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"case": name, "error": runs[0].get("error")}
    seconds = statistics.median(r["seconds"] for r in good)
    work, unit = good[0]["work"], good[0]["unit"]
    return {
        "case": name,
        "median_s": seconds,
        "rate": work / seconds,
        "unit": f"{unit}/s" if unit != "first read" else "ms",
        "ms": seconds * 1000,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in good),
        # what a case reports besides its work (p95 latency, a remote case's open and requests)
        **{
            key: statistics.median(r[key] for r in good)
            for key in good[0]
            if key not in ("work", "unit", "seconds", "peak_rss_mb")
        },
        "runs": len(good),
    }


def report(rows: list[dict[str, object]], slide: Path, repeat: int, remote_slide: Path) -> str:
    by_name = {r["case"]: r for r in rows}
    lines = [
        f"Slide: `{slide.name}`, {repeat} runs per case in fresh processes, medians. Machine: {os.cpu_count()} cores.",
        "",
        "| case | median | rate | peak RSS (MB) | p95 latency |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['case']} | error: {row['error']} | | | |")
            continue
        rate = f"{row['ms']:.0f} ms" if row["unit"] == "ms" else f"{row['rate']:.1f} {row['unit']}"
        p95 = f"{row['p95_ms']:.2f} ms" if "p95_ms" in row else ""
        lines.append(
            f"| {row['case']} | {row['median_s']:.3f} s | {rate} | {row['peak_rss_mb']:.0f} | {p95} |"
        )
    lines += ["", "| target | measured | wanted | met |", "|---|---:|---:|:-:|"]
    for case, reference, wanted in TARGETS:
        if (
            case in by_name
            and reference in by_name
            and "rate" in by_name[case]
            and "rate" in by_name[reference]
        ):
            ratio = by_name[case]["rate"] / by_name[reference]["rate"]  # type: ignore[operator]
            lines.append(
                f"| {case} / {reference} | {ratio:.2f}x | >= {wanted}x | {'yes' if ratio >= wanted else 'NO'} |"
            )
    ours, theirs = by_name.get("patches: wsiarray", {}), by_name.get("patches: openslide", {})
    if "p95_ms" in ours and "p95_ms" in theirs:
        met = "yes" if ours["p95_ms"] <= theirs["p95_ms"] else "NO"
        lines.append(
            f"| patch p95 latency wsiarray / openslide | {ours['p95_ms']:.2f} / {theirs['p95_ms']:.2f} ms | <= openslide | {met} |"
        )
    first = by_name.get("first read: wsiarray")
    if first and "ms" in first:
        lines.append(
            f"| first read in a fresh process | {first['ms']:.0f} ms | <= 250 ms | {'yes' if first['ms'] <= 250 else 'NO'} |"
        )
    if any(str(r["case"]).startswith(compat_speed.PREFIX) for r in rows):
        lines += compat_speed.report(by_name)
    if any(str(r["case"]).startswith("remote") for r in rows):
        lines += ["", *remote.report(by_name, repeat, remote_slide.name)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a {QUICK[1]}x{QUICK[0]} slide instead of {FULL[1]}x{FULL[0]}",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--remote-full",
        action="store_true",
        help=f"remote cases read the {FULL[1]}x{FULL[0]} slide (100 MB) instead of the quick one",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run the cases whose name contains this (repeatable); results go to *-only.md",
    )
    args = parser.parse_args()
    if "cohort_scale" in args.only:  # the 1,000-slide scale run: only when asked by name
        cohort_scale.main(["--slides", "100" if args.quick else "1000"])
        args.only.remove("cohort_scale")
        if not args.only:
            return
    if "codecs" in args.only:  # JPEG 2000 SVS and NDPI levels: only when asked by name
        codecs.main(["--quick"] if args.quick else ["--repeat", str(args.repeat)])
        args.only.remove("codecs")
        if not args.only:
            return
    if "scaling" in args.only:  # sparse slides up to 200k²: only when asked by name
        quick = ["--sizes", "10000", "50000", "100000", "--map-max", "50000"]
        scaling.main(quick if args.quick else [])
        args.only.remove("scaling")
        if not args.only:
            return
    oneshot_rounds = ["--rounds", "15" if args.quick else "21"]
    if "oneshot" in args.only:  # the one-shot commands alone
        oneshot.main(oneshot_rounds)
        args.only.remove("oneshot")
        if not args.only:
            return
    slide = bench_slide(QUICK if args.quick else FULL)
    names = [n for n in CASES if not args.only or any(part in n for part in args.only)]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    # remote cases read the quick slide (or with --remote-full the full one) from servers
    # started here, once
    remote_slide = bench_slide(FULL if args.remote_full else QUICK)
    servers = (
        remote.RemoteServers(remote_slide, quick=args.quick)
        if any(n.startswith("remote") for n in names)
        else contextlib.nullcontext()
    )
    with servers:
        env = servers.environment() if isinstance(servers, remote.RemoteServers) else {}
        for round_ in range(args.repeat):
            for name in names:
                runs[name].append(run_case(name, slide, env))
                print(
                    f"[{round_ + 1}/{args.repeat}] {name}: {json.dumps(runs[name][-1])}",
                    flush=True,
                )
    rows = [summarise(name, runs[name]) for name in names]
    text = report(rows, slide, args.repeat, remote_slide)
    if not args.only:  # every target in one run: the one-shot commands too
        text += "\n\n" + oneshot.main(oneshot_rounds)
    RESULTS.mkdir(exist_ok=True)
    stem = ("quick" if args.quick else "full") + ("-only" if args.only else "")
    (RESULTS / f"{stem}.md").write_text(text + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
