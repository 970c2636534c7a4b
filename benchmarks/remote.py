"""Remote slides: the same slide read from a local file, from S3 (moto's server) and over HTTP
with 0 and 20 ms of injected latency, by wsiarray and by tiffslide over fsspec, in one run.

The runner (``python -m benchmarks``) starts the servers once, in its own process, when a
``remote`` case is selected (:class:`RemoteServers`), and runs every case in a fresh process
as usual. The servers are the test suite's (``tests/servers.py``): moto's S3 server in its own
process, and a threaded Range HTTP server in the runner, which waits on the case meanwhile,
so neither competes with the case for its interpreter lock.

A case opens the slide (timed, and the requests it cost counted by the server), then does its
work (timed, and its requests counted). The requests are counted by the servers: the HTTP
server's request log, and the lines of moto's request log (Werkzeug writes one per request).
A case asks the runner for the counts over a local connection (:func:`requests_so_far`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any, Self

import numpy as np

#: where the slide is read from, and the latency the HTTP server adds to every answer
LOCATIONS = {"local": None, "s3": None, "http 0 ms": 0.0, "http 20 ms": 0.020}
LIBRARIES = ("wsiarray", "tiffslide")
PATCH = 256
#: random 256² patches per case: 1000, or 100 with --quick (at 20 ms a request, 1000
#: patches cost 20 s per library and run)
PATCHES = {"full": 1000, "quick": 100}
#: the real Aperio SVS whose open is counted too (the issue's goal names an Aperio SVS)
CMU = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "testdata"
    / "aperio"
    / "CMU-1-Small-Region.svs"
)
#: the environment variable that tells a case where the servers are
ENV = "WSIARRAY_BENCH_REMOTE"
BUCKET = "bench"
#: seconds the runner waits before counting: a server logs a request after answering it
SETTLE = 0.05


def cases() -> dict[str, tuple[Any, dict[str, Any]]]:
    """The remote cases for ``run_case.CASES``: one per location and library, each measuring
    open, the level-0 mean and patches in one fresh process (a process start with these
    imports costs ~2-3 s on this machine; three per case would not fit --quick's budget)."""
    return {
        f"remote: {library}, {where}": (remote_case, {"library": library, "where": where})
        for where in LOCATIONS
        for library in LIBRARIES
    }


# ------------------------------------------------------------------------------------------
# the runner's side: servers, and the request counts for the cases
# ------------------------------------------------------------------------------------------


def _test_servers():
    """``tests.servers`` (the test suite's servers; not copied, imported). The repository root
    is put on ``sys.path`` so this works whatever the working directory: ``tests`` is not an
    installed package."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests import servers

    return servers


class RemoteServers:
    """moto's S3 server and two Range HTTP servers (0 and 20 ms latency) holding ``slide``
    (and CMU-1-Small-Region.svs when it is there), plus the connection the cases ask for
    request counts on. A context manager; :meth:`environment` is what a case needs."""

    def __init__(self, slide: Path, quick: bool) -> None:
        self.slide = slide
        self.quick = quick
        self._stack = contextlib.ExitStack()
        self.http: dict[str, Any] = {}
        self.s3: Any = None
        self.urls: dict[str, dict[str, str]] = {}
        self._authkey = secrets.token_bytes(16)
        self._listener: Listener | None = None

    def __enter__(self) -> Self:
        servers = _test_servers()
        try:
            with self._stack:
                self._start(servers)
                self._stack = self._stack.pop_all()
        except BaseException as exc:  # pytest.skip's exception is a BaseException
            msg = f"the remote benchmark's servers did not start: {type(exc).__name__}: {exc}"
            raise RuntimeError(msg) from exc
        return self

    def _start(self, servers: Any) -> None:
        files = {"slide": self.slide} | ({"CMU": CMU} if CMU.exists() else {})
        directory = Path(tempfile.mkdtemp(prefix="wsiarray-bench-remote-"))
        self._stack.callback(shutil.rmtree, directory, ignore_errors=True)
        for path in files.values():  # the HTTP server follows links: nothing is copied
            (directory / path.name).symlink_to(path)
        self.s3 = servers.start_moto_s3()
        self._stack.callback(self.s3.stop)
        for where, latency in LOCATIONS.items():
            if where.startswith("http"):
                server = self._stack.enter_context(servers.RangeHTTPServer(directory))
                server.latency = latency
                self.http[where] = server
        for key, path in files.items():
            (s3_url,) = self.s3.upload(BUCKET, [path])
            self.urls[key] = {"local": str(path), "s3": s3_url} | {
                where: f"{server.url}/{path.name}" for where, server in self.http.items()
            }
        self._listener = Listener(("127.0.0.1", 0), authkey=self._authkey)
        self._stack.callback(self._listener.close)
        threading.Thread(target=self._answer, daemon=True, name="request counts").start()

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def count(self, where: str) -> int:
        """Requests the server of ``where`` received so far (GET and HEAD)."""
        time.sleep(SETTLE)
        if where in self.http:
            return self.http[where].request_count
        if where == "s3":
            log = self.s3.log_path.read_text(errors="replace").splitlines()
            return sum('"GET ' in line or '"HEAD ' in line for line in log)
        return 0

    def _answer(self) -> None:
        """Answer the cases' ``count`` questions, one connection at a time."""
        assert self._listener is not None
        while True:
            try:
                connection = self._listener.accept()
            except OSError:  # closed: the run is over
                return
            with connection, contextlib.suppress(EOFError, OSError):
                while True:
                    connection.send(self.count(connection.recv()))

    def environment(self) -> dict[str, str]:
        """The environment variable a case reads (URLs, S3 options, where to ask counts)."""
        assert self._listener is not None
        host, port = self._listener.address
        spec = {
            "urls": self.urls,
            "s3_options": self.s3.storage_options,
            "counts": [host, port, self._authkey.hex()],
            "patches": PATCHES["quick" if self.quick else "full"],
        }
        return {ENV: json.dumps(spec)}


# ------------------------------------------------------------------------------------------
# the case's side
# ------------------------------------------------------------------------------------------

_connection: Any = None


def _spec() -> dict[str, Any]:
    text = os.environ.get(ENV)
    if not text:
        msg = f"remote cases run under `python -m benchmarks`, which starts the servers ({ENV})"
        raise RuntimeError(msg)
    return json.loads(text)


def requests_so_far(where: str) -> int:
    """How many requests the server of ``where`` has received (0 for a local file)."""
    global _connection
    if where == "local":
        return 0
    if _connection is None:
        host, port, key = _spec()["counts"]
        _connection = Client((host, port), authkey=bytes.fromhex(key))
    _connection.send(where)
    return int(_connection.recv())


def _url(where: str, slide: str) -> tuple[str, dict[str, Any]]:
    spec = _spec()
    options = spec["s3_options"] if where == "s3" else {}
    return spec["urls"][slide][where], options


class _Opened:
    """A slide opened by one library: timed, its requests counted."""

    def __init__(self, library: str, where: str, slide: str = "slide") -> None:
        self.library, self.where = library, where
        url, options = _url(where, slide)
        before = requests_so_far(where)
        started = time.perf_counter()
        if library == "wsiarray":
            import wsiarray as wa

            self.slide = wa.open(url, storage_options=options) if options else wa.open(url)
            height, width = self.slide.shape
        else:
            import tiffslide

            self.slide = tiffslide.TiffSlide(url, storage_options=options)
            width, height = self.slide.dimensions
            assert self.slide.properties
        self.open_ms = (time.perf_counter() - started) * 1000
        self.open_requests = requests_so_far(where) - before
        self.width, self.height = width, height


def _mean(opened: _Opened) -> float:
    """The whole level 0's mean colour on 2 threads; its seconds (after the open).

    wsiarray: ``slide.image(0).mean(("y", "x"))`` on dask's threaded scheduler with 2 workers
    (the lazy level is built before the clock). tiffslide: ``read_region`` of 4096² blocks on
    2 threads, each block summed per band (the suite's method for peers).
    """
    from benchmarks.cases import BLOCK, _level_blocks, _mean_by_blocks

    if opened.library == "wsiarray":
        import dask

        image = opened.slide.image(0)
        started = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=2):
            mean = image.mean(("y", "x")).compute()
        assert mean.shape == (3,)
        return time.perf_counter() - started
    slide = opened.slide

    def read(b: tuple[int, int, int, int]) -> np.ndarray:
        return slide.read_region((b[0], b[1]), 0, (b[2], b[3]), as_array=True)

    started = time.perf_counter()
    total = _mean_by_blocks(read, _level_blocks(opened.width, opened.height, BLOCK), 2)
    assert np.all(np.asarray(total) > 0)
    return time.perf_counter() - started


