"""The process-wide cache of open slides: bounded, closing what it evicts, never under a reader."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import tifffile

import wsiarray as wa
from wsiarray.sources import LevelInfo, SlideMetadata, SlideSource, SourceCache


class _Recorded(SlideSource):
    """A source that records whether it was closed (and reads nothing)."""

    name: ClassVar[str] = "recorded"

    def __init__(self, path: Path, /, **options: Any) -> None:
        super().__init__(path, **options)
        self.closed = False
        self.metadata = SlideMetadata(
            format="test",
            reader=self.name,
            levels=(LevelInfo((8, 8), (8, 8)),),
            dtype="uint8",
            channels=("L",),
        )

    @classmethod
    def claims(cls, path: Path, header: bytes, /) -> bool:
        return True

    def read_block(self, level: int, y0: int, y1: int, x0: int, x1: int, /) -> np.ndarray:
        return np.zeros((y1 - y0, x1 - x0, 1), np.uint8)

    def read_associated(self, name: str, /) -> np.ndarray:
        raise KeyError(name)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """Five distinct existing files (a spec stamps its file)."""
    paths = []
    for i in range(5):
        path = tmp_path / f"slide{i}"
        path.write_bytes(b"x" * (i + 1))
        paths.append(path)
    return paths


def _opener(opened: list[_Recorded]) -> Any:
    def open_recorded(path: Any, *, reader: str, options: Any) -> _Recorded:
        source = _Recorded(Path(path))
        opened.append(source)
        return source

    return open_recorded


def test_evicted_sources_close_and_those_in_use_close_when_done(files: list[Path]) -> None:
    opened: list[_Recorded] = []
    cache = SourceCache(2, opener=_opener(opened))
    specs = [cache.open(path)[0] for path in files[:2]]
    first, second = opened
    with cache.use(specs[0]) as source:
        assert source is first
        cache.open(files[2])  # evicts the least recently used: the second, idle
        assert second.closed
        cache.open(files[3])  # evicts the first, in use: it stays open under its reader
        assert not first.closed
        assert source.read(0, slice(0, 2), slice(0, 2)).shape == (2, 2, 1)
    assert first.closed  # closed as its last user is done
    assert len(cache) == 2
    with cache.use(specs[0]) as reopened:  # evicted: opened again
        assert reopened is not first
        assert not reopened.closed
    cache.clear()
    assert all(source.closed for source in opened)


def test_threads_opening_one_spec_at_once_share_one_source(files: list[Path]) -> None:
    opened: list[_Recorded] = []
    both_opening = threading.Barrier(2)
    plain = _opener(opened)

    def slow_opener(path: Any, *, reader: str, options: Any) -> _Recorded:
        source = plain(path, reader=reader, options=options)
        if len(opened) > 1:
            both_opening.wait(timeout=5)
        return source

    cache = SourceCache(4, opener=slow_opener)
    spec, _ = cache.open(files[0])
    cache.clear()  # the next two uses both miss
    used: list[SlideSource] = []

    def use() -> None:
        with cache.use(spec) as source:
            used.append(source)
            time.sleep(0.05)

    threads = [threading.Thread(target=use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert used[0] is used[1]  # one source kept, used by both
    assert sum(not source.closed for source in opened) == 1  # the duplicate was closed
    assert len(cache) == 1


def test_a_file_changed_since_open_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, np.full((64, 64, 3), 7, np.uint8), tile=(16, 16), photometric="rgb")
    slide = wa.open(path)
    assert (slide.read(0, 0, 8, 8) == 7).all()  # its source stays open in the cache
    with path.open("r+b") as file:  # rewritten in place, under the open source
        file.truncate(0)
        file.write(_tiff_bytes(tmp_path, 9))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # even within mtime resolution
    with pytest.raises(wa.SlideChangedError, match="has changed"):
        slide.read(0, 0, 8, 8)
    with pytest.raises(wa.SlideChangedError, match="has changed"):
        slide.image(0).compute()  # dask tasks too
    assert (wa.open(path).read(0, 0, 8, 8) == 9).all()  # opened again: the new file


def _tiff_bytes(folder: Path, value: int) -> bytes:
    other = folder / f"other{value}.tif"
    tifffile.imwrite(other, np.full((64, 64, 3), value, np.uint8), tile=(16, 16), photometric="rgb")
    return other.read_bytes()


#: Run in a child process: a descriptor limit applies to the whole process.
_MANY_SLIDES = """
import os, resource, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import wsiarray as wa
from wsiarray.sources import CACHE_SIZE, source_cache

folder, limit = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
paths = sorted(os.listdir(folder), key=lambda name: int(name.split(".")[0]))
paths = [os.path.join(folder, name) for name in paths]

def descriptors():
    return len(os.listdir("/proc/self/fd"))

def expected(i):
    return np.array([i % 256, i // 256, 7], np.uint8)

wa.open(paths[0]).read(0, 0, 8, 8)  # imports and one-time set-up, then the baseline
source_cache.clear()
baseline = descriptors()
slides = []
for i, path in enumerate(paths):  # one after the other
    slide = wa.open(path)
    assert (slide.read(5, 3, 20, 10) == expected(i)).all(), path
    slides.append(slide)
    assert descriptors() <= baseline + CACHE_SIZE, (i, descriptors(), baseline)

def read_again(i):  # concurrently: evictions while other threads read
    return bool((slides[i].read(0, 0, 32, 32) == expected(i)).all())

with ThreadPoolExecutor(8) as pool:
    assert all(pool.map(read_again, reversed(range(len(slides)))))
assert descriptors() <= baseline + CACHE_SIZE
source_cache.clear()
assert descriptors() == baseline, (descriptors(), baseline)
print(len(slides), "slides, descriptors back to", baseline)
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_thousands_of_slides_under_a_tight_descriptor_limit(tmp_path: Path) -> None:
    """2,000 distinct slides under RLIMIT_NOFILE=256, read one by one and from 8 threads."""
    count = 2000
    for i in range(count):
        pixels = np.empty((32, 32, 3), np.uint8)
        pixels[...] = (i % 256, i // 256, 7)
        tifffile.imwrite(tmp_path / f"{i}.tif", pixels, tile=(16, 16), photometric="rgb")
    result = subprocess.run(
        [sys.executable, "-c", _MANY_SLIDES, str(tmp_path), "256"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{count} slides, descriptors back to" in result.stdout
