"""The campaign's report: counts per class (per format, per mutation kind), every non-clean
outcome with its reproducer, and wsiarray's outcomes beside the reference libraries' on the
same mutants (:mod:`fuzz.readers`), as JSON data and as markdown."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict
from typing import Any

from fuzz import readers, run

SHORT = {
    "clean_error": "clean error",
    "read_fine": "read fine",
    "silent_wrong_pixels": "silent wrong pixels",
    "silent_lost_levels": "silent lost levels or channels",
    "memory": "memory blow-up",
    "other_exception": "other exception",
    "hang": "hang",
    "crash": "crash (signal)",
    readers.UNSUPPORTED: "unsupported (original not read)",
}
LIBRARY = {
    "wsiarray": "wsiarray",
    "openslide": "OpenSlide",
    "tiffslide": "tiffslide",
    "tifffile": "tifffile",
}


def _side_by_side(
    outcomes: list[run.Outcome],
    names: tuple[str, ...],
    others: dict[str, dict[str, run.Outcome]],
    originals: dict[str, dict[str, run.Outcome]],
) -> dict[str, Any]:
    """Per library (wsiarray first): counts per class, overall and per format; the reference
    libraries' non-clean outcomes; why a library is unsupported on an entry."""
    columns = ("wsiarray", *names)
    total: dict[str, Counter] = {c: Counter() for c in columns}
    per_format: dict[str, dict[str, Counter]] = defaultdict(lambda: {c: Counter() for c in columns})
    failures = []
    for out in outcomes:
        for column in columns:
            cls = out.outcome if column == "wsiarray" else out.references[column]
            total[column][cls] += 1
            per_format[out.format][column][cls] += 1
        for name, other in others.get(out.id, {}).items():
            if other.outcome in run.FAILURES:
                step = other.failure or {}
                failures.append(
                    {
                        "id": out.id,
                        "library": name,
                        "outcome": other.outcome,
                        "wsiarray": out.outcome,
                        "kind": out.kind,
                        "detail": out.detail,
                        "step": step.get("step", other.last_stage),
                        "type": step.get("type", ""),
                        "message": step.get("message", ""),
                        "stack": other.stack,
                    }
                )
    unsupported = {
        entry: {
            name: f"{o.outcome}: {(o.failure or {}).get('step', '')} "
            f"{(o.failure or {}).get('type', '')} {(o.failure or {}).get('message', '')[:120]}"
            for name, o in by_name.items()
            if o.outcome != "read_fine"
        }
        for entry, by_name in sorted(originals.items())
    }
    return {
        "libraries": list(columns),
        "total": {c: dict(v) for c, v in total.items()},
        "per_format": {
            f: {c: dict(v) for c, v in cols.items()} for f, cols in sorted(per_format.items())
        },
        "failures": failures,
        "unsupported": {e: u for e, u in unsupported.items() if u},
    }


def build(
    outcomes: list[run.Outcome],
    *,
    seed: int,
    count: int,
    config: run.Config,
    entries: list,
    seconds: float,
    skipped: list[str],
    command: str,
    references: tuple[str, ...] = (),
    others: dict[str, dict[str, run.Outcome]] | None = None,
    originals: dict[str, dict[str, run.Outcome]] | None = None,
) -> dict[str, Any]:
    per_format: dict[str, Counter] = defaultdict(Counter)
    per_kind: dict[str, Counter] = defaultdict(Counter)
    total: Counter = Counter()
    for out in outcomes:
        total[out.outcome] += 1
        per_format[out.format][out.outcome] += 1
        per_kind[out.kind][out.outcome] += 1
    failures = [asdict(o) | {"failure": o.failure} for o in outcomes if o.outcome in run.FAILURES]
    absent = sum(1 for o in outcomes if any(n.startswith("absent_as_background") for n in o.notes))
    import wsiarray

    return {
        "command": command,
        "wsiarray": f"{wsiarray.__version__} at {wsiarray.__file__}",
        "seed": seed,
        "count": count,
        "mutants": len(outcomes),
        "seconds": round(seconds, 1),
        "config": asdict(config),
        "corpus": [
            {"name": e.name, "format": e.format, "path": str(e.path), "notes": e.notes}
            for e in entries
        ],
        "total": dict(total),
        "per_format": {k: dict(v) for k, v in sorted(per_format.items())},
        "per_kind": {k: dict(v) for k, v in sorted(per_kind.items())},
        "absent_as_background": absent,
        "skipped": skipped,
        "failures": failures,
        "references": (
            _side_by_side(outcomes, references, others or {}, originals or {})
            if references
            else None
        ),
        "outcomes": [asdict(o) for o in outcomes],
    }


def _table(rows: dict[str, dict[str, int]], label: str) -> list[str]:
    head = f"| {label} | " + " | ".join(SHORT[c] for c in run.CLASSES) + " | total |"
    lines = [head, "|---|" + "---:|" * (len(run.CLASSES) + 1)]
    for name, counts in rows.items():
        cells = [str(counts.get(c, 0) or "") for c in run.CLASSES]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {sum(counts.values())} |")
    return lines


