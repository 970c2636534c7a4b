"""``python -m fuzz``: a seeded mutation-fuzzing campaign over every reader's formats (issue 15).

    python -m fuzz --seed 1 --count 300 --timeout 10 --report fuzz-report.md
    python -m fuzz --replay svs-cmu1/tile_random/1.17        # one mutant again, verbose
    python -m fuzz --list                                     # the corpus and mutation kinds

The report (markdown, and JSON beside it) counts outcomes per class, per format and per
mutation kind, and lists every non-clean outcome with its seed, mutant id, mutation, exception
(type, message, innermost wsiarray frame) and a one-line reproducer. The exit status is 1 when
any mutant is a hang, memory blow-up, other exception, crash or silent wrong pixels / lost
levels (``--no-fail`` to always exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from fuzz import corpus as corpus_mod
from fuzz import mutate, readers, report, run


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fuzz",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--count", type=int, default=300, help="mutants (default 300)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per mutant (default 30)")
    p.add_argument(
        "--memory-gib",
        type=float,
        default=4.0,
        help="address-space limit of a child, GiB (default 4; 0: none)",
    )
    p.add_argument("--jobs", type=int, default=2, help="children at a time (default 2)")
    p.add_argument(
        "--max-level-pixels",
        type=float,
        default=50e6,
        help="levels larger than this are read as 20 random 256-px windows "
        "(default 50e6, issue 15; the quick pass uses 4e6)",
    )
    p.add_argument(
        "--formats",
        nargs="*",
        default=None,
        help="only these formats or entries (svs, svs-j2k, ndpi, ome-tiff, qptiff, "
        "dicom, png, or entry names)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="only the corpus entries marked quick (small, fast to read)",
    )
    p.add_argument("--no-pixel-check", action="store_true", help="skip the silent-pixel check")
    p.add_argument(
        "--references",
        default=None,
        metavar="LIBS",
        help="run each mutant through these libraries too, each in its own child with the "
        f"same limits, for the report's side-by-side columns: {','.join(readers.NAMES)} "
        "(the default), a subset, or none (the default of --quick and --replay)",
    )
    p.add_argument("--report", type=Path, default=None, help="markdown report path (.json beside)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where mutants are written (default: a temporary folder, removed)",
    )
    p.add_argument("--keep", action="store_true", help="keep the mutants")
    p.add_argument(
        "--replay",
        metavar="ID",
        default=None,
        help="run one mutant again and print everything about it",
    )
    p.add_argument("--list", action="store_true", help="list the corpus and mutation kinds")
    p.add_argument("--no-fail", action="store_true", help="exit 0 even when mutants fail")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _select(entries: list[corpus_mod.Entry], formats: list[str] | None, quick: bool):
    if quick:
        entries = [e for e in entries if e.quick]
    if formats:
        wanted = set(formats)
        entries = [
            e for e in entries if e.format in wanted or e.name in wanted or e.container in wanted
        ]
    return entries


def reference_names(args: argparse.Namespace) -> tuple[str, ...]:
    """The reference libraries ``args`` ask for: all unless ``--quick`` or ``--replay``."""
    if args.references is None:
        return () if args.quick or args.replay else readers.NAMES
    try:
        return readers.parse_names(args.references)
    except ValueError as exc:
        msg = f"--references: {exc}"
        raise SystemExit(msg) from None


def _limits(config: run.Config) -> dict[str, Any]:
    """What a child's job takes from the configuration."""
    return {
        "timeout": config.timeout,
        "max_level_pixels": config.max_level_pixels,
        "windows": config.windows,
        "check_pixels": config.check_pixels,
    }


def _originals(
    entries: list[corpus_mod.Entry], names: tuple[str, ...], config: run.Config, workdir: Path
) -> dict[str, dict[str, run.Outcome]]:
    """Each reference library's outcome on each unmutated entry (children, as the mutants')."""
    jobs = []
    for entry in entries:
        original = {
            "id": f"{entry.name}/original",
            "entry": entry.name,
            "kind": "original",
            "detail": "the unmutated file",
            "path": str(entry.path),
            "file": str(entry.path),
            "container": entry.container,
            "focus": {},
            "folder": str(workdir / "originals" / entry.name),
        } | _limits(config)
        jobs += readers.jobs(original, names)
    out: dict[str, dict[str, run.Outcome]] = defaultdict(dict)
    for raw in run.run_jobs(jobs, config):
        job = raw["job"]
        out[job["entry"]][job["reader"]] = run.outcome_of(raw, entry_format="")
    return out


def config_from(args: argparse.Namespace) -> run.Config:
    return run.Config(
        timeout=args.timeout,
        memory=int(args.memory_gib * run.GiB),
        max_level_pixels=int(args.max_level_pixels),
        jobs=args.jobs,
        check_pixels=not args.no_pixel_check,
    )


