"""Slides in object storage: TIFF slides read by byte range from real S3 and HTTP servers.

The servers are started by the tests (``tests/servers.py``): moto's S3 server in its own
process, and an HTTP server that honours Range with injectable latency, 503s and dropped
connections. Pixels must equal the local file's, every time.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import wsiarray as wa
from wsiarray.sources import StorageOptions, redact, source_cache
from wsiarray.sources._store import MERGE_GAP, _merge, obstore_s3_config, remote_store

CMU = "aperio/CMU-1-Small-Region.svs"
NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"


def test_neighbouring_ranges_merge_into_one_request() -> None:
    assert _merge([(100, 10), (0, 50), (60, 10)]) == [(0, 110)]
    far = 200 + MERGE_GAP + 1
    assert _merge([(0, 200), (far, 5)]) == [(0, 200), (far, far + 5)]


def test_secrets_are_redacted() -> None:
    assert redact("https://alice:s3cret@host/x.svs") == "https://***@host/x.svs"
    signed = "https://b.s3.amazonaws.com/x.svs?X-Amz-Signature=abc&X-Amz-Credential=k&v=1"
    assert "abc" not in redact(signed)
    assert "X-Amz-Credential=k" not in redact(signed)
    assert redact(signed).endswith("&v=1")
    assert redact("/data/slides/x.svs") == "/data/slides/x.svs"
    options = StorageOptions({"key": "AKIA", "secret": "s3cret"})
    assert "s3cret" not in repr(options)
    assert "AKIA" not in repr(options)
    assert pickle.loads(pickle.dumps(options)) == options
    assert hash(options) == hash(StorageOptions({"secret": "s3cret", "key": "AKIA"}))


@pytest.fixture
def served(http_server, real_slide, tmp_path: Path):
    """The HTTP server with CMU-1-Small-Region and the NDPI in its folder."""
    for name in (CMU, NDPI):
        shutil.copy(real_slide(name), Path(http_server.directory) / Path(name).name)
    source_cache.clear()
    return http_server


@pytest.mark.parametrize("name", [CMU, NDPI])
def test_http_slide_equals_the_local_file(served, real_slide, name: str) -> None:
    local = wa.open(real_slide(name))
    url = f"{served.url}/{Path(name).name}"
    served.reset_counters()
    remote = wa.open(url)
    opened = served.request_count
    assert remote.level_shapes == local.level_shapes
    assert remote.metadata.reader == "tifffile"
    assert (remote.mm_x, remote.magnification) == (local.mm_x, local.magnification)
    served.reset_counters()
    for level in range(remote.level_count):
        np.testing.assert_array_equal(remote.image(level).values, local.image(level).values)
    # the tiles of a chunk come in a few merged requests, not one per tile
    tiles = sum(
        -(-h // info.tile[0]) * -(-w // info.tile[1])
        for (h, w), info in zip(local.level_shapes, local.metadata.levels, strict=True)
    )
    assert served.request_count < tiles / 4, (served.request_count, tiles)
    # a HEAD, the first 512 bytes (which reader?), one 4 MB block of directories
    assert opened <= 3, served.requests


def test_transient_failures_are_retried(served, real_slide) -> None:
    local = wa.open(real_slide(CMU)).image(0).values
    served.latency = 0.02
    served.fail_rate = 0.3
    served.drop_rate = 0.1
    for _ in range(3):  # identical pixels, every time
        source_cache.clear()
        np.testing.assert_array_equal(
            wa.open(f"{served.url}/CMU-1-Small-Region.svs").image(0).values, local
        )
    assert served.count(outcome="failed") + served.count(outcome="dropped") > 0


def test_a_server_that_keeps_failing_is_a_clear_error(served) -> None:
    served.fail_rate = 1.0
    url = f"{served.url.replace('http://', 'http://bob:hunter2@')}/CMU-1-Small-Region.svs"
    with pytest.raises(wa.WsiArrayError) as error:
        wa.open(url)
    text = str(error.value)
    assert "hunter2" not in text
    assert "CMU-1-Small-Region.svs" in text
    assert "attempt" in text


def test_a_missing_object_is_slide_not_found(served) -> None:
    with pytest.raises(wa.SlideNotFoundError, match=r"no-such\.svs"):
        wa.open(f"{served.url}/no-such.svs")


def test_s3_slide_equals_the_local_file(s3_server, real_slide) -> None:
    s3_server.create_bucket("slides-equal")
    [url] = s3_server.upload("slides-equal", [real_slide(CMU)])
    options = s3_server.storage_options
    remote = wa.open(url, storage_options=options)
    local = wa.open(real_slide(CMU))
    np.testing.assert_array_equal(remote.image(0).values, local.image(0).values)
    np.testing.assert_array_equal(remote.read(1000, 700, 300, 200), local.read(1000, 700, 300, 200))
    # the graph carries the URL and the options, never a handle or a client
    graph = pickle.dumps(remote.image(0).data)
    assert len(graph) < 20_000
    secret = options["secret"]
    for shown in (repr(remote), repr(remote._spec), str(remote.tree.attrs)):
        assert secret not in shown
    source_cache.clear()  # a worker reopens from the spec
    np.testing.assert_array_equal(pickle.loads(graph).compute(), local.image(0).values)


def test_s3_without_credentials_is_a_clear_error(s3_server, real_slide) -> None:
    s3_server.create_bucket("slides-private")
    [url] = s3_server.upload("slides-private", [real_slide(CMU)])
    endpoint = s3_server.storage_options["client_kwargs"]
    with pytest.raises(wa.WsiArrayError, match="slides-private"):
        wa.open(url, storage_options={"anon": True, "client_kwargs": endpoint})


def test_a_replaced_object_is_noticed_when_reopened(served, real_slide) -> None:
    url = f"{served.url}/CMU-1-Small-Region.svs"
    slide = wa.open(url)
    slide.read(0, 0, 64, 64)
    assert slide._spec.stamp != (0, 0)  # the object's size and ETag
    target = Path(served.directory) / "CMU-1-Small-Region.svs"
    target.write_bytes(real_slide(NDPI).read_bytes())  # replaced on the server
    source_cache.clear()  # a worker, or a process that evicted it, opens it again
    with pytest.raises(wa.SlideChangedError, match="ETag"):
        slide.read(0, 0, 64, 64)


def test_an_ome_zarr_store_in_s3_equals_the_local_one(s3_server, sample_svs, tmp_path) -> None:
    local = wa.write_ome_zarr(wa.open(sample_svs), tmp_path / "sample.zarr")
    s3_server.create_bucket("zarr-stores")
    files = {
        f"sample.zarr/{file.relative_to(local).as_posix()}": file
        for file in local.rglob("*")
        if file.is_file()
    }
    s3_server.upload("zarr-stores", files)
    url = "s3://zarr-stores/sample.zarr"
    remote = wa.open(url, storage_options=s3_server.storage_options)
    here = wa.open(local)
    assert remote.metadata.reader == "zarr"
    assert remote.level_shapes == here.level_shapes
    assert (remote.mm_x, remote.magnification) == (here.mm_x, here.magnification)
    for level in range(remote.level_count):
        np.testing.assert_array_equal(remote.image(level).values, here.image(level).values)
    assert s3_server.storage_options["secret"] not in repr(remote._spec)


# -- S3 through obstore, or through s3fs where obstore cannot take the options ---------------


def test_s3_through_obstore_and_through_s3fs_read_the_same_bytes(s3_server, real_slide) -> None:
    pytest.importorskip("obstore")
    [url] = s3_server.upload("slides-transports", [real_slide(NDPI)])
    options = s3_server.storage_options
    # an s3fs option obstore has no translation for sends the URL to s3fs
    s3fs_only = {**options, "use_listings_cache": False}
    local = real_slide(NDPI).read_bytes()
    ranges = [(0, 100), (5000, 70_000), (len(local) - 10, 10), (2_000_000, 1)]
    with remote_store(url, options) as fast, remote_store(url, s3fs_only) as slow:
        assert (type(fast).__name__, type(slow).__name__) == ("ObstoreStore", "FsspecStore")
        assert fast.stamp() == slow.stamp()  # size and ETag alike
        expected = [local[offset : offset + count] for offset, count in ranges]
        assert fast.read_ranges(ranges) == slow.read_ranges(ranges) == expected
    one, other = wa.open(url, storage_options=options), wa.open(url, storage_options=s3fs_only)
    np.testing.assert_array_equal(one.image(1).values, other.image(1).values)


def test_obstore_takes_only_options_it_reads_as_s3fs_would() -> None:
    pytest.importorskip("obstore")
    endpoint = {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"}}
    keys = {"key": "AKIA", "secret": "s3cret"}
    config = obstore_s3_config("s3://bucket/slide.svs", {**keys, **endpoint})
    assert config is not None
    assert (config["access_key_id"], config["endpoint"], config["region"]) == (
        "AKIA",
        "http://127.0.0.1:9",
        "eu-west-1",
    )
    assert obstore_s3_config("s3://b/k", {"anon": True, **endpoint})["skip_signature"] is True
    # s3fs's: credentials from botocore's chain, a region found by asking, an option unknown
    # here, another protocol
    assert obstore_s3_config("s3://b/k", endpoint) is None
    assert obstore_s3_config("s3://b/k", keys) is None
    assert obstore_s3_config("s3://b/k", {**keys, **endpoint, "requester_pays": True}) is None
    assert obstore_s3_config("gs://b/k", {**keys, **endpoint}) is None


def test_an_s3_endpoint_that_does_not_answer_is_a_clear_error_that_hides_the_secret() -> None:
    pytest.importorskip("obstore")
    options = {
        "key": "AKIA",
        "secret": "s3cret-value",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"},
    }
    assert obstore_s3_config("s3://nobody-home/slide.svs", options) is not None
    with pytest.raises(wa.WsiArrayError, match=r"s3://nobody-home/slide\.svs") as error:
        wa.open("s3://nobody-home/slide.svs", storage_options=options)
    assert "s3cret-value" not in str(error.value)
