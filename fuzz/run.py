"""Run mutants in child processes with a time and an address-space limit, and classify them.

The parent imports wsiarray and its readers once, starts no thread, and forks one child per
mutant (at most ``jobs`` at a time), so a child starts in milliseconds. A child sets
``RLIMIT_AS`` (4 GiB by default: measured, numpy, dask's threads, libjpeg-turbo and wsidicom
start under it; a full read of BPAEC peaks at ~2.4 GB of address space, ~0.3 GB resident),
arms faulthandler (a stack dump on a crash, and one just before the time limit, so a hang
shows where it was), and does what issue 15 says: open, the DataTree, every level (whole when
at most ``max_level_pixels``, else 20 random 256-px windows plus windows over the tiles the
mutation touched), associated images, compat ``getMetadata`` and two ``getRegion`` calls.
Each step's exception is kept with the innermost wsiarray frame (:mod:`fuzz.steps`). The
parent kills a child's process group at the time limit. A job with a ``reader`` runs that
reference library's steps instead (:mod:`fuzz.readers`), under the same limits.

Outcome classes (issue 15's table): ``clean_error`` (every exception a WsiArrayError),
``read_fine``, ``silent_wrong_pixels``, ``silent_lost_levels`` (levels or channels),
``memory`` (MemoryError, or "can't start new thread", not a PixelBudgetError),
``other_exception``, ``hang``, ``crash``.
A mutant's class is its worst step's.

Silent wrong pixels: the reference for each level read without error is, tile by tile, the
original slide's pixels as wsiarray read them (a reference run on the unmutated file) and,
where the mutant's tile differs from the original's, tifffile's strict decode of that tile of
the mutant (TIFF), Pillow's decode (PNG) or imagecodecs' strict JPEG decode of every frame of
the mutated instance (DICOM). A differing tile is *silent wrong pixels* when the reference
fails on it (damaged data served), or decodes it to other pixels than wsiarray's (beyond the
original's own wsiarray-vs-reference difference + 2). A tile the file marks absent (byte count
0, offset non-zero) shown as background is noted as ``absent_as_background``, not a failure.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import random
import resource
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fuzz import corpus as corpus_mod
from fuzz import mutate, readers, steps

GiB = 1 << 30
CLASSES = (
    "clean_error",
    "read_fine",
    "silent_wrong_pixels",
    "silent_lost_levels",
    "memory",
    "other_exception",
    "hang",
    "crash",
)
#: worst first
SEVERITY = (
    "crash",
    "hang",
    "memory",
    "other_exception",
    "silent_wrong_pixels",
    "silent_lost_levels",
    "clean_error",
    "read_fine",
)
FAILURES = {
    "crash",
    "hang",
    "memory",
    "other_exception",
    "silent_wrong_pixels",
    "silent_lost_levels",
}


@dataclass
class Config:
    timeout: float = 30.0
    memory: int = 4 * GiB
    max_level_pixels: int = 50_000_000
    windows: int = 20
    jobs: int = 2
    check_pixels: bool = True


@dataclass
class Outcome:
    id: str
    entry: str
    format: str
    kind: str
    detail: str
    outcome: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    signal: int | None = None
    last_stage: str = ""
    stack: str = ""
    #: each reference library's class for the same mutant (fuzz.readers)
    references: dict[str, str] = field(default_factory=dict)

    @property
    def failure(self) -> dict[str, Any] | None:
        """The step that decided a non-clean class (its exception and where)."""
        for step in self.steps:
            if step.get("class") == self.outcome:
                return step
        return None


# -- child side ----------------------------------------------------------------------------------


class _Child(steps.Steps):
    """wsiarray's child: the steps of the module docstring, then the silent-pixel check."""

    def __init__(self, job: dict[str, Any], folder: Path) -> None:
        super().__init__(job, folder)
        self.silent: list[str] = []
        self.notes: list[str] = []

    def is_clean(self, exc: BaseException) -> bool:
        from wsiarray.errors import WsiArrayError

        return isinstance(exc, WsiArrayError)

    # -- the work -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        import wsiarray as wa
        from wsiarray.compat import large_image

        job = self.job
        path = job["path"]
        slide = self.step("open", wa.open, path)
        levels: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        if slide is not None:
            self.step("tree", lambda: slide.tree)
            shapes = self.step("level_shapes", lambda: slide.level_shapes) or ()
            for level, shape in enumerate(shapes):
                got = self.step(f"level {level}", self._read_level, slide, level, shape)
                if got is not None:
                    levels[level] = got
            names = self.step("associated", lambda: list(slide.associated)) or []
            for name in names:
                self.step(f"associated {name}", lambda n=name: slide.associated[n].values)
        source = self.step("compat open", large_image.open, path)
        if source is not None:
            meta = self.step("compat getMetadata", source.getMetadata)
            if meta:
                numpy = large_image.TILE_FORMAT_NUMPY
                self.step(
                    "compat getRegion thumbnail",
                    lambda: source.getRegion(
                        output={"maxWidth": 512, "maxHeight": 512}, format=numpy
                    ),
                )
                width, height = int(meta["sizeX"]), int(meta["sizeY"])
                self.step(
                    "compat getRegion 512",
                    lambda: source.getRegion(
                        region={
                            "left": max(0, width // 2 - 256),
                            "top": max(0, height // 2 - 256),
                            "width": 512,
                            "height": 512,
                        },
                        format=numpy,
                    ),
                )
        if slide is not None and job.get("check_pixels") and job.get("reference"):
            # what the reads found is kept should the check itself run out of time
            partial = {"steps": self.steps, "silent": [], "notes": ["pixel check not finished"]}
            (self.folder / "result.json").write_text(json.dumps(partial, default=str))
            self.stage("pixel check")
            try:
                self._check(slide, levels)
            except Exception as exc:  # noqa: BLE001 - a fuzzer bug must not hide the result
                self.notes.append(f"pixel check failed: {type(exc).__name__}: {exc}"[:300])
        return {"steps": self.steps, "silent": self.silent, "notes": self.notes}

    def _read_level(self, slide, level: int, shape: tuple[int, int]):
        image = slide.image(level)  # the lazy DataArray: coordinates, chunks
        height, width = shape
        if height * width <= self.job["max_level_pixels"]:
            return np.asarray(image.values), None
        windows = steps.windows(self.job, level, height, width)
        pieces = [
            ((y0, y1, x0, x1), slide.read(x0, y0, x1 - x0, y1 - y0, level=level))
            for y0, y1, x0, x1 in windows
        ]
        return pieces, windows

    # -- silent wrong pixels ----------------------------------------------------------------------

    def _check(self, slide, levels) -> None:
        reference = Path(self.job["reference"])
        meta = json.loads((reference / "meta.json").read_text())
        original_shapes = [tuple(s) for s in meta["level_shapes"]]
        warned = slide.tree.attrs.get("warnings") or []
        if slide.level_count < len(original_shapes) and warned:
            # said, not silent: a DamagedFileWarning at open, kept in the slide's metadata
            self.notes.append(f"lost levels, with a DamagedFileWarning: {warned[0][:200]}")
        elif slide.level_count < len(original_shapes):
            self.silent.append(
                f"lost levels: opened with {slide.level_count} levels "
                f"{list(slide.level_shapes)}, the original has {len(original_shapes)} "
                f"{original_shapes}, and no error"
            )
        container = self.job["container"]
        for level, (pixels, windows) in levels.items():
            if (
                level >= len(original_shapes)
                or tuple(slide.level_shapes[level]) != original_shapes[level]
            ):
                continue
            original = np.load(reference / f"level{level}.npy", mmap_mode="r")
            read = (pixels if windows is None else pixels[0][1]).shape[-1]
            if read != original.shape[-1]:
                bands = f"level {level} opened with {read} bands, the original has "
                if warned:  # said, as lost levels are
                    self.notes.append(f"{bands}{original.shape[-1]}, with a DamagedFileWarning")
                else:
                    kind = "lost" if read < original.shape[-1] else "extra"
                    self.silent.append(
                        f"{kind} channels: {bands}{original.shape[-1]}, and no error"
                    )
                continue
            if windows is None:
                mutant = pixels
            else:  # the windows read, on the original's pixels elsewhere
                mutant = np.array(original)
                for (y0, y1, x0, x1), piece in pixels:
                    mutant[y0:y1, x0:x1] = piece
            if mutant.shape != original.shape:
                self.notes.append(
                    f"level {level}: pixels {mutant.shape} vs original {original.shape}"
                )
                continue
            if np.array_equal(mutant, original):
                continue
            if container == "tiff":
                self._check_tiff(level, mutant, original, meta)
            elif container == "png":
                self._check_png(mutant, original)
            else:
                self._check_dicom(level, mutant, original, meta)

    def _check_tiff(self, level: int, mutant: np.ndarray, original: np.ndarray, meta) -> None:
        import tifffile

        pages_meta = meta["tiff_levels"][level] if level < len(meta["tiff_levels"]) else None
        if not pages_meta:
            self.notes.append(
                f"level {level}: differs from the original, no tifffile level to check"
            )
            return
        with tifffile.TiffFile(self.job["file"]) as mtif, tifffile.TiffFile(meta["file"]) as otif:
            try:
                mlevel = mtif.series[0].levels[level]
            except Exception as exc:  # noqa: BLE001
                self.silent.append(
                    f"level {level}: pixels differ from the original and tifffile cannot "
                    f"parse the mutant's level ({type(exc).__name__}: {exc})"[:300]
                )
                return
            olevel = otif.series[0].levels[level]
            if len(mlevel.pages) != len(olevel.pages):
                self.notes.append(f"level {level}: tifffile pages differ in number")
                return
            checked = 0
            bad: list[str] = []
            absent = 0
            for channel, (mpage, opage) in enumerate(zip(mlevel.pages, olevel.pages, strict=True)):
                if (
                    mpage is None
                    or opage is None
                    or tuple(mpage.shape[:2]) != tuple(mutant.shape[:2])
                ):
                    self.notes.append(f"level {level}: tifffile page shape differs")
                    continue
                th, tw = _tile_shape(mpage)
                nx = -(-mpage.shape[1] // tw)
                sel = (..., channel) if len(mlevel.pages) > 1 else (...,)
                for k in range(len(mpage.dataoffsets)):
                    if time.monotonic() > self.deadline:
                        self.notes.append(f"level {level}: pixel check stopped at its time budget")
                        break
                    r, c = divmod(k, nx)
                    y0, x0 = r * th, c * tw
                    y1, x1 = min(y0 + th, mutant.shape[0]), min(x0 + tw, mutant.shape[1])
                    if y0 >= y1 or x0 >= x1:
                        continue
                    got = mutant[y0:y1, x0:x1][sel]
                    if np.array_equal(got, original[y0:y1, x0:x1][sel]):
                        continue
                    if checked >= 48:
                        bad.append("... (more differing tiles not checked)")
                        break
                    checked += 1
                    _offset, count = mpage.dataoffsets[k], mpage.databytecounts[k]
                    if count == 0:  # marked absent (offset 0 with bytes is damage, below)
                        absent += 1
                        continue
                    ref, error = _decode_tile(mtif, mpage, k)
                    where = f"level {level} tile {k} (y {y0}:{y1}, x {x0}:{x1})"
                    if error is not None:
                        bad.append(f"{where}: served without error, the reference failed: {error}")
                        continue
                    ref = _fit(ref, y1 - y0, x1 - x0)[sel] if ref is not None else None
                    oref, _ = _decode_tile(otif, opage, k)
                    base = 0
                    if oref is not None:
                        base = _maxdiff(
                            original[y0:y1, x0:x1][sel], _fit(oref, y1 - y0, x1 - x0)[sel]
                        )
                    diff = _maxdiff(got, ref)
                    if diff > base + 2:
                        changed = int(
                            np.count_nonzero(
                                np.any(
                                    np.abs(got.astype(int) - ref.astype(int)) > base + 2, axis=-1
                                )
                                if got.ndim == 3
                                else np.abs(got.astype(int) - ref.astype(int)) > base + 2
                            )
                        )
                        bad.append(
                            f"{where}: differs from tifffile's decode of the mutant by up "
                            f"to {diff} in {changed} pixels"
                        )
            if absent:
                self.notes.append(
                    f"absent_as_background: {absent} tile(s) of level {level} with "
                    "byte count 0 shown as background"
                )
            self.silent.extend(bad[:6])

    def _check_png(self, mutant: np.ndarray, original: np.ndarray) -> None:
        from PIL import Image

        try:
            with Image.open(self.job["file"]) as image:
                ref = np.asarray(image.convert("RGB"))
        except Exception as exc:  # noqa: BLE001
            self.silent.append(
                f"pixels differ from the original, served without error, and "
                f"Pillow fails on the file: {type(exc).__name__}: {exc}"[:300]
            )
            return
        if ref.shape[:2] == mutant.shape[:2] and _maxdiff(mutant[..., :3], ref) > 0:
            self.silent.append(
                f"pixels differ from Pillow's decode of the mutant by up to "
                f"{_maxdiff(mutant[..., :3], ref)}"
            )

    def _check_dicom(self, level: int, mutant: np.ndarray, original: np.ndarray, meta) -> None:
        import imagecodecs

        file = Path(self.job["file"])
        data = file.read_bytes()
        try:
            info = mutate.parse_dicom(file, is_level=True)
        except Exception as exc:  # noqa: BLE001
            self.silent.append(
                f"level {level}: pixels differ from the original, served without "
                f"error, and pydicom cannot parse the mutated instance: {exc}"[:300]
            )
            return
        for k, (offset, length) in enumerate(info.items[1:]):
            frame = data[offset + 8 : offset + 8 + length]
            try:
                imagecodecs.jpeg8_decode(frame)
            except Exception as exc:  # noqa: BLE001
                diff = np.argwhere(np.any(mutant != original, axis=-1))
                y, x = diff[0] if len(diff) else (0, 0)
                self.silent.append(
                    f"level {level}: pixels differ from the original (first at y {y}, x {x}, "
                    f"{len(diff)} pixels) and frame {k} of {file.name} fails a strict JPEG decode "
                    f"({exc})"[:300]
                )
                return
        self.notes.append(f"level {level}: differs from the original; every frame decodes")


def _tile_shape(page) -> tuple[int, int]:
    chunks = page.chunks
    if len(page.shape) == 2 or page.planarconfig == 1:
        return int(chunks[0]), int(chunks[1])
    return int(chunks[-2]), int(chunks[-1])


def _decode_tile(tif, page, k: int):
    """tifffile's strict decode of tile ``k``: (pixels as (h, w[, s]), None) or (None, error)."""
    offset, count = page.dataoffsets[k], page.databytecounts[k]
    try:
        if count <= 0 or offset <= 0:
            return None, f"offset {offset}, byte count {count}"
        fh = tif.filehandle
        if offset + count > fh.size:
            return None, f"tile bytes {offset}+{count} past the end ({fh.size})"
        fh.seek(offset)
        data = fh.read(count)
        kwargs = {"jpegtables": page.jpegtables}
        if getattr(page, "jpegheader", None) is not None:
            kwargs["jpegheader"] = page.jpegheader
        segment, _, shape = page.decode(data, k, **kwargs)
        if segment is None:
            return None, "no data"
        array = np.asarray(segment).reshape(shape)
        while array.ndim > 3 and array.shape[0] == 1:  # (depth, h, w, s), (1, 1, h, w, s)
            array = array[0]
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3):
            return None, f"tifffile decoded a {array.shape} segment"
    except Exception as exc:  # noqa: BLE001
        return None, f"{type(exc).__name__}: {str(exc)[:120]}"
    return array, None


def _fit(array: np.ndarray, height: int, width: int) -> np.ndarray:
    out = array[:height, :width]
    if out.ndim not in (2, 3):
        msg = f"cannot compare a {array.shape} tile"
        raise ValueError(msg)
    if out.shape[0] < height or out.shape[1] < width:
        pad = [(0, height - out.shape[0]), (0, width - out.shape[1])] + [(0, 0)] * (out.ndim - 2)
        out = np.pad(out, pad)
    return out


def _maxdiff(a: np.ndarray, b: np.ndarray) -> int:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        if a.ndim == 3 and b.ndim == 3 and a.shape[:2] == b.shape[:2]:
            n = min(a.shape[2], b.shape[2])
            a, b = a[..., :n], b[..., :n]
        elif a.ndim == 3 and b.ndim == 2 and a.shape[2] == 1:
            a = a[..., 0]
        else:
            return 255
    return int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64)))) if a.size else 0


