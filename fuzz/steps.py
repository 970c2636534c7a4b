"""What a fuzz child records: its steps, each step's exception classified, and its windows.

Shared by wsiarray's child (:mod:`fuzz.run`) and the reference libraries' children
(:mod:`fuzz.readers`), so both are classified by the same rules and read the same windows; only
what counts as a *clean* error differs (a WsiArrayError for wsiarray, the library's own
exception types for the others).
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: windows are this many pixels square (issue 15: "20 random 256-px windows")
WINDOW = 256


def _where(exc: BaseException) -> tuple[str, str]:
    """(innermost wsiarray frame 'path:line in func', innermost frame overall)."""
    frames = traceback.extract_tb(exc.__traceback__)
    inner = (
        f"{_short(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    )
    ours = ""
    for frame in frames:
        if "/wsiarray/" in frame.filename:
            ours = f"{_short(frame.filename)}:{frame.lineno} in {frame.name}"
    return ours, inner


def _short(filename: str) -> str:
    for marker in ("/wsiarray/", "/site-packages/", "/lib/python3"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return ("wsiarray/" + tail) if marker == "/wsiarray/" else tail
    return filename


def classify_exception(exc: BaseException, is_clean: Callable[[BaseException], bool]) -> str:
    """The outcome class of a step that raised ``exc``; ``is_clean`` says whether ``exc`` is
    the library's own way to refuse damaged input."""
    if is_clean(exc):  # first: wsiarray's PixelBudgetError is a MemoryError too
        return "clean_error"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, RuntimeError) and "new thread" in str(exc):
        return "memory"
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 12:  # ENOMEM
        return "memory"
    return "other_exception"


def windows(job: dict[str, Any], level: int, height: int, width: int) -> list[tuple[int, ...]]:
    """The ``(y0, y1, x0, x1)`` windows a child reads of a level too large to read whole: the
    tiles the mutation touched (at most 8), then ``job['windows']`` random ones seeded by the
    mutant id, so every library reads the same windows of a level of the same shape."""
    rng = random.Random(job["id"])
    out = [tuple(w) for w in job.get("focus", {}).get(str(level), [])][:8]
    for _ in range(job["windows"]):
        y = rng.randrange(max(1, height - WINDOW))
        x = rng.randrange(max(1, width - WINDOW))
        out.append((y, min(height, y + WINDOW), x, min(width, x + WINDOW)))
    return [
        (y0, min(y1, height), x0, min(x1, width))
        for y0, y1, x0, x1 in out
        if min(y1, height) > y0 and min(x1, width) > x0
    ]


class Steps:
    """A child's record: each step's class, exception (type, message, where) and time; the
    current stage in ``folder/stage`` so the parent knows where a hang or crash was."""

    def __init__(self, job: dict[str, Any], folder: Path) -> None:
        self.job = job
        self.folder = folder
        self.steps: list[dict[str, Any]] = []
        self.stage_file = open(folder / "stage", "w")  # noqa: SIM115
        #: the pixel check stops here (a quarter of the time limit left for it at most)
        self.deadline = time.monotonic() + 0.7 * float(job.get("timeout", 30))

    def is_clean(self, exc: BaseException) -> bool:
        """Whether ``exc`` is this library's own refusal of damaged input."""
        raise NotImplementedError

    def run(self) -> dict[str, Any]:
        """Do the work; the result (``steps`` at least) goes into ``result.json``."""
        raise NotImplementedError

    def stage(self, name: str) -> None:
        self.stage_file.write(name + "\n")
        self.stage_file.flush()

    def step(self, name: str, fn, *args):
        """``fn(*args)``, recorded as step ``name``; its value, or None when it raised."""
        self.stage(name)
        started = time.monotonic()
        try:
            value = fn(*args)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            ours, inner = _where(exc)
            chain = []
            cause = exc.__cause__ or exc.__context__
            while cause is not None and len(chain) < 3:
                chain.append(
                    f"{type(cause).__module__}.{type(cause).__qualname__}: {str(cause)[:160]}"
                )
                cause = cause.__cause__ or cause.__context__
            self.steps.append(
                {
                    "step": name,
                    "class": classify_exception(exc, self.is_clean),
                    "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                    "message": str(exc)[:400],
                    "where": ours,
                    "raised_at": inner,
                    "cause": chain,
                    "seconds": round(time.monotonic() - started, 3),
                }
            )
            return None
        self.steps.append(
            {"step": name, "class": "read_fine", "seconds": round(time.monotonic() - started, 3)}
        )
        return value
