"""A real cluster started with dask's own command line, reading slides from the S3 server.

A scheduler (``dask scheduler``) and two workers (``dask worker``, each a nanny with one worker
process of one thread) run as separate processes, the workers in fresh temporary directories
where the slides' local paths do not exist. Where the system allows it (``unshare`` of a user
and mount namespace), each worker also runs with the test's temporary files and the shared test
data hidden under an empty tmpfs, so that it could not read a local copy by absolute path either:
every pixel a worker reads comes from the S3 server (moto, tests/servers.py).

Issue 13, section 2: a whole-level reduction and a tile map give the threaded results, and
killing a worker mid-job still completes with the same result.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import wsiarray as wa
from tests.conftest import TESTDATA, find_real_slide

CMU = "aperio/CMU-1-Small-Region.svs"
NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"
BUCKET = "wsiarray-cluster"
#: Where the test process keeps its copies of the slides, relative to its own directory: the
#: workers' working directories are elsewhere, so this relative path names nothing there.
LOCAL = Path("slides")

if importlib.util.find_spec("distributed") is None:
    pytest.skip(
        "CLUSTER TESTS SKIPPED: the 'distributed' package is not installed, so `dask scheduler` "
        "and `dask worker` cannot run; install the 'distributed' extra",
        allow_module_level=True,
    )

import distributed
import psutil  # a dependency of distributed


def dask_command(role: str) -> list[str]:
    """The command that starts a ``role`` ("scheduler", "worker") from this environment: the
    ``dask`` entry point next to this Python, else ``python -m distributed.cli.dask_<role>``;
    skips loudly where neither exists."""
    entry = Path(sys.executable).with_name("dask")
    if entry.is_file() and os.access(entry, os.X_OK):
        return [str(entry), role]
    if importlib.util.find_spec(f"distributed.cli.dask_{role}") is not None:
        return [sys.executable, "-m", f"distributed.cli.dask_{role}"]
    pytest.skip(
        f"CLUSTER TESTS SKIPPED: neither the `dask` command ({entry}) nor the module "
        f"distributed.cli.dask_{role} exists in {sys.executable}'s environment"
    )


def namespace_prefix(hidden: list[Path], probe: Path) -> list[str] | None:
    """A command prefix that runs a program in new user and mount namespaces where every
    directory of ``hidden`` is covered by an empty read-only tmpfs; None where the system
    refuses (no ``unshare``, unprivileged user namespaces disabled). ``probe`` (a file under
    one of them) must vanish, or the prefix is not used."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    mounts = " && ".join(
        f"mount -t tmpfs -o size=4k,mode=0555 wsiarray-hidden {shlex.quote(str(d))}" for d in hidden
    )
    prefix = [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", f'{mounts} && exec "$@"']
    try:
        check = subprocess.run(
            [*prefix, "sh", "test", "!", "-e", str(probe)],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [*prefix, "sh"] if check.returncode == 0 else None


@dataclass
class Cluster:
    """The running cluster: its client, processes, and what the workers were given."""

    client: distributed.Client
    scheduler: subprocess.Popen[bytes]
    nannies: list[subprocess.Popen[bytes]]
    worker_dirs: list[Path]
    client_dir: Path  # the test process's directory, holding ``LOCAL``
    urls: dict[str, str]  # slide name -> s3:// URL
    storage_options: dict
    hidden: list[Path] = field(default_factory=list)  # covered in the workers' namespace
    seen: set[int] = field(default_factory=set)  # every pid that belonged to the cluster

    def worker_pids(self) -> dict[str, int]:
        pids = self.client.run(os.getpid)
        self.seen.update(pids.values())
        return pids

    def open(self, name: str, **kwargs) -> wa.Slide:
        return wa.open(self.urls[name], storage_options=self.storage_options, **kwargs)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(processes: list[subprocess.Popen[bytes]], seen: set[int]) -> None:
    """Terminate the nannies (they stop their workers) and the scheduler; kill whatever is
    left after 10 s; then check that no process of the cluster survives."""
    tracked: dict[int, psutil.Process] = {}
    for pid in [*seen, *(p.pid for p in processes)]:
        try:
            process = psutil.Process(pid)
            tracked[pid] = process
            for child in process.children(recursive=True):
                tracked[child.pid] = child
        except psutil.NoSuchProcess:
            pass
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(list(tracked.values()), timeout=10)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    _, alive = psutil.wait_procs(alive, timeout=10)
    for process in processes:  # reap the Popen objects (no zombies, no ResourceWarning)
        process.wait(timeout=10)
    assert not alive, f"cluster processes still alive after SIGKILL: {alive}"


@pytest.fixture(scope="module")
def cluster(s3_server, tmp_path_factory) -> Iterator[Cluster]:
    """Two slides in the S3 server, a scheduler and two workers started with the CLI, a
    connected client; everything stopped (and checked gone) at the end of the module."""
    started = time.monotonic()
    # the test process's local copies, under a relative path of its own directory
    client_dir = tmp_path_factory.mktemp("client-side")
    (client_dir / LOCAL).mkdir()
    sources = {}
    for name in (CMU, NDPI):
        sources[name] = client_dir / LOCAL / Path(name).name
        shutil.copyfile(find_real_slide(name), sources[name])
    s3_server.create_bucket(BUCKET)
    urls = dict(zip(sources, s3_server.upload(BUCKET, list(sources.values())), strict=True))

    scheduler_command, worker_command = dask_command("scheduler"), dask_command("worker")
    base = Path(tempfile.mkdtemp(prefix="wsiarray-cluster-"))
    hidden = [tmp_path_factory.getbasetemp().resolve(), TESTDATA]
    assert not any(base.resolve().is_relative_to(h) for h in hidden), (base, hidden)
    prefix = namespace_prefix(hidden, sources[CMU].resolve())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "WSIARRAY_TEST"))}
    env["PYTHONUNBUFFERED"] = "1"

    processes: list[subprocess.Popen[bytes]] = []
    seen: set[int] = set()
    client = None
    try:
        (base / "scheduler").mkdir()
        scheduler_file = base / "scheduler" / "scheduler.json"
        with (base / "scheduler" / "log").open("wb") as log:
            scheduler = subprocess.Popen(
                [
                    *scheduler_command,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",  # the OS picks a free port; the scheduler file says which
                    "--no-dashboard",
                    "--scheduler-file",
                    str(scheduler_file),
                ],
                cwd=base / "scheduler",
                env={**env, "TMPDIR": str(base / "scheduler")},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.append(scheduler)
        deadline = time.monotonic() + 30
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            if scheduler.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"`dask scheduler` did not start (exit {scheduler.poll()}):\n"
                    + _log_tail(base / "scheduler" / "log")
                )
            time.sleep(0.05)
        address = json.loads(scheduler_file.read_text())["address"]

        worker_dirs = []
        for index in range(2):
            directory = base / f"worker-{index}"
            directory.mkdir()
            worker_dirs.append(directory)
            with (directory / "log").open("wb") as log:
                nanny = subprocess.Popen(
                    [
                        *(prefix or []),
                        *worker_command,
                        address,
                        "--nworkers",
                        "1",
                        "--nthreads",
                        "1",
                        "--nanny",  # restarts a killed worker process
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                        "--name",
                        f"worker-{index}",
                        "--local-directory",
                        str(directory),
                        "--death-timeout",
                        "30",  # no orphan outlives a dead scheduler for long
                    ],
                    cwd=directory,
                    env={**env, "TMPDIR": str(directory), "HOME": str(directory)},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            processes.append(nanny)

        client = distributed.Client(address, set_as_default=False, timeout=30)
        try:
            client.wait_for_workers(2, timeout=30)
        except TimeoutError:
            logs = "\n".join(_log_tail(d / "log") for d in worker_dirs)
            pytest.fail(f"two `dask worker`s did not connect in 30 s:\n{logs}")
        running = Cluster(
            client=client,
            scheduler=scheduler,
            nannies=processes[1:],
            worker_dirs=worker_dirs,
            client_dir=client_dir,
            urls=urls,
            storage_options=s3_server.storage_options,
            hidden=hidden if prefix else [],
            seen=seen,
        )
        running.worker_pids()
        print(f"cluster up in {time.monotonic() - started:.1f} s at {address}")
        yield running
    finally:
        stopping = time.monotonic()
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()  # the scheduler closes the workers, their nannies and itself
            client.close(timeout=10)
        print(f"client shut down in {time.monotonic() - stopping:.1f} s")
        _stop(processes, seen)
        print(f"cluster stopped in {time.monotonic() - stopping:.1f} s")
        shutil.rmtree(base, ignore_errors=True)


def test_workers_run_where_the_local_path_does_not_exist(cluster, monkeypatch) -> None:
    monkeypatch.chdir(cluster.client_dir)
    local = LOCAL / Path(CMU).name
    assert local.is_file()  # here, in the test process
    cwds = cluster.client.run(os.getcwd)
    assert sorted(cwds.values()) == sorted(str(d) for d in cluster.worker_dirs)
    assert set(cluster.client.run(os.path.exists, str(local)).values()) == {False}
    # the slide the tests open is the S3 object: its graph names the URL, not a local file
    slide = cluster.open(CMU)
    assert slide.path == cluster.urls[CMU]
    assert slide.image(0).mean(("y", "x")).compute(scheduler="threads").shape == (3,)


def test_workers_cannot_see_the_local_files_at_all(cluster) -> None:
    if not cluster.hidden:
        pytest.skip(
            "WORKERS NOT ISOLATED: `unshare --user --map-root-user --mount` is unavailable here "
            "(no unshare, or unprivileged user namespaces disabled), so the workers could read "
            "the slides' absolute local paths; only their relative path is out of their reach"
        )
    copy = (cluster.client_dir / LOCAL / Path(CMU).name).resolve()
    original = find_real_slide(CMU)
    assert copy.is_file()
    assert original.is_file()
    for path in (copy, original, cluster.client_dir, TESTDATA / "aperio"):
        assert set(cluster.client.run(os.path.exists, str(path)).values()) == {False}, path


def test_whole_level_mean_on_the_cluster_equals_threaded(cluster) -> None:
    slide = cluster.open(CMU, chunks=512)  # 6 x 5 chunks: enough tasks for both workers
    mean = slide.image(0).mean(("y", "x"))
    threaded = mean.compute(scheduler="threads")
    with distributed.get_task_stream(client=cluster.client) as stream:
        on_cluster = cluster.client.compute(mean).result(timeout=60)
    assert on_cluster.dtype == threaded.dtype == np.float64
    np.testing.assert_array_equal(on_cluster.values, threaded.values)
    assert on_cluster.dims == ("c",)
    workers = {task["worker"] for task in stream.data}
    assert workers == set(cluster.worker_pids()), workers


def test_tile_map_on_the_cluster_equals_threaded(cluster) -> None:
    slide = cluster.open(CMU)
    grid = wa.TileGrid(slide, 256, level=0)

    # a user's feature function. Nested, so dask pickles it by value: the workers could not
    # import this test module
    def features(tile: np.ndarray, bins: int) -> np.ndarray:
        pixels = tile.reshape(-1, tile.shape[-1]).astype(np.float64)
        dark = np.count_nonzero(pixels.mean(axis=1) < 256 / bins) / len(pixels)
        return np.concatenate([pixels.mean(axis=0), pixels.std(axis=0), [dark]])

    mapped = grid.map(features, bins=4)
    threaded = mapped.compute(scheduler="threads")
    on_cluster = cluster.client.compute(mapped).result(timeout=60)
    assert on_cluster.shape == threaded.shape == (*grid.shape, 7)
    np.testing.assert_array_equal(on_cluster.values, threaded.values)
    np.testing.assert_array_equal(on_cluster.tile_x.values, threaded.tile_x.values)
    # and the S3 object's tiles are the local file's
    local = wa.TileGrid(wa.open(find_real_slide(CMU)), 256, level=0)
    np.testing.assert_array_equal(
        on_cluster.values, local.map(features, bins=4).compute(scheduler="threads").values
    )


def test_a_worker_killed_mid_job_does_not_change_the_result(cluster) -> None:
    client = cluster.client
    slide = cluster.open(NDPI, chunks=256)  # 19 x 16 chunks of level 0 (4864 x 3968)
    mean = slide.image(0).mean(("y", "x"))
    threaded = mean.compute(scheduler="threads")
    pids = cluster.worker_pids()

    def finished_tasks(dask_scheduler) -> int:  # runs in the scheduler process
        return sum(task.state == "memory" for task in dask_scheduler.tasks.values())

    def known_tasks(dask_scheduler) -> int:
        return len(dask_scheduler.tasks)

    # the earlier tests' results are released: every task in memory from now on is this job's
    deadline = time.monotonic() + 10
    while client.run_on_scheduler(known_tasks):
        assert time.monotonic() < deadline, "the scheduler still holds earlier tasks"
        time.sleep(0.01)
    future = client.compute(mean)
    deadline = time.monotonic() + 30
    while client.run_on_scheduler(finished_tasks) < 4 and not future.done():
        assert time.monotonic() < deadline, "no task finished in 30 s"
        time.sleep(0.01)
    assert not future.done(), "the job finished before a worker could be killed: make it longer"
    victim_address, victim = min(pids.items())
    assert client.processing()[victim_address], "the worker to kill has no task"
    os.kill(victim, signal.SIGKILL)  # the worker process, not its nanny
    result = future.result(timeout=60)
    np.testing.assert_array_equal(result.values, threaded.values)
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == "zombie"
    # the nanny starts a new worker process in its place
    client.wait_for_workers(2, timeout=30)
    assert victim not in cluster.worker_pids().values()
