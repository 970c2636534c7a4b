"""A 1,000-slide cohort from S3 under ``RLIMIT_NOFILE=256`` (issue 13, section 3, "Scale").

``python -m benchmarks.cohort_scale [--slides N] [--threads T] [--no-cluster]`` (or
``python -m benchmarks --only cohort_scale``, which runs this with its defaults):

1. writes N small distinct slides (1024 x 768 px, 256-px JPEG tiles, a 512 x 384 reduced
   level; a pattern of random 16-px blocks, seeded by the slide's number) and uploads them to
   moto's S3 server (``tests/servers.py``, its own process), one bucket;
2. in a child process whose descriptor limit is 256 (soft and hard), opens the cohort
   (``wa.open_cohort``) and maps a feature function over every tile (``wa.map_tiles``,
   ``size=256``) on dask's threaded scheduler, sampling its open descriptors
   (``/proc/self/fd``) and RSS every 20 ms; then checks a sample of slides' Parquet parts equal
   ``wa.TileGrid(wa.open(url), 256).map(...)`` of that slide alone, exactly;
3. unless ``--no-cluster``: the same on a cluster started with dask's command line
   (``dask scheduler``, ``dask worker``, every process under the same limit), first with one
   worker, then with two, the client in a child under the limit; this process samples the
   cluster's processes' descriptors and RSS.

Prints a table and writes it to ``benchmarks/results/cohort_scale.{md,json}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

import numpy as np

from benchmarks import remote

RESULTS = Path(__file__).parent / "results"
BUCKET = "cohort"
SHAPE = (768, 1024)
TILE = 256
LIMIT = 256
#: seconds between samples of descriptors and RSS
PERIOD = 0.02


# ------------------------------------------------------------------------------------------
# slides
# ------------------------------------------------------------------------------------------


def slide_pixels(index: int) -> np.ndarray:
    """Distinct RGB pixels for slide ``index``: random 16-px blocks (JPEG-friendly)."""
    rng = np.random.default_rng(index)
    blocks = rng.integers(40, 250, (SHAPE[0] // 16, SHAPE[1] // 16, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)


def write_slide(path: Path, index: int) -> None:
    """A tiled JPEG TIFF with a 2x reduced level (a SubIFD) and a pixel size of 0.5 µm."""
    import tifffile

    pixels = slide_pixels(index)
    common = {"tile": (TILE, TILE), "compression": "jpeg", "photometric": "rgb", "metadata": None}
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            pixels,
            subifds=1,
            resolution=(2e4, 2e4),  # pixels per cm: 0.5 µm
            resolutionunit="CENTIMETER",
            **common,
        )
        tif.write(pixels[::2, ::2], subfiletype=1, **common)


def features(tile: np.ndarray) -> np.ndarray:
    """The feature function: mean and standard deviation of each channel."""
    pixels = tile.reshape(-1, tile.shape[-1]).astype(np.float64)
    return np.concatenate([pixels.mean(axis=0), pixels.std(axis=0)])


# ------------------------------------------------------------------------------------------
# the child: open_cohort + map_tiles under the descriptor limit
# ------------------------------------------------------------------------------------------


class Sampler:
    """Samples this process's open descriptors and RSS every :data:`PERIOD` seconds, and
    the parts written so far, so that RSS can be shown against progress."""

    def __init__(self, output: Path | None = None) -> None:
        import psutil

        self.process = psutil.Process()
        self.output = output
        self.fds: list[int] = []
        self.rss: list[int] = []
        self.progress: list[tuple[int, int]] = []  # (parts written, RSS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            try:
                self.fds.append(len(os.listdir("/proc/self/fd")))
            except OSError:  # EMFILE for the sampler itself: note it as the limit
                self.fds.append(LIMIT)
            self.rss.append(self.process.memory_info().rss)
            if self.output is not None and tick % 25 == 0:
                with contextlib.suppress(OSError):
                    parts = sum(n.endswith(".parquet") for n in os.listdir(self.output))
                    self.progress.append((parts, self.rss[-1]))
            tick += 1
            self._stop.wait(PERIOD)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def _rss_at(progress: list[tuple[int, int]], total: int) -> dict[str, float]:
    """Peak RSS (MB) seen up to a quarter, a half, ... of the slides written."""
    marks = {}
    for share in (0.25, 0.5, 0.75, 1.0):
        seen = [rss for parts, rss in progress if parts <= share * total]
        if seen:
            marks[f"{int(share * 100)}%"] = max(seen) / 2**20
    return marks


def stream_of(client: Any) -> Any:
    """``distributed.get_task_stream`` of ``client``, or nothing on threads."""
    if client is None:
        return contextlib.nullcontext()
    import distributed

    return distributed.get_task_stream(client=client)


def child(config: dict[str, Any], mode: str, address: str | None) -> dict[str, Any]:
    """Run the cohort in this process (its descriptor limit already set); the figures."""
    import dask
    import pandas as pd

    import wsiarray as wa

    urls, options = config["urls"], config["storage_options"]
    output = Path(config["output"]) / f"{mode}-{int(time.time() * 1000)}"
    client = None
    if mode != "threads":
        import distributed

        client = distributed.Client(address, timeout=30)  # the default client: map_tiles uses it
    baseline_fds = len(os.listdir("/proc/self/fd"))
    baseline_rss = Sampler().process.memory_info().rss
    try:
        # threads: dask's threaded scheduler; else the default client, which an explicit
        # scheduler setting would override
        local = {"scheduler": "threads", "num_workers": config["threads"]}
        with Sampler(output) as sampler, dask.config.set(local if client is None else {}):
            started = time.perf_counter()
            cohort = wa.open_cohort(urls, storage_options=options)
            opened = time.perf_counter()
            with stream_of(client) as stream:
                status = wa.map_tiles(
                    cohort, features, output, size=TILE, storage_options=options, progress=False
                )
            finished = time.perf_counter()
    finally:
        if client is not None:
            client.close()
    errors = [e for e in [*cohort["error"], *status["error"]] if e]
    emfile = [e for e in errors if "Too many open files" in e or "Errno 24" in e]
    result: dict[str, Any] = {
        "mode": mode,
        "slides": len(urls),
        "open_errors": int((cohort["error"] != "").sum()),
        "statuses": status["status"].value_counts().to_dict(),
        "errors": sorted(set(errors))[:5],
        "emfile": len(emfile),
        "tiles": int(status["tiles"].sum()),
        "open_s": opened - started,
        "map_s": finished - opened,
        "wall_s": finished - started,
        "baseline_fds": baseline_fds,
        "max_fds": max(sampler.fds),
        "fd_samples": len(sampler.fds),
        "baseline_rss_mb": baseline_rss / 2**20,
        "peak_rss_mb": max(sampler.rss) / 2**20,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_by_progress_mb": _rss_at(sampler.progress, len(urls)),
        "limit": resource.getrlimit(resource.RLIMIT_NOFILE),
    }
    if stream is not None:  # the slides' tasks per worker: proof the cluster did the work
        workers: dict[str, int] = {}
        for task in stream.data:
            workers[task["worker"]] = workers.get(task["worker"], 0) + 1
        result["tasks_per_worker"] = sorted(workers.values())
    # per-slide results against the slide alone, a sample spread over the cohort
    picks = sorted({int(i) for i in np.linspace(0, len(urls) - 1, config["sample"])})
    unequal = []
    for index in picks:
        slide_id = cohort["id"].iloc[index]
        if not (output / f"{slide_id}.parquet").exists():
            unequal.append(f"{slide_id} (no part)")
            continue
        part = pd.read_parquet(output / f"{slide_id}.parquet")
        alone = wa.TileGrid(wa.open(urls[index], storage_options=options), TILE).map(features)
        expected = np.asarray(alone.compute(scheduler="threads").values)
        rows, cols = part["tile_row"].to_numpy(), part["tile_col"].to_numpy()
        got = part[[f"f{k}" for k in range(expected.shape[-1])]].to_numpy()
        same = len(part) == expected.shape[0] * expected.shape[1] and np.array_equal(
            got, expected[rows, cols]
        )
        if not same:
            unequal.append(slide_id)
    result["equal_checked"] = len(picks)
    result["unequal"] = unequal
    shutil.rmtree(output, ignore_errors=True)
    return result


def child_main(config_path: str, mode: str, address: str | None) -> None:
    config = json.loads(Path(config_path).read_text())
    limit = config["limit"]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    try:
        result = child(config, mode, address)
    except BaseException:  # noqa: BLE001 - the traceback, for the report
        traceback.print_exc()
        sys.exit(1)
    print(json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------
# the runner
# ------------------------------------------------------------------------------------------


def _limit(limit: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


def run_child(config_path: Path, mode: str, address: str | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.cohort_scale", "--child", str(config_path), mode]
    if address:
        command.append(address)
    completed = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
        env=os.environ | {"PYTHONWARNINGS": "ignore"},
    )
    if completed.returncode:
        return {"mode": mode, "failed": f"exit {completed.returncode} (traceback above)"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


class CliCluster:
    """``dask scheduler`` and ``dask worker`` nannies (1 process, ``threads`` threads each),
    each started under the descriptor limit, in a temporary directory; their descriptors and
    RSS sampled from here."""

    def __init__(self, limit: int, threads: int) -> None:
        self.limit, self.threads = limit, threads
        self.base = Path(tempfile.mkdtemp(prefix="wsiarray-cohort-cluster-"))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.address = ""
        self.env = os.environ | {
            "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": "ignore",
            # the workers unpickle the feature function from this package
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        self._samples: dict[int, tuple[int, int]] = {}  # pid -> (max fds, max RSS)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def command(role: str) -> list[str]:
        entry = Path(sys.executable).with_name("dask")
        if entry.is_file():
            return [str(entry), role]
        return [sys.executable, "-m", f"distributed.cli.dask_{role}"]

    def _popen(self, command: list[str], name: str) -> subprocess.Popen[bytes]:
        directory = self.base / name
        directory.mkdir()
        with (directory / "log").open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=directory,
                env=self.env | {"TMPDIR": str(directory)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_limit(self.limit),  # noqa: PLW1509 - setrlimit only
            )
        self.processes.append(process)
        return process

    def __enter__(self) -> Self:
        scheduler_file = self.base / "scheduler.json"
        scheduler = self._popen(
            [
                *self.command("scheduler"),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            "scheduler",
        )
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            if scheduler.poll() is not None or time.monotonic() > deadline:
                msg = (
                    f"dask scheduler did not start: {(self.base / 'scheduler' / 'log').read_text()}"
                )
                raise RuntimeError(msg)
            time.sleep(0.05)
        self.address = json.loads(scheduler_file.read_text())["address"]
        self._sampler.start()
        return self

    def add_worker(self) -> None:
        index = len(self.processes) - 1
        self._popen(
            [
                *self.command("worker"),
                self.address,
                "--nworkers",
                "1",
                "--nthreads",
                str(self.threads),
                "--nanny",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--name",
                f"worker-{index}",
                "--local-directory",
                str(self.base / f"worker-{index}"),
                "--death-timeout",
                "30",
            ],
            f"worker-{index}",
        )
        import distributed

        with distributed.Client(self.address, timeout=30) as client:
            client.wait_for_workers(index + 1, timeout=60)

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            for process in list(self.processes):
                try:
                    tree = psutil.Process(process.pid)
                    for member in [tree, *tree.children(recursive=True)]:
                        fds, rss = member.num_fds(), member.memory_info().rss
                        old = self._samples.get(member.pid, (0, 0))
                        self._samples[member.pid] = (max(old[0], fds), max(old[1], rss))
                except psutil.Error:
                    pass
            self._stop.wait(0.05)

    def reset_samples(self) -> None:
        self._samples = {}

    def samples(self) -> dict[str, float]:
        """Max descriptors and RSS (MB) of any cluster process since the last reset."""
        values = list(self._samples.values()) or [(0, 0)]
        return {
            "cluster_max_fds": max(v[0] for v in values),
            "cluster_peak_rss_mb": max(v[1] for v in values) / 2**20,
        }

    def __exit__(self, *exc_info: object) -> None:
        import psutil

        self._stop.set()
        tracked = []
        for process in self.processes:
            with contextlib.suppress(psutil.Error):
                tree = psutil.Process(process.pid)
                tracked += [tree, *tree.children(recursive=True)]
        for process in reversed(self.processes):  # workers first, the scheduler last
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(tracked, timeout=15)
        for member in alive:
            with contextlib.suppress(psutil.Error):
                member.kill()
        for process in self.processes:
            process.wait(timeout=15)
        shutil.rmtree(self.base, ignore_errors=True)


def prepare(count: int, folder: Path, s3: Any) -> tuple[list[str], float, float]:
    """Write ``count`` slides into ``folder`` and upload them; the URLs and both times."""
    started = time.perf_counter()
    paths = [folder / f"slide-{i:05d}.tif" for i in range(count)]
    for index, path in enumerate(paths):
        write_slide(path, index)
    written = time.perf_counter()
    s3.create_bucket(BUCKET)
    with ThreadPoolExecutor(8) as pool:
        urls = [u for (u,) in pool.map(lambda p: s3.upload(BUCKET, [p]), paths)]
    return urls, written - started, time.perf_counter() - written


def row(result: dict[str, Any], workers: str) -> str:
    if "failed" in result:
        return f"| {workers} | failed: {result['failed']} |" + " |" * 9
    written = result["statuses"].get("written", 0)
    return (
        f"| {workers} | {result['slides']} | {result['wall_s']:.1f} s "
        f"(open {result['open_s']:.1f} + map {result['map_s']:.1f}) "
        f"| {result['slides'] / result['wall_s']:.1f} | {result['tiles'] / result['map_s']:.0f} "
        f"| {written} / {result['slides']} | {result['emfile']} "
        f"| {result['max_fds']} (baseline {result['baseline_fds']}) "
        f"| {result['peak_rss_mb']:.0f} (baseline {result['baseline_rss_mb']:.0f}) "
        f"| {result.get('cluster_max_fds', '')} "
        f"| {result['equal_checked'] - len(result['unequal'])} / {result['equal_checked']} |"
    )


def report(results: list[dict[str, Any]], setup: dict[str, Any]) -> str:
    lines = [
        (
            f"{setup['slides']} slides ({SHAPE[1]} x {SHAPE[0]} px, {TILE}-px JPEG tiles, "
            f"{setup['mean_kb']:.0f} KB each) written in {setup['write_s']:.1f} s, uploaded to "
            f"moto's S3 server in {setup['upload_s']:.1f} s. RLIMIT_NOFILE={setup['limit']} in "
            f"every process. Machine: {os.cpu_count()} cores, load average {setup['load']}."
        ),
        "",
        (
            "| run | slides | wall (open_cohort + map_tiles) | slides/s | tiles/s (map) "
            "| written | EMFILE | max fds (client) | peak RSS MB (client) | max fds (cluster) "
            "| equal to grid.map |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [row(result, result["label"]) for result in results]
    for result in results:
        if "rss_by_progress_mb" in result:
            marks = ", ".join(f"{k}: {v:.0f}" for k, v in result["rss_by_progress_mb"].items())
            extra = (
                f"; cluster processes peak RSS {result['cluster_peak_rss_mb']:.0f} MB, "
                f"tasks per worker {result.get('tasks_per_worker')}"
                if "cluster_peak_rss_mb" in result
                else ""
            )
            lines.append(
                f"- {result['label']}: client peak RSS (MB) by slides written: {marks}{extra}"
            )
        if result.get("errors"):
            lines.append(f"- {result['label']}: errors: {result['errors']}")
    by_label = {r["label"]: r for r in results if "failed" not in r}
    one, two = by_label.get("cluster, 1 worker"), by_label.get("cluster, 2 workers")
    if one and two:
        ratio = (two["tiles"] / two["map_s"]) / (one["tiles"] / one["map_s"])
        lines.append(
            f"- tiles/s on 2 workers / 1 worker: {ratio:.2f}x (goal >= 1.8x: "
            f"{'met' if ratio >= 1.8 else 'NO'})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cohort_scale")
    parser.add_argument("--slides", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="threads of the threaded run")
    parser.add_argument("--worker-threads", type=int, default=1)
    parser.add_argument("--sample", type=int, default=20, help="slides checked against grid.map")
    parser.add_argument("--limit", type=int, default=LIMIT, help="RLIMIT_NOFILE of every process")
    parser.add_argument("--no-cluster", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(*args.child[:2], args.child[2] if len(args.child) > 2 else None)
        return

    base = Path(tempfile.mkdtemp(prefix="wsiarray-cohort-scale-"))
    s3 = remote._test_servers().start_moto_s3()
    results: list[dict[str, Any]] = []
    try:
        (base / "slides").mkdir()
        urls, write_s, upload_s = prepare(args.slides, base / "slides", s3)
        sizes = [p.stat().st_size for p in (base / "slides").iterdir()]
        setup = {
            "slides": args.slides,
            "write_s": write_s,
            "upload_s": upload_s,
            "mean_kb": statistics.mean(sizes) / 1024,
            "limit": args.limit,
        }
        print(
            f"{args.slides} slides written in {write_s:.1f} s, uploaded in {upload_s:.1f} s",
            flush=True,
        )
        config = base / "config.json"
        config.write_text(
            json.dumps(
                {
                    "urls": urls,
                    "storage_options": s3.storage_options,
                    "output": str(base / "out"),
                    "threads": args.threads,
                    "limit": args.limit,
                    "sample": args.sample,
                }
            )
        )
        result = run_child(config, "threads")
        result["label"] = f"threads ({args.threads})"
        results.append(result)
        print(json.dumps(result), flush=True)
        if not args.no_cluster:
            with CliCluster(args.limit, args.worker_threads) as cluster:
                for workers in (1, 2):
                    cluster.add_worker()
                    cluster.reset_samples()
                    result = run_child(config, "cluster", cluster.address)
                    result |= cluster.samples()
                    result["label"] = f"cluster, {workers} worker{'s' * (workers > 1)}"
                    results.append(result)
                    print(json.dumps(result), flush=True)
        setup["load"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    finally:
        s3.stop()
        shutil.rmtree(base, ignore_errors=True)
    text = report(results, setup)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cohort_scale.md").write_text(text + "\n")
    (RESULTS / "cohort_scale.json").write_text(
        json.dumps({"setup": setup, "runs": results}, indent=2) + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
