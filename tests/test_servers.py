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
