"""The campaign's report: counts per class (per format, per mutation kind) and every non-clean
outcome with its reproducer, as JSON data and as markdown."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict
from typing import Any

from fuzz import run

SHORT = {
    "clean_error": "clean error",
    "read_fine": "read fine",
    "silent_wrong_pixels": "silent wrong pixels",
    "silent_lost_levels": "silent lost levels",
    "memory": "memory blow-up",
    "other_exception": "other exception",
    "hang": "hang",
    "crash": "crash (signal)",
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
        "outcomes": [asdict(o) for o in outcomes],
    }


def _table(rows: dict[str, dict[str, int]], label: str) -> list[str]:
    head = f"| {label} | " + " | ".join(SHORT[c] for c in run.CLASSES) + " | total |"
    lines = [head, "|---|" + "---:|" * (len(run.CLASSES) + 1)]
    for name, counts in rows.items():
        cells = [str(counts.get(c, 0) or "") for c in run.CLASSES]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {sum(counts.values())} |")
    return lines


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
        "## Non-clean outcomes",
        "",
    ]
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
