"""The test DICOMweb server (tests/servers.py, the ``orthanc`` fixture) serves real WSI series.

Two real series from ../shared/testdata are uploaded to a private Orthanc with its DICOMweb
plugin and opened with wsidicom's own DICOMweb client; levels, tiles off the origin on every
level, and the encoded frames equal wsidicom's reading of the same files on disk. This checks
the fixture that the DICOMweb tests of the DICOM reader use, and records which wsidicom call
works against Orthanc (1.10 with DICOMweb plugin 1.7 on Debian 12):

* ``WsiDicom.open_web(WsiDicomWebClient.create_client(orthanc.url), study, series)`` works for
  JPEG baseline series: wsidicom asks for JPEG baseline first and Orthanc returns the stored
  frames untouched.
* Orthanc's QIDO ignores ``includefield=AvailableTransferSyntaxUID``, so wsidicom probes each
  instance with frame 1 in its order of preference. Orthanc transcodes what it can (JPEG-LS,
  lossless JPEG, uncompressed: decoded, so not the stored bytes) and answers 500, not 406, to
  what it cannot (JPEG 2000, RLE), which wsidicom does not take as "not supported". So a JPEG
  2000 series opens only with ``requested_transfer_syntax`` set to its stored syntax; the
  stored syntax is the one Orthanc names for ``Accept: ...; transfer-syntax=*``
  (:func:`stored_transfer_syntax`).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TESTDATA

wsidicom = pytest.importorskip("wsidicom", reason="wsidicom (the DICOM reader's extra) is missing")

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"

pytestmark = [
    # Orthanc's DICOMweb gives every OB/OW value (ICC profiles, palette LUTs) as a BulkDataURI,
    # which wsidicom's client does not fetch: pydicom warns once per element and leaves it empty
    pytest.mark.filterwarnings("ignore:No bulk data URI handler provided:UserWarning"),
    # the CAMELYON file's own UIDs are 66 characters long (DICOM allows 64); pydicom warns
    pytest.mark.filterwarnings("ignore:The value length .* allowed for VR UI:UserWarning"),
]

SERIES = {
    # name: (local folder or file opened with WsiDicom.open, the files to upload)
    "BPAEC": "dicom/BPAEC",  # 3DHISTECH fluorescence, 8 levels, 3 optical paths, a label
    "camelyon": "dicom/multiframe_camelyon_challenge_image.dcm",  # Google's converter, RGB
}


def dicom_files(relative: str) -> list[Path]:
    """The DICOM files of a series in the shared test data (a folder's readme left out)."""
    path = TESTDATA / relative
    if not path.exists():
        pytest.skip(f"real test slide {relative} not found under {TESTDATA}")
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and p.name != "readme.txt")


@pytest.fixture(scope="module")
def uploaded(orthanc) -> dict[str, tuple[str, str]]:
    """Each test series stored in the session's Orthanc: name -> (study UID, series UID)."""
    series = {}
    for name, relative in SERIES.items():
        [series[name]] = orthanc.upload(dicom_files(relative))  # one series each
    return series