def _child_main(job: dict[str, Any], folder: Path, memory: int, timeout: float) -> None:
    """In the forked child: limits, faulthandler, the work, the result file; never returns."""
    code = 0
    try:
        os.setpgid(0, 0)
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        crash = open(folder / "faulthandler.txt", "w")  # noqa: SIM115
        faulthandler.enable(crash, all_threads=True)
        faulthandler.dump_traceback_later(max(0.5, timeout - 1.0), file=crash)
        signal.alarm(int(timeout) + 5)  # a backstop should the parent die
        sys.stdout.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        errors = os.open(folder / "stderr.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(errors, 2)
        with contextlib.suppress(Exception):
            import warnings

            warnings.simplefilter("ignore")
        runner = readers.RUNNERS.get(job.get("reader", "wsiarray"), _Child)
        result = runner(job, folder).run()
        faulthandler.cancel_dump_traceback_later()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["peak_rss_mb"] = usage.ru_maxrss / 1024
        (folder / "result.json").write_text(json.dumps(result, default=str))
    except BaseException:  # noqa: BLE001
        with contextlib.suppress(BaseException):
            (folder / "child-error.txt").write_text(traceback.format_exc())
        code = 3
    os._exit(code)


# -- parent side ---------------------------------------------------------------------------------


def preload() -> None:
    """Import what children use, once, in the parent (no thread is started by importing)."""
    import logging

    logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # the mutants' warnings
    import imagecodecs  # noqa: F401
    import PIL.Image  # noqa: F401
    import pydicom  # noqa: F401
    import tifffile  # noqa: F401
    import xarray  # noqa: F401

    import wsiarray
    import wsiarray.api
    import wsiarray.compat.large_image
    import wsiarray.sources.dicom_
    import wsiarray.sources.openslide_
    import wsiarray.sources.pil_
    import wsiarray.sources.tifffile_
    import wsiarray.tree  # noqa: F401

    for name in ("dask.array", "openslide", "wsidicom", "pandas", "distributed", "click"):
        # dask imports distributed at a first compute (~1 s in every child otherwise)
        with contextlib.suppress(ImportError):
            __import__(name)


def _fork(job: dict[str, Any], folder: Path, config: Config, timeout: float) -> int:
    if threading.active_count() > 1:  # forking a threaded parent could deadlock the child
        msg = f"the fuzz runner has {threading.active_count()} threads; it must fork from one"
        raise RuntimeError(msg)
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.fork()
    if pid == 0:
        _child_main(job, folder, config.memory, timeout)
    return pid


@dataclass
class _Running:
    pid: int
    job: dict[str, Any]
    folder: Path
    started: float
    timeout: float
    killed: bool = False


def run_jobs(jobs: list[dict[str, Any]], config: Config, on_done=None) -> list[dict[str, Any]]:
    """Run ``jobs`` (dicts with at least ``id``, ``folder`` and ``timeout``), ``config.jobs`` at a
    time; each result dict gets ``rc``, ``signal``, ``seconds``, ``peak_rss_mb``, ``killed``."""
    pending = list(jobs)
    running: dict[int, _Running] = {}
    results: list[dict[str, Any]] = []
    while pending or running:
        while pending and len(running) < max(1, config.jobs):
            job = pending.pop(0)
            folder = Path(job["folder"])
            timeout = float(job.get("timeout", config.timeout))
            pid = _fork(job, folder, config, timeout)
            running[pid] = _Running(pid, job, folder, time.monotonic(), timeout)
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for r in running.values():
                if not r.killed and now - r.started > r.timeout:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(r.pid, signal.SIGKILL)
                    r.killed = True
            time.sleep(0.02)
            continue
        r = running.pop(pid, None)
        if r is None:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # any grandchild left behind
        result: dict[str, Any] = {
            "job": r.job,
            "seconds": round(time.monotonic() - r.started, 2),
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "killed": r.killed,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "rc": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        }
        result_file = r.folder / "result.json"
        if result_file.exists():
            with contextlib.suppress(ValueError):
                result["result"] = json.loads(result_file.read_text())
        for name in ("stage", "faulthandler.txt", "child-error.txt", "stderr.txt"):
            file = r.folder / name
            if file.exists():
                result[name] = file.read_text(errors="replace")[-6000:]
        results.append(result)
        if on_done is not None:
            on_done(result)
    return results


def outcome_of(raw: dict[str, Any], entry_format: str) -> Outcome:
    job = raw["job"]
    out = Outcome(
        id=job["id"],
        entry=job["entry"],
        format=entry_format,
        kind=job["kind"],
        detail=job["detail"],
        outcome="read_fine",
        seconds=raw["seconds"],
        peak_rss_mb=round(raw["peak_rss_mb"], 1),
        signal=raw.get("signal"),
    )
    stages = raw.get("stage", "").strip().splitlines()
    out.last_stage = stages[-1] if stages else ""
    result = raw.get("result")
    killed = raw["killed"] or raw.get("signal") == signal.SIGALRM
    if killed and result is not None and out.last_stage == "pixel check":
        # the fuzzer's own check ran out of time, not wsiarray: classify the reads
        result = dict(result, notes=[*result.get("notes", []), "pixel check killed at the limit"])
        killed = False
    if killed:
        out.outcome = "hang"
        out.stack = _stack(raw.get("faulthandler.txt", ""))
        out.steps = [
            {"step": out.last_stage, "class": "hang", "message": f"killed after {job['timeout']} s"}
        ]
        return out
    if result is None or raw.get("signal"):
        out.outcome = "crash"
        out.stack = _stack(raw.get("faulthandler.txt", "") or raw.get("child-error.txt", ""))
        signame = (
            signal.Signals(raw["signal"]).name if raw.get("signal") else f"exit {raw.get('rc')}"
        )
        out.steps = [{"step": out.last_stage, "class": "crash", "message": signame}]
        return out
    out.steps = result["steps"]
    out.silent = result.get("silent", [])
    out.notes = result.get("notes", [])
    classes = {s["class"] for s in out.steps}
    if out.silent:
        lost = all(s.startswith(("lost levels", "lost channels")) for s in out.silent)
        classes.add("silent_lost_levels" if lost else "silent_wrong_pixels")
        if lost:
            out.steps.append(
                {"step": "pixel check", "class": "silent_lost_levels", "message": out.silent[0]}
            )
        else:
            out.steps.append(
                {
                    "step": "pixel check",
                    "class": "silent_wrong_pixels",
                    "message": next(s for s in out.silent if not s.startswith("lost")),
                }
            )
    out.outcome = next(c for c in SEVERITY if c in classes)
    return out


def _stack(text: str) -> str:
    """The threads of a faulthandler dump that run wsiarray or fuzz code (innermost frame
    first; the main thread is the one in ``fuzz/run.py``), others left out."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith(("Thread ", "Current thread ")) or not blocks:
            blocks.append([])
        if line.strip():
            blocks[-1].append(line.replace(str(corpus_mod.REPO) + "/", ""))
    keep = [b for b in blocks if any("wsiarray/" in ln or "fuzz/" in ln for ln in b)] or blocks
    keep.sort(key=lambda b: not any("fuzz/run.py" in ln for ln in b))  # main thread first
    return "\n".join("\n".join(b[:30]) for b in keep[:4])


# -- the reference run of each original --------------------------------------------------------------


def _reference_job(entry: corpus_mod.Entry, folder: Path) -> None:
    """In a child: read every level of the original, save it, record the tifffile levels."""
    import wsiarray as wa

    folder.mkdir(parents=True, exist_ok=True)
    slide = wa.open(entry.path)
    meta: dict[str, Any] = {
        "level_shapes": [list(s) for s in slide.level_shapes],
        "associated": list(slide.associated),
        "tiff_levels": [],
        "file": str(entry.path),
    }
    for level in range(slide.level_count):
        np.save(folder / f"level{level}.npy", np.asarray(slide.image(level).values))
    if entry.container == "tiff":
        import tifffile

        with tifffile.TiffFile(entry.path) as tif:
            for level in tif.series[0].levels:
                pages = []
                for page in level.pages:
                    th, tw = _tile_shape(page)
                    pages.append(
                        {"offset": page.offset, "tile": [th, tw], "shape": list(page.shape[:2])}
                    )
                meta["tiff_levels"].append(pages)
    (folder / "meta.json").write_text(json.dumps(meta))


def _code_digest() -> str:
    """A hash of wsiarray's source: the originals' pixels are read again when the code changes
    (a decoder fix must not make every untouched tile look wrong)."""
    import hashlib

    import wsiarray

    h = hashlib.sha256()
    for file in sorted(Path(wsiarray.__file__).parent.rglob("*.py")):
        h.update(file.read_bytes())
    return h.hexdigest()[:12]


def references(entries: list[corpus_mod.Entry], config: Config) -> dict[str, Path]:
    """The reference folder of each entry (made once per machine, in child processes)."""
    out: dict[str, Path] = {}
    todo = []
    for entry in entries:
        name = f"{entry.name}-{corpus_mod.digest(entry.path)}-{_code_digest()}"
        folder = corpus_mod.cache_dir() / "refs" / name
        out[entry.name] = folder
        if not (folder / "meta.json").exists():
            todo.append((entry, folder))
    for entry, folder in todo:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _reference_job(entry, folder)
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            print(
                f"fuzz: no reference for {entry.name} (the original does not read)", file=sys.stderr
            )
            out.pop(entry.name)
    return out


# -- a campaign -------------------------------------------------------------------------------------


def plan(
    entries: list[corpus_mod.Entry], seed: int, count: int
) -> list[tuple[corpus_mod.Entry, str, int]]:
    """``count`` (entry, kind, index) triples: every (entry, kind) pair in a seeded order,
    cycled, so a short run still covers each kind of each container."""
    pairs = [(e, k) for e in entries for k in mutate.MUTATORS[e.container]]
    random.Random(seed).shuffle(pairs)
    return [(*pairs[i % len(pairs)], i) for i in range(count)]


def build_mutant(
    entry: corpus_mod.Entry, kind: str, seed: int, index: int, workdir: Path, refs: dict[str, Path]
) -> tuple[mutate.Mutant, dict[str, Any]] | None:
    """The mutant (and its child job) of ``(entry, kind, seed, index)``; when the kind does not
    apply to the file, the next kinds of its container are tried in order."""
    kinds = list(mutate.MUTATORS[entry.container])
    start = kinds.index(kind)
    for k in kinds[start:] + kinds[:start]:
        try:
            mutant = mutate.make_mutant(entry, k, seed, index, workdir)
        except mutate.NotApplicable:
            continue
        except Exception as exc:  # noqa: BLE001 - a mutator's bug must not end the campaign
            print(
                f"fuzz: mutator {k} failed on {entry.name} ({seed}.{index}): {exc!r}",
                file=sys.stderr,
            )
            continue
        return mutant, _job(entry, mutant, refs)
    return None


def _job(entry: corpus_mod.Entry, mutant: mutate.Mutant, refs: dict[str, Path]) -> dict[str, Any]:
    focus: dict[str, list] = {}
    reference = refs.get(entry.name)
    if entry.container == "tiff" and reference is not None and mutant.changed:
        meta = json.loads((reference / "meta.json").read_text())
        info = mutate.parse("tiff", entry.path)
        by_offset = {
            p["offset"]: (level, p)
            for level, pages in enumerate(meta["tiff_levels"])
            for p in pages
        }
        for ifd_offset, k in mutate.touched_tiles(info, mutant.changed):
            if ifd_offset in by_offset:
                level, page = by_offset[ifd_offset]
                th, tw = page["tile"]
                nx = -(-page["shape"][1] // tw)
                r, c = divmod(k, nx)
                focus.setdefault(str(level), []).append((r * th, r * th + th, c * tw, c * tw + tw))
    return {
        "id": mutant.id,
        "entry": entry.name,
        "kind": mutant.kind,
        "detail": mutant.detail,
        "path": str(mutant.path),
        "file": str(mutant.file),
        "container": entry.container,
        "reference": str(reference) if reference else None,
        "focus": focus,
        "folder": str(mutant.file.parent if not entry.is_folder else mutant.path.parent),
    }


def parse_id(mutant_id: str) -> tuple[str, str, int, int]:
    entry, kind, numbers = mutant_id.rsplit("/", 2)
    seed, index = numbers.split(".")
    return entry, kind, int(seed), int(index)


def asdict_outcome(out: Outcome) -> dict[str, Any]:
    return asdict(out)