def campaign(args: argparse.Namespace) -> dict[str, Any]:
    """Run the campaign ``args`` describe; return the report's data."""
    names = reference_names(args)
    run.preload()
    names = readers.preload(names)
    entries = _select(corpus_mod.build(), args.formats, args.quick)
    if not entries:
        msg = "no corpus entry matches --formats"
        raise SystemExit(msg)
    config = config_from(args)
    refs = run.references(entries, config) if config.check_pixels else {}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wsiarray-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    formats = {e.name: e.format for e in entries}
    by_name = {e.name: e for e in entries}
    started = time.monotonic()
    originals = _originals(entries, names, config, workdir) if names else {}
    jobs = []
    skipped = []
    for entry, kind, index in run.plan(entries, args.seed, args.count):
        built = run.build_mutant(entry, kind, args.seed, index, workdir, refs)
        if built is None:
            skipped.append(f"{entry.name}/{kind}/{args.seed}.{index}")
            continue
        _, job = built
        job.update(_limits(config))
        jobs.append(job)
        # a library runs only the mutants of what it reads unmutated; the others' columns
        # say 'unsupported' (OpenSlide on OME-TIFF, the TIFF readers on DICOM or PNG)
        reads = originals.get(entry.name, {})
        jobs += readers.jobs(job, tuple(n for n in names if reads[n].outcome == "read_fine"))
    outcomes: list[run.Outcome] = []
    others: dict[str, dict[str, run.Outcome]] = defaultdict(dict)
    pending = Counter(job["id"] for job in jobs)  # a mutant's file goes when all are done
    folders = {job["id"]: job["folder"] for job in jobs if "reader" not in job}

    def done(raw: dict[str, Any]) -> None:
        job = raw["job"]
        out = run.outcome_of(raw, formats[job["entry"]])
        if "reader" in job:
            others[job["id"]][job["reader"]] = out
        else:
            outcomes.append(out)
            if not args.quiet:
                mark = "." if out.outcome in ("clean_error", "read_fine") else out.outcome[0]
                print(mark.upper(), end="", flush=True)
        pending[job["id"]] -= 1
        if not pending[job["id"]] and not args.keep:
            shutil.rmtree(folders[job["id"]], ignore_errors=True)

    run.run_jobs(jobs, config, on_done=done)
    if not args.quiet:
        print()
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    order = {job["id"]: i for i, job in enumerate(jobs)}
    outcomes.sort(key=lambda o: order[o.id])
    for out in outcomes:
        out.references = {
            n: others[out.id][n].outcome if n in others[out.id] else readers.UNSUPPORTED
            for n in names
        }
    return report.build(
        outcomes,
        seed=args.seed,
        count=args.count,
        config=config,
        entries=list(by_name.values()),
        seconds=time.monotonic() - started,
        skipped=skipped,
        command=" ".join(["python -m fuzz", *sys.argv[1:]]),
        references=names,
        others=others,
        originals=originals,
    )


def replay(args: argparse.Namespace) -> int:
    names = reference_names(args)
    run.preload()
    names = readers.preload(names)
    entry_name, kind, seed, index = run.parse_id(args.replay)
    entries = {e.name: e for e in corpus_mod.build()}
    if entry_name not in entries:
        print(f"no corpus entry {entry_name!r} on this machine", file=sys.stderr)
        return 2
    entry = entries[entry_name]
    config = config_from(args)
    refs = run.references([entry], config) if config.check_pixels else {}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wsiarray-fuzz-replay-"))
    mutant = mutate.make_mutant(entry, kind, seed, index, workdir)
    job = run._job(entry, mutant, refs)
    job.update(_limits(config))
    raws = run.run_jobs([job, *readers.jobs(job, names)], config)
    out = run.outcome_of(next(r for r in raws if "reader" not in r["job"]), entry.format)
    print(f"mutant   {mutant.id}\nmutation {mutant.kind}: {mutant.detail}")
    print(f"file     {mutant.file}  ({mutant.size} bytes; original {mutant.original_size})")
    print(f"changed  {mutant.changed[:8]}{' ...' if len(mutant.changed) > 8 else ''}")
    print(f"outcome  {out.outcome}  ({out.seconds} s, peak RSS {out.peak_rss_mb} MB)")
    for step in out.steps:
        line = f"  {step['step']:<28} {step['class']}"
        if "type" in step:
            line += f"  {step['type']}: {step['message'][:200]}"
            if step.get("where"):
                line += f"\n  {'':<28} at {step['where']} (raised at {step['raised_at']})"
        print(line)
    for text in out.silent:
        print(f"  silent: {text}")
    for text in out.notes:
        print(f"  note: {text}")
    if out.stack:
        print("stack:\n" + out.stack)
    for raw in raws:
        if "reader" in raw["job"]:
            other = run.outcome_of(raw, entry.format)
            failure = other.failure or {}
            print(
                f"{raw['job']['reader']:<9} {other.outcome}  ({other.seconds} s) "
                f"{failure.get('step', '')} {failure.get('type', '')} "
                f"{failure.get('message', '')[:160]}".rstrip()
            )
    if args.keep or args.workdir is not None:
        print(f"kept under {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for entry in corpus_mod.build():
            print(
                f"{entry.name:<22} {entry.format:<9} {'quick' if entry.quick else '     '} "
                f"{entry.path}  {entry.notes}"
            )
        for container, kinds in mutate.MUTATORS.items():
            print(f"{container}: {', '.join(kinds)}")
        return 0
    if args.replay:
        return replay(args)
    data = campaign(args)
    text = report.markdown(data)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text)
        args.report.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
        with contextlib.suppress(Exception):
            print(f"report: {args.report} and {args.report.with_suffix('.json')}")
    if not args.quiet:
        print(report.summary(data))
    return 1 if data["failures"] and not args.no_fail else 0
