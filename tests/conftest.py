"""Shared fixtures: the real slides in ../shared/testdata and small synthetic slides."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

REPO = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("WSIARRAY_TEST_DATA", REPO.parent / "shared" / "testdata")).resolve()


def find_real_slide(relative: str) -> Path:
    """Path of a real slide in the shared test data; skips (with the reason) where absent."""
    path = TESTDATA / relative
    if not path.exists():
        pytest.skip(
            f"real test slide {relative} not found under {TESTDATA} (set WSIARRAY_TEST_DATA)"
        )
    return path


@pytest.fixture(name="real_slide", scope="session")
def real_slide_fixture() -> Callable[[str], Path]:
    """``real_slide("aperio/CMU-1-Small-Region.svs")``: the path of a real slide in the shared
    test data (``../shared/testdata``, or ``$WSIARRAY_TEST_DATA``); the test is skipped, with
    the reason, where it is absent."""
    return find_real_slide


@pytest.fixture(scope="session")
def pattern() -> Callable[..., np.ndarray]:
    """``pattern(height, width, bands, dtype="uint8")``: deterministic content that differs in
    every pixel and band, so that a misplaced tile or band shows."""

    def make(height: int, width: int, bands: int, dtype: str = "uint8") -> np.ndarray:
        y, x, c = np.mgrid[0:height, 0:width, 0:bands]
        values = (y * 7 + x * 13 + c * 101) % (256 if dtype == "uint8" else 65521)
        return values.astype(dtype)

    return make


@pytest.fixture(scope="session")
def sample_svs() -> Path:
    """The built-in sample slide (6000 x 4000, levels 1/4/16, JPEG with shared tables)."""
    import wsiarray

    return wsiarray.datasets.sample_slide()


@pytest.fixture
def damaged_ndpi(tmp_path: Path, real_slide: Callable[[str], Path]) -> Callable[..., Path]:
    """``damaged_ndpi(level=, interval=)``: a copy of the real NDPI with one restart interval
    of one level zeroed (OpenSlide refuses it too)."""

    def damage(level: int, interval: int) -> Path:
        source = real_slide("hamamatsu/test3-DAPI-2-(387).ndpi")
        with tifffile.TiffFile(source) as tif:
            page = tif.series[0].levels[level].pages[0]
            offset, count = page.dataoffsets[interval], page.databytecounts[interval]
        data = bytearray(source.read_bytes())
        data[offset : offset + count] = bytes(count)
        target = tmp_path / "damaged.ndpi"
        target.write_bytes(bytes(data))
        return target

    return damage


from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the DICOMweb fixture's types; the helper itself is imported when used
    from collections.abc import Iterator

    from tests.servers import OrthancServer


@pytest.fixture(scope="session")
def orthanc() -> Iterator[OrthancServer]:
    """A private Orthanc DICOMweb server for the session (tests/servers.py): ``.url`` is the
    DICOMweb root (``http://127.0.0.1:PORT/dicom-web``), ``.upload(paths)`` stores DICOM files
    and returns ``[(study_uid, series_uid), ...]``, one per series. Skipped, naming what is
    missing and how CI installs it, where Orthanc or its DICOMweb plugin is not installed."""
    from tests.servers import start_orthanc

    server = start_orthanc()
    try:
        yield server
    finally:
        server.stop()


if TYPE_CHECKING:  # the remote-slide servers' types (issue 13)
    from tests.servers import MotoS3Server, RangeHTTPServer


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3Server]:
    """A private S3 server for the session: moto's server mode in its own process
    (tests/servers.py). ``.endpoint_url``, ``.storage_options`` (for s3fs/fsspec),
    ``.upload(bucket, paths or {key: path})`` returns the ``s3://`` URLs, ``.put(bucket, key,
    data)``, ``.reset()`` empties it. Other tests share it: use a bucket of your own. Skipped,
    naming the missing package, where moto's server mode is not installed."""
    from tests.servers import start_moto_s3

    server = start_moto_s3()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[RangeHTTPServer]:
    """A new HTTP server with Range support for each test (tests/servers.py), serving the empty
    folder ``.directory`` (``tmp_path / "http"``; put or symlink files there): ``.url`` is its
    base URL. Knobs ``latency``, ``fail_rate``, ``drop_rate`` (+ ``drop_mode``) start at 0 and
    can be changed while it runs; ``.requests`` logs every GET and HEAD."""
    from tests.servers import RangeHTTPServer

    directory = tmp_path / "http"
    directory.mkdir()
    with RangeHTTPServer(directory) as server:
        yield server