def get_json(url: str) -> list[dict]:
    """A DICOMweb JSON answer (QIDO)."""
    request = urllib.request.Request(url, headers={"Accept": "application/dicom+json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def stored_transfer_syntax(url: str, study: str, series: str) -> str:
    """The transfer syntax a series' first instance is stored in, as Orthanc names it when asked
    for frame 1 in any syntax (``transfer-syntax=*``, "as stored", in DICOM PS3.18)."""
    instance = get_json(f"{url}/studies/{study}/series/{series}/instances")[0]
    instance_uid = instance["00080018"]["Value"][0]
    request = urllib.request.Request(
        f"{url}/studies/{study}/series/{series}/instances/{instance_uid}/frames/1",
        headers={"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        content_type = response.headers["Content-Type"]
    return content_type.split("transfer-syntax=")[1].split(";")[0].strip('"')


def test_orthanc_answers_qido_for_the_uploaded_series(orthanc, uploaded) -> None:
    studies = {s["0020000D"]["Value"][0] for s in get_json(f"{orthanc.url}/studies")}
    assert {study for study, _ in uploaded.values()} <= studies
    for study, series in uploaded.values():
        found = get_json(f"{orthanc.url}/studies/{study}/series")
        assert series in {s["0020000E"]["Value"][0] for s in found}


@pytest.mark.parametrize("name", list(SERIES))
def test_frames_are_served_in_the_stored_transfer_syntax(orthanc, uploaded, name) -> None:
    assert stored_transfer_syntax(orthanc.url, *uploaded[name]) == JPEG_BASELINE


def test_bulk_data_uris_point_at_the_server_and_serve_the_stored_bytes(orthanc, uploaded) -> None:
    """Orthanc gives binary values (here the ICC profile) as BulkDataURIs; with the fixture's
    ``DicomWeb.Host`` they point at this server's port and return the file's bytes (wsidicom's
    client does not fetch them itself)."""
    import pydicom

    study, series = uploaded["BPAEC"]
    local = pydicom.dcmread(TESTDATA / "dicom/BPAEC/5_0", stop_before_pixels=True)
    [metadata] = get_json(
        f"{orthanc.url}/studies/{study}/series/{series}/instances/{local.SOPInstanceUID}/metadata"
    )
    icc = metadata["00480105"]["Value"][0]["00282000"]  # OpticalPathSequence[0].ICCProfile
    assert icc["BulkDataURI"].startswith(f"{orthanc.url}/studies/{study}/")
    request = urllib.request.Request(
        icc["BulkDataURI"], headers={"Accept": 'multipart/related; type="application/octet-stream"'}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    profile = local.OpticalPathSequence[0].ICCProfile
    assert len(profile) > 1000
    assert profile in body  # the one part of the multipart answer


def region_off_origin(width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """A region that starts a third of the way into a level and stays inside it."""
    x, y = width // 3, height // 3
    return (x, y), (min(300, width - x), min(200, height - y))


@pytest.mark.parametrize("requested", [None, "stored"], ids=["wsidicom-default", "stored"])
@pytest.mark.parametrize("name", list(SERIES))
def test_web_series_equals_the_local_files(orthanc, uploaded, name, requested) -> None:
    """Levels, tiles, regions off the origin and encoded frames, on every level and optical
    path, through DICOMweb equal wsidicom's reading of the files."""
    from wsidicom import WsiDicom, WsiDicomWebClient

    study, series = uploaded[name]
    syntax = stored_transfer_syntax(orthanc.url, study, series) if requested else None
    client = WsiDicomWebClient.create_client(orthanc.url)
    with (
        WsiDicom.open_web(client, study, series, requested_transfer_syntax=syntax) as web,
        WsiDicom.open(TESTDATA / SERIES[name]) as local,
    ):
        assert [level.size for level in web.levels] == [level.size for level in local.levels]
        assert web.levels[0].optical_paths == local.levels[0].optical_paths
        assert [label.size for label in web.labels or []] == [
            label.size for label in local.labels or []
        ]
        for index, level in enumerate(local.levels):
            columns, rows = level.tiled_size.width, level.tiled_size.height
            tile = (columns - 1, rows - 1)  # off the origin wherever the level has 2+ tiles
            location, size = region_off_origin(level.size.width, level.size.height)
            for path in level.optical_paths:
                np.testing.assert_array_equal(
                    np.asarray(web.read_tile(index, tile, path=path)),
                    np.asarray(local.read_tile(index, tile, path=path)),
                    err_msg=f"{name} level {index} tile {tile} path {path}",
                )
                np.testing.assert_array_equal(
                    np.asarray(web.read_region(location, index, size, path=path)),
                    np.asarray(local.read_region(location, index, size, path=path)),
                    err_msg=f"{name} level {index} region {location} {size} path {path}",
                )
                assert web.read_encoded_tile(index, tile, path=path) == (
                    local.read_encoded_tile(index, tile, path=path)
                ), f"{name} level {index}: Orthanc did not return the stored frame"


# --------------------------------------------------------------------------------------------
# The servers of remote slides (issue 13): moto's S3 server (the ``s3_server`` fixture) and the
# HTTP server with Range and injected faults (``http_server``), checked with independent
# clients (boto3/s3fs, requests, http.client, fsspec + tifffile) against the local bytes.
# --------------------------------------------------------------------------------------------

import email
import http.client
import os
import time
import urllib.error
from typing import Any

SMALL_SVS = "aperio/CMU-1-Small-Region.svs"  # 1.9 MB, 4 pages (JPEG tiles, LZW thumbnail)
S3_BUCKET = "wsiarray-test-servers"  # the session's S3 server is shared: a bucket of our own

# (Range header, status, the expected body as a slice of the file given its size). Sizes and
# offsets cross the JPEG tile data of page 0.
RANGE_CASES = {
    "first bytes": ("bytes=0-15", 206, lambda n: slice(0, 16)),
    "middle": ("bytes=1000-70999", 206, lambda n: slice(1000, 71000)),
    "open-ended": ("bytes=1900000-", 206, lambda n: slice(1900000, n)),
    "suffix": ("bytes=-5000", 206, lambda n: slice(n - 5000, n)),
    "past the end, clipped": ("bytes=1938900-1999999", 206, lambda n: slice(1938900, n)),
    "suffix longer than the file": ("bytes=-9999999", 206, lambda n: slice(0, n)),
    "no range": (None, 200, lambda n: slice(0, n)),
    "invalid, ignored": ("bytes=20-10", 200, lambda n: slice(0, n)),
    "not bytes, ignored": ("items=0-1", 200, lambda n: slice(0, n)),
}


@pytest.fixture
def served_slide(http_server, real_slide) -> tuple[str, bytes]:
    """The small Aperio slide linked into the HTTP server's folder: (URL, its bytes)."""
    local = real_slide(SMALL_SVS)
    (http_server.directory / "slides").mkdir()
    (http_server.directory / "slides" / "small.svs").symlink_to(local)
    return f"{http_server.url}/slides/small.svs", local.read_bytes()


@pytest.fixture(scope="module")
def s3_slide(s3_server, real_slide) -> tuple[str, bytes]:
    """The small Aperio slide uploaded to the S3 server over its S3 API: (s3 URL, bytes)."""
    local = real_slide(SMALL_SVS)
    [url] = s3_server.upload(S3_BUCKET, {"aperio/small.svs": local})
    return url, local.read_bytes()


def first_page(source: Any) -> np.ndarray:
    """Page 0 of a TIFF (a path or an open binary file), decoded by tifffile."""
    import tifffile

    with tifffile.TiffFile(source) as tif:
        return tif.pages[0].asarray()


# S3 ----------------------------------------------------------------------------------------


def test_s3_server_is_a_separate_process_speaking_http(s3_server, s3_slide) -> None:
    """The endpoint is moto's own process on 127.0.0.1 (not an in-process mock): a plain
    urllib GET of a presigned URL with a Range header gets 206; unsigned, 403 (the object is
    private)."""
    _, data = s3_slide
    assert s3_server.process is not None
    assert s3_server.process.poll() is None
    assert s3_server.process.pid != os.getpid()
    key = {"Bucket": S3_BUCKET, "Key": "aperio/small.svs"}
    unsigned = f"{s3_server.endpoint_url}/{S3_BUCKET}/aperio/small.svs"
    with pytest.raises(urllib.error.HTTPError, match="403"):
        urllib.request.urlopen(unsigned, timeout=30)
    presigned = s3_server.client.generate_presigned_url("get_object", Params=key, ExpiresIn=600)
    assert presigned.startswith(unsigned + "?")
    request = urllib.request.Request(presigned, headers={"Range": "bytes=8-99"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 8-99/{len(data)}"
        assert response.read() == data[8:100]


def test_s3fs_byte_ranges_of_an_uploaded_slide_equal_the_local_bytes(s3_server, s3_slide) -> None:
    import fsspec

    url, data = s3_slide
    fs = fsspec.filesystem("s3", **s3_server.storage_options)
    path = url.removeprefix("s3://")
    assert fs.size(path) == len(data)
    assert fs.ls(f"{S3_BUCKET}/aperio", detail=False) == [path]
    for start, stop in [(0, 16), (1000, 71000), (len(data) - 5000, len(data)), (77, 78)]:
        assert fs.cat_file(path, start=start, end=stop) == data[start:stop], (start, stop)
    with fs.open(path, "rb", block_size=2**16) as file:  # random access through s3fs' cache
        file.seek(123456)
        assert file.read(4321) == data[123456 : 123456 + 4321]
    assert fs.cat_file(path) == data


def test_boto3_reads_what_was_put(s3_server) -> None:
    """put (one request) and upload (boto3's transfer manager) store the bytes given; an
    object is listed with its size and ETag."""
    payload = bytes(range(256)) * 1000
    assert s3_server.put(S3_BUCKET, "put/blob.bin", payload) == f"s3://{S3_BUCKET}/put/blob.bin"
    answer = s3_server.client.get_object(Bucket=S3_BUCKET, Key="put/blob.bin", Range="bytes=-10")
    assert answer["ContentRange"] == f"bytes {len(payload) - 10}-{len(payload) - 1}/{len(payload)}"
    assert answer["Body"].read() == payload[-10:]
    head = s3_server.client.head_object(Bucket=S3_BUCKET, Key="put/blob.bin")
    assert head["ContentLength"] == len(payload)
    assert head["ETag"].strip('"')


def test_tifffile_reads_the_first_page_over_s3(s3_server, s3_slide, real_slide) -> None:
    import fsspec

    url, _ = s3_slide
    with fsspec.open(url, "rb", **s3_server.storage_options) as file:
        np.testing.assert_array_equal(first_page(file), first_page(real_slide(SMALL_SVS)))


def test_s3_server_is_skipped_loudly_where_moto_is_missing(monkeypatch) -> None:
    import importlib.util

    from tests.servers import find_moto_server

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "moto" else find_spec(name)
    )
    with pytest.raises(pytest.skip.Exception, match=r"S3 server missing: .*moto is not installed"):
        find_moto_server()


# HTTP --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(RANGE_CASES))
def test_http_range_reads_equal_the_local_bytes(served_slide, case) -> None:
    import requests

    url, data = served_slide
    header, status, expected = RANGE_CASES[case]
    response = requests.get(url, headers={"Range": header} if header else {}, timeout=30)
    part = expected(len(data))
    assert response.status_code == status
    assert response.content == data[part]
    assert int(response.headers["Content-Length"]) == part.stop - part.start
    assert response.headers["Accept-Ranges"] == "bytes"
    if status == 206:
        assert response.headers["Content-Range"] == (
            f"bytes {part.start}-{part.stop - 1}/{len(data)}"
        )
    else:
        assert "Content-Range" not in response.headers


@pytest.mark.parametrize("header", ["bytes=1938955-", "bytes=5000000-5000010", "bytes=-0"])
def test_http_range_past_the_end_is_416(served_slide, header) -> None:
    import requests

    url, data = served_slide
    response = requests.get(url, headers={"Range": header}, timeout=30)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"


def test_http_several_ranges_are_a_multipart_answer(served_slide) -> None:
    import requests

    url, data = served_slide
    response = requests.get(url, headers={"Range": "bytes=0-9, 5000-5099, -7"}, timeout=30)
    assert response.status_code == 206
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + response.content
    )
    parts = [(p["Content-Range"], p.get_payload(decode=True)) for p in message.get_payload()]
    n = len(data)
    assert parts == [
        (f"bytes 0-9/{n}", data[:10]),
        (f"bytes 5000-5099/{n}", data[5000:5100]),
        (f"bytes {n - 7}-{n - 1}/{n}", data[-7:]),
    ]


def test_http_head_validators_and_conditional_requests(http_server, served_slide) -> None:
    import requests

    url, data = served_slide
    head = requests.head(url, timeout=30)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["Content-Length"]) == len(data)
    etag, last_modified = head.headers["ETag"], head.headers["Last-Modified"]
    assert etag.startswith('"')
    assert last_modified.endswith(" GMT")
    assert requests.get(url, headers={"If-None-Match": etag}, timeout=30).status_code == 304
    same = requests.get(url, headers={"Range": "bytes=0-3", "If-Range": etag}, timeout=30)
    assert (same.status_code, same.content) == (206, data[:4])
    # a changed file (here its size) has a new ETag; a range asked If-Range the old one gets the whole new file
    changed = http_server.directory / "changed.bin"
    changed.write_bytes(b"one")
    old = requests.head(f"{http_server.url}/changed.bin", timeout=30).headers["ETag"]
    changed.write_bytes(b"three")
    answer = requests.get(
        f"{http_server.url}/changed.bin",
        headers={"Range": "bytes=0-0", "If-Range": old},
        timeout=30,
    )
    assert answer.headers["ETag"] != old
    assert (answer.status_code, answer.content) == (200, b"three")


@pytest.mark.parametrize("path", ["/missing.svs", "/slides", "/slides/../slides/small.svs"])
def test_http_missing_files_directories_and_dot_dot_are_404(
    served_slide, http_server, path
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", http_server.port, timeout=30)
    try:
        connection.request("GET", path)  # http.client sends the path as written
        assert connection.getresponse().status == 404
    finally:
        connection.close()


def test_http_latency_is_added_to_every_request(http_server, served_slide) -> None:
    import requests

    url, _ = served_slide
    http_server.latency = 0.02
    with requests.Session() as session:
        for header in ["bytes=0-99", "bytes=-10", None]:
            start = time.perf_counter()
            response = session.get(url, headers={"Range": header} if header else {}, timeout=30)
            elapsed = time.perf_counter() - start
            assert response.ok
            assert elapsed >= 0.02, (header, elapsed)
        start = time.perf_counter()
        assert session.head(url, timeout=30).ok
        assert time.perf_counter() - start >= 0.02


def test_http_requests_are_served_concurrently(http_server, served_slide) -> None:
    """32 range requests at once, each delayed 50 ms, take far less than 32 x 50 ms: one
    thread per connection, as a remote reader fetching the tiles of a chunk needs."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    url, data = served_slide
    http_server.latency = 0.05
    ranges = [(i * 50000, i * 50000 + 49999) for i in range(32)]

    def get(span: tuple[int, int]) -> bytes:
        headers = {"Range": f"bytes={span[0]}-{span[1]}"}
        return requests.get(url, headers=headers, timeout=30).content

    start = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        bodies = list(pool.map(get, ranges))
    elapsed = time.perf_counter() - start
    assert bodies == [data[a : b + 1] for a, b in ranges]
    assert elapsed < 0.05 * 32 / 2, elapsed
    assert http_server.request_count == 32


def statuses(url: str, count: int) -> list[int]:
    """The statuses of ``count`` one-byte range GETs in a row on one kept-alive connection."""
    import requests

    with requests.Session() as session:
        return [
            session.get(url, headers={"Range": f"bytes={i}-{i}"}, timeout=30).status_code
            for i in range(count)
        ]


def test_http_fail_rate_answers_503_at_the_share_set_and_reproducibly(
    http_server, served_slide
) -> None:
    url, _ = served_slide
    http_server.fail_rate = 0.25
    first = statuses(url, 200)
    failed = first.count(503)
    assert set(first) == {206, 503}
    assert 35 <= failed <= 65, failed  # 25 % of 200 (the seeded sequence gives the same count)
    assert http_server.count(outcome="failed") == failed
    assert http_server.request_count == 200
    http_server.reseed()  # the same faults again, in the same places
    assert statuses(url, 200) == first
    http_server.fail_rate = 0  # changed while running
    assert set(statuses(url, 20)) == {206}


def test_http_drop_before_the_status_line_is_a_connection_error(http_server, served_slide) -> None:
    import requests

    url, _ = served_slide
    http_server.drop_rate, http_server.drop_mode = 1.0, "before-status"
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, headers={"Range": "bytes=0-99"}, timeout=30)
    connection = http.client.HTTPConnection("127.0.0.1", http_server.port, timeout=30)
    try:
        connection.request("HEAD", "/slides/small.svs")
        with pytest.raises(http.client.RemoteDisconnected):
            connection.getresponse()
    finally:
        connection.close()
    assert [(r.method, r.status, r.outcome) for r in http_server.requests] == [
        ("GET", None, "dropped-before-status"),
        ("HEAD", None, "dropped-before-status"),
    ]


def test_http_drop_mid_body_cuts_the_answer(http_server, served_slide) -> None:
    import requests

    url, data = served_slide
    http_server.drop_rate, http_server.drop_mode = 1.0, "mid-body"
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # urllib3's IncompleteRead
        requests.get(url, headers={"Range": "bytes=0-99999"}, timeout=30)
    connection = http.client.HTTPConnection("127.0.0.1", http_server.port, timeout=30)
    try:
        connection.request("GET", "/slides/small.svs", headers={"Range": "bytes=0-999"})
        response = connection.getresponse()
        assert response.status == 206  # the status and headers arrive, then half the body
        with pytest.raises(http.client.IncompleteRead) as cut:
            response.read()
        assert cut.value.partial == data[:500]
    finally:
        connection.close()
    assert [(r.status, r.outcome, r.body_bytes) for r in http_server.requests] == [
        (206, "dropped-mid-body", 50000),
        (206, "dropped-mid-body", 500),
    ]


def test_http_drop_rate_drops_the_share_set(http_server, served_slide) -> None:
    import requests

    url, _ = served_slide
    http_server.drop_rate = 0.3  # drop_mode "either": before the status or mid-body
    outcomes = []
    for i in range(100):
        try:
            response = requests.get(url, headers={"Range": f"bytes={i}-{i + 999}"}, timeout=30)
        except requests.exceptions.ConnectionError:
            outcomes.append("before")
        except requests.exceptions.ChunkedEncodingError:
            outcomes.append("mid")
        else:
            outcomes.append(response.status_code)
    dropped = 100 - outcomes.count(206)
    assert 15 <= dropped <= 45, outcomes
    assert {"before", "mid"} <= set(outcomes)
    assert http_server.count(outcome="dropped-before-status") == outcomes.count("before")
    assert http_server.count(outcome="dropped-mid-body") == outcomes.count("mid")


def test_http_counters_count_round_trips(http_server, served_slide) -> None:
    import requests

    url, _ = served_slide
    with requests.Session() as session:
        session.head(url, timeout=30)
        for header in ["bytes=0-9", "bytes=-4", None]:
            session.get(url, headers={"Range": header} if header else {}, timeout=30)
        session.get(f"{http_server.url}/nothing-here", timeout=30)
    assert http_server.request_count == 5
    assert http_server.count("GET") == 4
    assert http_server.count("HEAD") == 1
    assert [(r.method, r.path, r.range, r.status) for r in http_server.requests] == [
        ("HEAD", "/slides/small.svs", None, 200),
        ("GET", "/slides/small.svs", "bytes=0-9", 206),
        ("GET", "/slides/small.svs", "bytes=-4", 206),
        ("GET", "/slides/small.svs", None, 200),
        ("GET", "/nothing-here", None, 404),
    ]
    assert http_server.bytes_served == 10 + 4 + 1938955 + len(b"not found\n")
    http_server.reset_counters()
    assert http_server.request_count == 0
    assert http_server.requests == []


def test_tifffile_reads_the_first_page_over_http(http_server, served_slide, real_slide) -> None:
    """fsspec's HTTP filesystem (aiohttp) against the server: a HEAD for the size, then range
    GETs; page 0 decoded from it equals the local file's."""
    import fsspec

    url, _ = served_slide
    with fsspec.open(url, "rb", block_size=2**18) as file:
        np.testing.assert_array_equal(first_page(file), first_page(real_slide(SMALL_SVS)))
    assert http_server.count("GET") >= 1
    assert all(r.status == 206 for r in http_server.requests if r.method == "GET")


def test_servers_start_and_stop_quickly(tmp_path) -> None:
    """A RangeHTTPServer starts and stops in well under a second and frees its port."""
    import requests

    from tests.servers import RangeHTTPServer

    start = time.perf_counter()
    with RangeHTTPServer(tmp_path) as server:
        url = server.url
        (tmp_path / "a.bin").write_bytes(b"abc")
        with requests.Session() as session:  # a kept-alive connection the stop must end
            assert session.get(f"{url}/a.bin", timeout=30).content == b"abc"
            server.stop()
            with pytest.raises(requests.exceptions.ConnectionError):
                session.get(f"{url}/a.bin", timeout=30)
    assert time.perf_counter() - start < 1.0


def test_rates_are_checked() -> None:
    from tests.servers import RangeHTTPServer

    server = RangeHTTPServer(".")
    server.fail_rate = 0.6
    with pytest.raises(ValueError, match="add up to 1"):
        server.drop_rate = 0.5
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        server.fail_rate = -0.1