def _side_by_side_markdown(side: dict[str, Any], mutants: int) -> list[str]:
    columns = side["libraries"]
    rows = [*run.CLASSES, readers.UNSUPPORTED]
    lines = [
        "## wsiarray and the reference libraries on the same mutants",
        "",
        (
            "Each library opened and read every mutant in its own child with the same time and "
            "address-space limits (open, metadata, every level or the same windows, associated "
            "images; `fuzz/readers.py` says what is a clean error for each). Silent wrong pixels "
            "and lost levels are checked for wsiarray only."
        ),
        "",
        "| outcome per mutant | " + " | ".join(LIBRARY[c] for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for cls in rows:
        counts = [side["total"][c].get(cls, 0) for c in columns]
        if any(counts):
            lines.append(f"| {SHORT[cls]} | " + " | ".join(str(n) for n in counts) + " |")
    sums = [sum(side["total"][c].values()) for c in columns]
    lines += [f"| **total** ({mutants} mutants) | " + " | ".join(str(n) for n in sums) + " |", ""]
    lines += [
        (
            "Per format: failures (hang, crash, memory, other exception, silent) / mutants run; "
            "a dash where the library does not read the format."
        ),
        "",
        "| format | " + " | ".join(LIBRARY[c] for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for fmt, cols in side["per_format"].items():
        cells = []
        for c in columns:
            run_count = sum(n for k, n in cols[c].items() if k != readers.UNSUPPORTED)
            failed = sum(n for k, n in cols[c].items() if k in run.FAILURES)
            cells.append(f"{failed} / {run_count}" if run_count else "—")
        lines.append(f"| {fmt} | " + " | ".join(cells) + " |")
    lines.append("")
    if side["unsupported"]:
        lines += [("Entries a reference library does not read unmutated (its column says "
                  "unsupported for their mutants):"), ""]  # fmt: skip
        for entry, why in side["unsupported"].items():
            for name, text in why.items():
                lines.append(f"- {entry}, {LIBRARY[name]}: {text.strip()}")
        lines.append("")
    lines += ["### The reference libraries' non-clean outcomes", ""]
    if not side["failures"]:
        lines.append("None.")
    for f in side["failures"][:60]:
        lines.append(
            f"- {LIBRARY[f['library']]} {f['outcome']} on `{f['id']}` ({f['kind']}: "
            f"{f['detail'][:100]}); wsiarray: {f['wsiarray']}; step {f['step']}"
            + (f": `{f['type']}: {f['message'][:160]}`" if f["type"] else "")
        )
    if len(side["failures"]) > 60:
        lines.append(f"- ... and {len(side['failures']) - 60} more (in the JSON report)")
    return [*lines, ""]


def summary(data: dict[str, Any]) -> str:
    total = data["total"]
    parts = [f"{SHORT[c]} {total.get(c, 0)}" for c in run.CLASSES]
    return f"{data['mutants']} mutants (seed {data['seed']}) in {data['seconds']} s: " + ", ".join(
        parts
    )


def _reproducer(out: dict[str, Any], config: dict[str, Any]) -> str:
    extra = f" --timeout {config['timeout']:g}"
    if config["max_level_pixels"] != 50_000_000:
        extra += f" --max-level-pixels {config['max_level_pixels']:g}"
    return f"python -m fuzz --replay {out['id']}{extra}"


def markdown(data: dict[str, Any]) -> str:
    config = data["config"]
    lines = [
        "# wsiarray fuzz report",
        "",
        (
            f"`{data['command']}` — seed {data['seed']}, {data['mutants']} mutants, "
            f"{data['seconds']} s; per mutant {config['timeout']:g} s and "
            f"{config['memory'] / 2**30:g} GiB of address space; levels over "
            f"{config['max_level_pixels']:,} pixels read as {config['windows']} random 256-px "
            f"windows (plus the touched tiles)."
        ),
        "",
        summary(data),
        "",
        "## Outcomes per format",
        "",
        *_table(data["per_format"] | {"**all**": data["total"]}, "format"),
        "",
        "## Outcomes per mutation kind",
        "",
        *_table(data["per_kind"], "mutation"),
        "",
        (
            f"Tiles the file marks absent (byte count 0) shown as background, not counted as "
            f"failures: {data['absent_as_background']} mutants."
        ),
        "",
    ]
    if data.get("references"):
        lines += _side_by_side_markdown(data["references"], data["mutants"])
    lines += ["## Non-clean outcomes", ""]
    if not data["failures"]:
        lines.append("None.")
    for out in data["failures"]:
        failure = out.get("failure") or {}
        lines.append(f"### {out['outcome']}: `{out['id']}`")
        lines.append("")
        lines.append(f"- mutation: {out['kind']} — {out['detail']}")
        if out["outcome"] in ("hang", "crash"):
            lines.append(
                f"- last stage: {out['last_stage']} ({failure.get('message', '')}); "
                f"peak RSS {out['peak_rss_mb']} MB"
            )
            if out.get("stack"):
                stack = "\n".join(out["stack"].splitlines()[:14])
                lines += ["", "```", stack, "```", ""]
        elif failure:
            lines.append(f"- step: {failure.get('step')}")
            if failure.get("type"):
                lines.append(f"- exception: `{failure['type']}: {failure['message'][:300]}`")
                lines.append(
                    f"- innermost wsiarray frame: `{failure.get('where') or '(none)'}`; "
                    f"raised at `{failure.get('raised_at')}`"
                )
            else:
                lines.append(f"- {failure.get('message', '')[:400]}")
        for text in out.get("silent", [])[1:4]:
            lines.append(f"- also: {text[:300]}")
        lines.append(f"- seed {data['seed']}; reproduce: `{_reproducer(out, config)}`")
        lines.append("")
    if data["skipped"]:
        lines += ["", f"Not applicable to their file (skipped): {len(data['skipped'])}"]
    return "\n".join(lines) + "\n"