def _patches(opened: _Opened, count: int) -> float:
    """``count`` random 256² patches of level 0 read one after the other; their seconds.
    wsiarray ``slide.read(x, y, 256, 256)``, tiffslide ``read_region(..., as_array=True)``."""
    rng = np.random.default_rng(12345)
    xs = rng.integers(0, opened.width - PATCH, count).tolist()
    ys = rng.integers(0, opened.height - PATCH, count).tolist()
    slide = opened.slide
    started = time.perf_counter()
    if opened.library == "wsiarray":
        for x, y in zip(xs, ys, strict=True):
            assert slide.read(x, y, PATCH, PATCH).shape[:2] == (PATCH, PATCH)
    else:
        for x, y in zip(xs, ys, strict=True):
            patch = slide.read_region((x, y), 0, (PATCH, PATCH), as_array=True)
            assert patch.shape[:2] == (PATCH, PATCH)
    return time.perf_counter() - started


def remote_case(path: str, library: str, where: str):
    """One library, one location, in this fresh process:

    1. open the slide (timed; its requests counted),
    2. the level-0 mean (timed: the case's rate; its requests counted),
    3. open it again (untimed: a fresh file object, so tiffslide's fsspec read-ahead cache
       starts empty; wsiarray keeps no pixels) and read the random patches (timed, counted),
    4. open CMU-1-Small-Region.svs, a real Aperio SVS (its requests counted; its time is on a
       warm connection pool, so it is not reported).
    """
    extra: dict[str, float] = {}
    opened = _Opened(library, where)
    extra |= {"open_ms": opened.open_ms, "open_requests": float(opened.open_requests)}
    before = requests_so_far(where)
    mean_seconds = _mean(opened)
    extra["mean_requests"] = float(requests_so_far(where) - before)
    del opened
    again = _Opened(library, where)
    count = int(_spec()["patches"])
    before = requests_so_far(where)
    extra["patch_seconds"] = _patches(again, count)
    extra["patch_requests"] = float(requests_so_far(where) - before)
    extra["patches"] = float(count)
    if "CMU" in _spec()["urls"] and where != "local":
        extra["cmu_open_requests"] = float(_Opened(library, where, "CMU").open_requests)
    return again.width * again.height / 1e6, "MP", extra | {"work_seconds": mean_seconds}


