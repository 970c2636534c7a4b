"""Graphs carry paths, so the same computation runs on a distributed cluster of processes."""

from __future__ import annotations

import numpy as np
import pytest

import wsiarray as wa

distributed = pytest.importorskip("distributed", reason="the 'distributed' extra is not installed")

# a LocalCluster's scheduler serves HTTP on 8787 even without a dashboard, and says so when
# another process (a concurrent test run) holds that port
pytestmark = pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as client:
        yield client


def test_whole_level_mean_on_a_cluster_equals_threaded(client, real_slide) -> None:
    slide = wa.open(real_slide("hamamatsu/test3-DAPI-2-(387).ndpi"), chunks=1024)
    image = slide.image(0)
    on_cluster = image.sum(("y", "x")).compute().values  # the client is the default scheduler here
    threaded = image.sum(("y", "x")).compute(scheduler="threads").values
    np.testing.assert_array_equal(on_cluster, threaded)
    assert len(client.scheduler_info()["workers"]) == 2


def test_resampled_level_on_a_cluster_equals_threaded(client, real_slide) -> None:
    image = wa.open(real_slide("aperio/CMU-1-Small-Region.svs"), chunks=512).image(magnification=7)
    np.testing.assert_array_equal(image.compute().values, image.compute(scheduler="threads").values)


def test_result_survives_a_worker_restart(client, real_slide) -> None:
    slide = wa.open(real_slide("aperio/CMU-1-Small-Region.svs"), chunks=480)
    expected = slide.image(0).sum(("y", "x")).compute(scheduler="threads").values
    client.restart()  # kills and restarts both worker processes: their open-slide caches are gone
    np.testing.assert_array_equal(slide.image(0).sum(("y", "x")).compute().values, expected)


def test_a_worker_killed_mid_computation_does_not_change_the_result(client, real_slide) -> None:
    import os
    import signal
    import time

    slide = wa.open(real_slide("hamamatsu/test3-DAPI-2-(387).ndpi"), chunks=256)
    reduction = slide.image(0).sum(("y", "x"))
    expected = reduction.compute(scheduler="threads").values
    future = client.compute(reduction)
    time.sleep(0.3)  # tasks are running
    pids = client.run(os.getpid)  # {worker address: process id}
    os.kill(next(iter(pids.values())), signal.SIGKILL)  # one worker process dies mid-way
    np.testing.assert_array_equal(future.result(timeout=120).values, expected)


def test_default_chunks_on_a_cluster_are_larger_and_equal_threaded(client, real_slide) -> None:
    from wsiarray.chunks import DISTRIBUTED_CHUNK, dask_chunks

    slide = wa.open(real_slide("aperio/CMU-1-Small-Region.svs"))  # 2967 x 2220, 240-px tiles
    on_cluster = slide.image(0)  # built while the client is dask's default scheduler
    info = slide.metadata.levels[0]
    assert on_cluster.data.chunksize[:2] == dask_chunks(info.tile, info.shape, DISTRIBUTED_CHUNK)
    assert len(slide.image(0, chunks=2880).data.chunks[0]) == 2  # the threaded policy's
    mean = on_cluster.mean(("y", "x")).compute().values
    threaded = wa.open(real_slide("aperio/CMU-1-Small-Region.svs"), chunks=2880).image(0)
    np.testing.assert_array_equal(mean, threaded.mean(("y", "x")).compute(scheduler="threads"))
