"""The same mutants through OpenSlide, tiffslide and tifffile: the report's reference columns.

Issue 15's table compares, mutant by mutant, wsiarray's outcome with other readers'. Each
reference library runs on the mutant in its own forked child (:func:`fuzz.run.run_jobs`: the
same time limit, ``RLIMIT_AS`` and faulthandler as wsiarray's child) and does what wsiarray's
child does as far as the library can: open, the metadata, every level (whole up to
``max_level_pixels``, else the same windows, :func:`fuzz.steps.windows`), the associated
images. Its steps are classified by wsiarray's rules (:mod:`fuzz.steps`), with the library's
own exceptions as its clean errors:

- ``openslide``: ``OpenSlideError`` (``OpenSlideUnsupportedFormatError`` included);
- ``tiffslide`` and ``tifffile``: ``TiffFileError``, ``ValueError`` (tifffile's way to say the
  data does not fit) and the errors of the libraries they decode through (imagecodecs, zarr).

There is no silent-pixel check for them. A library that does not read an entry's *original*
(it is not a format the library knows, or it fails on it) is ``unsupported`` for that entry's
mutants, which are then not run through it: ``originals`` says why.

A DICOM folder is given to the libraries as its first instance (OpenSlide finds the series'
other instances beside it; the TIFF readers refuse it at once).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from fuzz import steps

NAMES = ("openslide", "tiffslide", "tifffile")
#: a reference library's class for the mutants of an entry whose original it does not read
UNSUPPORTED = "unsupported"
#: where a library's own exceptions come from (the first part of their module's name)
_TIFF_STACK = {"tifffile", "tiffslide", "imagecodecs", "zarr"}


def parse_names(text: str) -> tuple[str, ...]:
    """``"openslide,tifffile"`` -> the names; ``""`` or ``"none"`` -> none."""
    names = tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        msg = f"unknown reference libraries {unknown}; choose from {', '.join(NAMES)} or none"
        raise ValueError(msg)
    return names


def preload(names: tuple[str, ...]) -> tuple[str, ...]:
    """Import the libraries once in the fuzz parent (importing starts no thread; zarr starts
    its event-loop thread at the first read, which only children do); the names of those
    installed (tiffslide is in the ``bench`` extra, not ``dev``)."""
    installed = []
    for name in names:
        try:
            __import__(name)
        except ImportError as exc:
            print(f"fuzz: no {name} column: {exc}", file=sys.stderr)
            continue
        installed.append(name)
    if "tifffile" in installed:
        import zarr  # noqa: F401
    return tuple(installed)


def jobs(job: dict[str, Any], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The reference children's jobs for wsiarray's ``job``: its mutant and windows, their own
    folder inside the mutant's, no pixel check."""
    path = Path(job["path"])
    if path.is_dir():
        path = min(path.iterdir())
    return [
        job
        | {
            "reader": name,
            "path": str(path),
            "folder": str(Path(job["folder"]) / f"reader-{name}"),
            "check_pixels": False,
        }
        for name in names
    ]


class _OpenSlideLike(steps.Steps):
    """OpenSlide's API, which tiffslide copies: open, properties, levels, associated images."""

    def open(self, path: str):
        raise NotImplementedError

    def region(self, slide, location: tuple[int, int], level: int, size: tuple[int, int]):
        raise NotImplementedError

    def run(self) -> dict[str, Any]:
        slide = self.step("open", self.open, self.job["path"])
        if slide is not None:
            self.step("properties", lambda: dict(slide.properties))
            dimensions = self.step("level_dimensions", lambda: list(slide.level_dimensions)) or []
            for level, (width, height) in enumerate(dimensions):
                self.step(f"level {level}", self._read_level, slide, level, height, width)
            names = self.step("associated", lambda: list(slide.associated_images)) or []
            for name in names:
                self.step(
                    f"associated {name}", lambda n=name: np.asarray(slide.associated_images[n])
                )
        return {"steps": self.steps}

    def _read_level(self, slide, level: int, height: int, width: int) -> None:
        if height * width <= self.job["max_level_pixels"]:
            self.region(slide, (0, 0), level, (width, height))
            return
        downsample = slide.level_downsamples[level]
        for y0, y1, x0, x1 in steps.windows(self.job, level, height, width):
            location = (int(x0 * downsample), int(y0 * downsample))  # in level-0 pixels
            self.region(slide, location, level, (x1 - x0, y1 - y0))


class _OpenSlideRun(_OpenSlideLike):
    def is_clean(self, exc: BaseException) -> bool:
        import openslide

        return isinstance(exc, openslide.OpenSlideError)

    def open(self, path: str):
        import openslide

        return openslide.OpenSlide(path)

    def region(self, slide, location, level, size):
        return np.asarray(slide.read_region(location, level, size))


def _tiff_stack_error(exc: BaseException) -> bool:
    return isinstance(exc, ValueError) or type(exc).__module__.split(".")[0] in _TIFF_STACK


class _TiffSlideRun(_OpenSlideLike):
    def is_clean(self, exc: BaseException) -> bool:
        return _tiff_stack_error(exc)

    def open(self, path: str):
        import tiffslide

        return tiffslide.TiffSlide(path)

    def region(self, slide, location, level, size):
        return slide.read_region(location, level, size, as_array=True)


class _TiffFileRun(steps.Steps):
    """tifffile: the first series' levels, the other series as the associated images."""

    def is_clean(self, exc: BaseException) -> bool:
        return _tiff_stack_error(exc)

    def run(self) -> dict[str, Any]:
        import tifffile

        tif = self.step("open", tifffile.TiffFile, self.job["path"])
        if tif is not None:
            series = self.step("series", lambda: list(tif.series)) or []
            if series:
                levels = self.step("levels", lambda: list(series[0].levels)) or []
                for level in range(len(levels)):
                    self.step(f"level {level}", self._read, series[0], level)
            for index in range(1, len(series)):
                self.step(f"series {index} {series[index].name}", self._read, series[index], 0)
        return {"steps": self.steps}

    def _read(self, series, level: int) -> None:
        page_series = series.levels[level]
        axes, shape = page_series.axes, page_series.shape
        if "Y" not in axes or "X" not in axes:
            msg = f"tifffile series axes {axes!r} without Y and X"
            raise ValueError(msg)
        height, width = shape[axes.index("Y")], shape[axes.index("X")]
        if height * width <= self.job["max_level_pixels"]:
            series.asarray(level=level)
            return
        import zarr

        array = zarr.open(series.aszarr(level=level), mode="r")
        for y0, y1, x0, x1 in steps.windows(self.job, level, height, width):
            index = tuple(
                slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X" else slice(None)
                for a in axes
            )
            array[index]


RUNNERS: dict[str, type[steps.Steps]] = {
    "openslide": _OpenSlideRun,
    "tiffslide": _TiffSlideRun,
    "tifffile": _TiffFileRun,
}
