"""Concurrency stress (issue 15, deliverable 3), shortened for the suite: 8 threads on one
shared Slide of each of three real slides, and two processes reading one file at once; every
result equals the same window read single-threaded in one process. ``make fuzz`` runs the long
version (``python -m fuzz.stress --seconds 30``). A worker killed mid-job is tested in
tests/test_cluster.py and tests/test_distributed.py.
"""

from __future__ import annotations

import pytest

from fuzz import corpus, stress

SEED = 15


def _slide(relative: str):
    path = corpus.TESTDATA / relative
    if not path.exists():
        pytest.skip(f"test slide {relative} is not in {corpus.TESTDATA}")
    return path


@pytest.mark.parametrize("relative", stress.SLIDES)
def test_eight_threads_on_one_slide_read_what_one_thread_reads(relative: str) -> None:
    """~1.5 s of random windows, five ways of reading each, from 8 threads at once."""
    got = stress.threads(_slide(relative), seconds=1.5, seed=SEED, count=8)
    assert got["hung_threads"] == 0
    assert got["errors"] == 0, got["examples"]
    assert got["mismatches"] == 0, got["examples"]
    assert got["after_mismatches"] == 0, "the single-threaded reads changed after the threads ran"
    assert all(n > 0 for n in got["per_op"].values()), got["per_op"]


def test_two_processes_on_one_file_read_what_one_process_reads() -> None:
    """Two spawned processes read the NDPI's windows from a barrier, for ~1.5 s each."""
    got = stress.processes(
        _slide("hamamatsu/test3-DAPI-2-(387).ndpi"), seconds=1.5, seed=SEED, count=2
    )
    assert got["exit_codes"] == [0, 0]
    assert got["start_spread_s"] < 1.0, "the processes did not read at the same time"
    assert all(n >= stress.POOL for n in got["reads"]), got["reads"]
    assert got["errors"] == 0, got["examples"]
    assert got["mismatches"] == 0, got["examples"]