# ------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------


def _rate(row: dict[str, Any] | None, what: str) -> float | None:
    """MP/s of the level-0 mean, or patches/s, of a summarised remote case."""
    if not row or "rate" not in row:
        return None
    if what == "mean":
        return float(row["rate"])
    return float(row["patches"]) / float(row["patch_seconds"])


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "x") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


def report(by_name: dict[str, dict[str, Any]], repeat: int, slide_name: str) -> list[str]:
    """The remote table (one row per location and library) and the issue's goals for it."""
    rows = {(w, lib): by_name.get(f"remote: {lib}, {w}") for w in LOCATIONS for lib in LIBRARIES}
    rate = {(key, what): _rate(row, what) for key, row in rows.items() for what in ("mean", "p")}
    patches = next((int(r["patches"]) for r in rows.values() if r and "patches" in r), 0)
    lines = [
        (
            f"Remote: `{slide_name}` read from a local file, from S3 (moto's server) and over "
            f"HTTP (0 and 20 ms added per request); medians of {repeat} runs, each in a fresh "
            "process. open: open + level sizes; level-0 mean on 2 threads; "
            f"{patches} random 256² patches one after the other; requests counted by the "
            "servers (reqs); x local: the same library from the local file."
        ),
        "",
        (
            "| slide at | library | open | open reqs | level-0 mean | reqs | x local | "
            "wsiarray / tiffslide | patches | reqs / patch | x local | wsiarray / tiffslide |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for where in LOCATIONS:
        remote = where != "local"
        for library in LIBRARIES:
            row = rows[where, library]
            if not row or "error" in row:
                error = row.get("error") if row else "not run"
                lines.append(f"| {where} | {library} | error: {error} |" + " |" * 9)
                continue
            mean, patch = rate[(where, library), "mean"], rate[(where, library), "p"]
            ours = library == "wsiarray"
            cells = [
                where,
                library,
                _fmt(row["open_ms"], ".0f", " ms"),
                _fmt(row["open_requests"], ".0f", "") if remote else "",
                _fmt(mean, ".1f", " MP/s"),
                _fmt(row["mean_requests"], ".0f", "") if remote else "",
                _fmt(_ratio(mean, rate[("local", library), "mean"])) if remote else "",
                _fmt(_ratio(mean, rate[(where, "tiffslide"), "mean"])) if ours else "",
                _fmt(patch, ".0f", "/s"),
                _fmt(row["patch_requests"] / row["patches"], ".2f", "") if remote else "",
                _fmt(_ratio(patch, rate[("local", library), "p"])) if remote else "",
                _fmt(_ratio(patch, rate[(where, "tiffslide"), "p"])) if ours else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| remote goal | measured | wanted | met |", "|---|---:|---:|:-:|"]
    for where in LOCATIONS:
        row = rows[where, "wsiarray"]
        if where != "local" and row and "open_requests" in row:
            lines.append(_goal(f"open requests, {slide_name}, {where}", row["open_requests"]))
            if "cmu_open_requests" in row:
                lines.append(
                    _goal(
                        f"open requests, CMU-1-Small-Region.svs, {where}", row["cmu_open_requests"]
                    )
                )
    slow = rate[("http 20 ms", "wsiarray"), "mean"]
    for what, reference, wanted in (
        ("level-0 mean at http 20 ms / local, wsiarray", ("local", "wsiarray"), 0.5),
        ("level-0 mean at http 20 ms: wsiarray / tiffslide", ("http 20 ms", "tiffslide"), 5.0),
    ):
        ratio = _ratio(slow, rate[reference, "mean"])
        if ratio is not None:
            met = "yes" if ratio >= wanted else "NO"
            lines.append(f"| {what} | {ratio:.2f}x | >= {wanted:g}x | {met} |")
    return lines


def _goal(what: str, requests: float, most: int = 5) -> str:
    met = "yes" if requests <= most else "NO"
    return f"| {what} (wsiarray) | {requests:.0f} | <= {most} | {met} |"
