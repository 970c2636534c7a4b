"""Group a campaign's non-clean outcomes by likely root cause: ``python -m fuzz.triage R.json ...``.

Every step of every mutant counts (a mutant whose tree blows up memory and whose compat read
raises an IndexError shows in both groups). Groups: exceptions by (class, type, innermost
wsiarray frame); hangs and crashes by the innermost wsiarray frame of the main thread's stack
(the faulthandler dump taken just before the time limit); silent outcomes by format and what
the reference said.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from fuzz import run


def _main_frame(stack: str) -> str:
    """Innermost wsiarray frame of the first (main) thread block of a faulthandler dump."""
    block = stack.split("\nThread ")[0] if "fuzz/run.py" in stack.split("\nThread ")[0] else stack
    for line in block.splitlines():
        m = re.search(r'File "(?:.*/)?(wsiarray/[^"]+)", line (\d+) in (\S+)', line)
        if m:
            return f"{m.group(1)}:{m.group(2)} in {m.group(3)}"
    for line in block.splitlines():
        m = re.search(r'File "(?:.*/site-packages/)?([^"]+)", line (\d+) in (\S+)', line)
        if m and "fuzz/" not in m.group(1) and "threading" not in m.group(1):
            return f"{m.group(1)}:{m.group(2)} in {m.group(3)}"
    return "(no frame)"


def _silent_key(text: str) -> str:
    if text.startswith(("lost levels", "lost channels", "extra channels")):
        return text.split(":", 1)[0]
    if "the reference failed: offset 0" in text:
        return "tile offset 0 (non-zero byte count) served without error"
    if "the reference failed" in text:
        error = text.split("the reference failed:", 1)[1].strip()
        error = re.sub(r"0x[0-9a-f]+", "0xNN", error)
        return "damaged tile served; reference: " + re.sub(r"\d+", "N", error)[:70]
    if "differs from tifffile" in text:
        return "pixels differ from tifffile's decode of the mutant"
    if "strict JPEG decode" in text:
        return "DICOM frame fails strict decode, served"
    if "Pillow" in text:
        return "PNG: " + re.sub(r"\d+", "N", text)[:80]
    return re.sub(r"\d+", "N", text)[:80]


def groups(outcomes: list[dict[str, Any]], seeds: dict[str, int]) -> dict[str, dict]:
    found: dict[tuple, dict[str, Any]] = defaultdict(
        lambda: {"mutants": [], "kinds": set(), "formats": set(), "steps": set(), "example": None}
    )

    def add(key: tuple, out: dict[str, Any], step: str, example: str) -> None:
        group = found[key]
        if out["id"] not in group["mutants"]:
            group["mutants"].append(out["id"])
        group["kinds"].add(out["kind"])
        group["formats"].add(out["format"])
        group["steps"].add(re.sub(r"\d+", "N", step))
        if group["example"] is None:
            group["example"] = {"id": out["id"], "detail": out["detail"], "text": example}

    for out in outcomes:
        if out["outcome"] in ("hang", "crash"):
            add(
                (out["outcome"], _main_frame(out.get("stack", "")), ""),
                out,
                out["last_stage"],
                (out.get("stack") or "")[:1500],
            )
            continue
        for step in out["steps"]:
            cls = step.get("class")
            if cls in ("memory", "other_exception"):
                add(
                    (cls, step.get("type", ""), step.get("where") or step.get("raised_at", "")),
                    out,
                    step["step"],
                    f"{step.get('type')}: {step.get('message', '')[:240]}"
                    f" (raised at {step.get('raised_at')})",
                )
        if out["outcome"].startswith("silent"):
            for text in out["silent"][:1]:
                add(("silent", _silent_key(text), out["format"]), out, "pixel check", text)
    return found


def markdown(found: dict[tuple, dict[str, Any]], replay_args: dict[str, str]) -> str:
    order = {c: i for i, c in enumerate(("crash", "hang", "memory", "other_exception", "silent"))}
    lines = []
    for key, group in sorted(
        found.items(), key=lambda kv: (order[kv[0][0]], -len(kv[1]["mutants"]))
    ):
        cls, what, where = key
        title = f"{cls}: {what}" + (f" at `{where}`" if where else "")
        ex = group["example"]
        counts = (
            f"- {len(group['mutants'])} mutants; kinds: {', '.join(sorted(group['kinds']))}; "
            f"formats: {', '.join(sorted(group['formats']))}; steps: "
            f"{', '.join(sorted(group['steps']))[:200]}"
        )
        lines += [
            f"### {title}",
            counts,
            f"- example `{ex['id']}` ({ex['detail']}):",
            "",
            "```",
            ex["text"].strip()[:1500],
            "```",
            f"- reproduce: `python -m fuzz --replay {ex['id']}{replay_args.get(ex['id'], '')}`",
        ]
        others = [m for m in group["mutants"] if m != ex["id"]][:5]
        if others:
            lines.append(f"- also: {', '.join(f'`{m}`' for m in others)}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    outcomes: list[dict[str, Any]] = []
    replay_args: dict[str, str] = {}
    seeds: dict[str, int] = {}
    for path in paths:
        data = json.loads(path.read_text())
        outcomes += [o for o in data["outcomes"] if o["outcome"] in run.FAILURES]
        config = data["config"]
        args = f" --timeout {config['timeout']:g}"
        if config["max_level_pixels"] != 50_000_000:
            args += f" --max-level-pixels {config['max_level_pixels']:g}"
        for o in data["outcomes"]:
            seeds[o["id"]] = data["seed"]
            replay_args[o["id"]] = args
    print(markdown(groups(outcomes, seeds), replay_args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
