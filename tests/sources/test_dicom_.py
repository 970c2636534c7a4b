"""The DICOM WSI reader: series from a folder or an instance, stored pixels, channels, errors.

The series come from the shared test data (dicom/BPAEC: 3DHISTECH fluorescence, three
optical paths; the CAMELYON conversion) and from ``dicom_corpus`` (tests/sources/conftest.py:
series written by wsidicomizer and wsidicom from the shared SVS and CAMELYON files).
"""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import wsiarray as wa
from tests.sources.conftest import CAMELYON, CORPUS, NDPI, SVS, grey16_pattern
from wsiarray.sources import SourceSpec, open_source, source_cache
from wsiarray.sources.dicom_ import Credentials, DicomSource, is_dicom_header, split_credentials

wsidicom = pytest.importorskip("wsidicom")
pydicom = pytest.importorskip("pydicom")

BPAEC = "dicom/BPAEC"

pytestmark = [
    # pydicom warns, at wsidicom's first look at them, of the CAMELYON file's UIDs longer than
    # 64 characters (its converter wrote them; its copies keep them): not wsiarray's to fix
    pytest.mark.filterwarnings("ignore:The value length .* for VR UI:UserWarning"),
    # Orthanc's DICOMweb metadata gives OB/OW values (ICC profiles) as BulkDataURIs, which
    # wsidicom's web client leaves empty: pydicom warns once per element
    pytest.mark.filterwarnings("ignore:No bulk data URI handler provided:UserWarning"),
]


def _series(name: str, real_slide, dicom_corpus) -> Path:
    return dicom_corpus[name] if name in dicom_corpus else real_slide(name)


def _wsidicom_window(
    wsi: wsidicom.WsiDicom, level: int, y0: int, y1: int, x0: int, x1: int
) -> np.ndarray:
    """Pixels of a level assembled from wsidicom's own decode of each tile (``get_tile``)."""
    from wsidicom.geometry import Point

    wsi_level = wsi.pyramid.levels[level]
    samples = wsi_level.default_instance.image_data.samples_per_pixel
    # optical paths in the OpticalPathSequence's order (the CAMELYON file has none there)
    paths = [p.identifier for p in wsi.metadata.pyramid.optical_paths] or wsi_level.optical_paths
    paths = paths[:1] if samples > 1 else paths
    th, tw = wsi_level.tile_size.height, wsi_level.tile_size.width
    rows = []
    for ty in range(y0 // th, (y1 - 1) // th + 1):
        row = []
        for tx in range(x0 // tw, (x1 - 1) // tw + 1):
            tiles = [np.asarray(wsi_level.get_tile(Point(tx, ty), path=p)) for p in paths]
            row.append(np.concatenate([t.reshape(*t.shape[:2], -1) for t in tiles], axis=-1))
        rows.append(np.concatenate(row, axis=1))
    whole = np.concatenate(rows, axis=0)
    oy, ox = (y0 // th) * th, (x0 // tw) * tw
    return whole[y0 - oy : y1 - oy, x0 - ox : x1 - ox]


def _windows(shape: tuple[int, int], tile: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Windows off the origin: one across the first tile borders, one at the far edges."""
    (h, w), (th, tw) = shape, tile
    y0 = th - 5 if h > th else h // 3
    x0 = tw - 7 if w > tw else w // 3
    across = (y0, min(h, y0 + 41), x0, min(w, x0 + 53))
    edge = (max(1, h - 23), h, max(1, w - 31), w)
    return [across, edge]


SERIES = (BPAEC, CAMELYON, *CORPUS)


@pytest.mark.parametrize("name", SERIES)
def test_stored_pixels_on_every_level_equal_wsidicoms_tile_decode(
    name, real_slide, dicom_corpus
) -> None:
    path = _series(name, real_slide, dicom_corpus)
    with open_source(path) as source, wsidicom.WsiDicom.open(path) as wsi:
        assert source.name == "dicom"
        assert source.metadata.level_shapes == tuple(
            (level.size.height, level.size.width) for level in wsi.pyramid.levels
        )
        for index, info in enumerate(source.metadata.levels):
            assert info.tile == (
                wsi.pyramid.levels[index].tile_size.height,
                wsi.pyramid.levels[index].tile_size.width,
            )
            for y0, y1, x0, x1 in _windows(info.shape, info.tile):
                block = source.read_block(index, y0, y1, x0, x1)
                expected = _wsidicom_window(wsi, index, y0, y1, x0, x1)
                assert block.shape == (y1 - y0, x1 - x0, len(source.metadata.channels))
                assert block.dtype == source.metadata.dtype
                np.testing.assert_array_equal(block, expected, err_msg=f"level {index}")


def test_bpaec_from_its_folder_fluorescence_channels_label_and_pixel_size(real_slide) -> None:
    folder = real_slide(BPAEC)
    slide = wa.open(folder)
    meta = slide.metadata
    assert (meta.reader, meta.format, meta.dtype) == ("dicom", "dicom", "uint8")
    # three MONOCHROME2 optical paths, named by their descriptions, in the sequence's order
    assert meta.channels == ("Green", "Blue", "Red")
    assert meta.background == (0, 0, 0)
    assert meta.level_shapes[0] == (2304, 3072)
    assert len(meta.levels) == 8
    assert [a.name for a in meta.associated] == ["label"]
    assert slide.associated["label"].shape[:2] == (441, 579)
    base = pydicom.dcmread(folder / "5_0", stop_before_pixels=True)
    spacing = base.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert (meta.mm_y, meta.mm_x) == (float(spacing[0]), float(spacing[1]))
    # no ObjectiveLensPower in the dataset: derived from the pixel size
    assert meta.magnification_derived
    assert meta.properties["dicom.Manufacturer"] == "3DHISTECH Kft."
    assert meta.properties["dicom.OpticalPath[0].Description"] == "Green"
    image = slide.tree["level1"].image
    assert image.dims == ("y", "x", "c")
    assert list(image.c.values) == ["Green", "Blue", "Red"]
    np.testing.assert_array_equal(
        slide.read(700, 300, 400, 200, level=1), image.values[300:500, 700:1100]
    )


def test_one_instance_opens_its_whole_series(real_slide) -> None:
    folder = real_slide(BPAEC)
    from_folder = wa.open(folder)
    from_instance = wa.open(folder / "7_0")
    assert from_instance.level_shapes == from_folder.level_shapes
    assert from_instance.metadata.associated == from_folder.metadata.associated
    np.testing.assert_array_equal(
        from_instance.read(1000, 900, 300, 300), from_folder.read(1000, 900, 300, 300)
    )


def test_objective_power_from_the_optical_path(dicom_corpus) -> None:
    slide = wa.open(dicom_corpus["svs-jpeg"])
    assert (slide.metadata.magnification, slide.metadata.magnification_derived) == (20.0, False)
    assert slide.metadata.mm_x == pytest.approx(0.000499)
    assert [a.name for a in slide.metadata.associated] == ["label", "macro", "thumbnail"]
    assert slide.associated["macro"].shape == (431, 1280, 3)


def test_lossless_series_equal_their_source_pixels(real_slide, dicom_corpus) -> None:
    # HTJ2K lossless from the SVS: the SVS's own JPEG decode (tifffile reader), exactly
    svs = wa.open(real_slide(SVS)).image(0).values
    np.testing.assert_array_equal(wa.open(dicom_corpus["svs-htj2k"]).image(0).values, svs)
    camelyon = wa.open(real_slide(CAMELYON)).image(0).values
    for name in ("cam-j2k", "cam-jpegls", "cam-rle", "cam-raw"):
        np.testing.assert_array_equal(wa.open(dicom_corpus[name]).image(0).values, camelyon)
    for name in ("grey16-jpegls", "grey16-j2k", "grey16-raw"):
        slide = wa.open(dicom_corpus[name])
        assert (slide.metadata.dtype, slide.metadata.channels) == ("uint16", ("L",))
        assert slide.metadata.mm_x == pytest.approx(0.0005)
        np.testing.assert_array_equal(slide.image(0).values[..., 0], grey16_pattern())


def test_jpeg_conversion_of_the_svs_is_re_encoded_not_copied(real_slide, dicom_corpus) -> None:
    # wsidicomizer's tiffslide source decodes the SVS tiles and encodes new 512-px JPEG
    # tiles: close to the SVS, not equal (it copies tiles only through opentile)
    svs = wa.open(real_slide(SVS)).image(0).values.astype(int)
    for name in ("svs-jpeg", "svs-jpeg-concat"):
        pixels = wa.open(dicom_corpus[name]).image(0).values
        assert pixels.shape == svs.shape
        assert np.abs(pixels - svs).mean() < 5


def test_a_concatenation_is_one_level(dicom_corpus) -> None:
    folder = dicom_corpus["svs-jpeg-concat"]
    volumes = [
        pydicom.dcmread(f, stop_before_pixels=True)
        for f in folder.iterdir()
        if "VOLUME" in pydicom.dcmread(f, stop_before_pixels=True).ImageType
    ]
    assert len(volumes) > 1
    assert len({str(v.ConcatenationUID) for v in volumes}) == 1
    slide = wa.open(next(folder.iterdir()))  # any instance: label, part of the level, ...
    np.testing.assert_array_equal(
        slide.image(0).values, wa.open(dicom_corpus["svs-jpeg"]).image(0).values
    )


@pytest.mark.parametrize("name", [CAMELYON, "svs-jpeg", "cam-j2k", "ndpi-jpeg"])
def test_levels_and_pixels_equal_openslides(name, real_slide, dicom_corpus) -> None:
    path = _series(name, real_slide, dicom_corpus)
    instance = path if path.is_file() else _base_instance(path)
    slide, other = wa.open(instance), wa.open(instance, reader="openslide")
    assert (slide.metadata.reader, other.metadata.reader) == ("dicom", "openslide")
    assert slide.level_shapes == other.level_shapes
    np.testing.assert_array_equal(slide.read(300, 200, 300, 260), other.read(300, 200, 300, 260))


def _base_instance(folder: Path) -> Path:
    return next(
        f
        for f in sorted(folder.iterdir())
        if "VOLUME" in pydicom.dcmread(f, stop_before_pixels=True).ImageType
    )


def test_reads_from_many_threads_equal_serial_reads(real_slide) -> None:
    with open_source(real_slide(BPAEC)) as source:
        windows = [(y, y + 300, x, x + 300) for y in (0, 900, 1900) for x in (0, 1000, 2700)]
        serial = [source.read_block(0, *w) for w in windows]
        with ThreadPoolExecutor(8) as pool:
            threaded = list(pool.map(lambda w: source.read_block(0, *w), windows * 3))
    for index, pixels in enumerate(threaded):
        np.testing.assert_array_equal(pixels, serial[index % len(windows)])


def test_a_truncated_instance_is_refused_at_open_naming_it(tmp_path, real_slide) -> None:
    folder = tmp_path / "BPAEC"
    shutil.copytree(real_slide(BPAEC), folder)
    cut = folder / "6_0"
    cut.chmod(0o644)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(wa.TruncatedFileError, match=r"6_0 is truncated"):
        wa.open(folder)
    with pytest.raises(wa.TruncatedFileError, match=r"6_0 is truncated"):
        wa.open(folder / "9_0")


def test_a_damaged_tile_is_a_corrupt_tile_error_naming_the_file(tmp_path, real_slide) -> None:
    source = real_slide(CAMELYON)
    data = bytearray(source.read_bytes())
    # past the header, inside the frames: zeroes in the JPEG entropy data of a frame
    data[-30000:-20000] = bytes(10000)
    damaged = tmp_path / "damaged.dcm"
    damaged.write_bytes(bytes(data))
    with open_source(damaged) as slide, pytest.raises(wa.CorruptTileError, match=r"damaged\.dcm"):
        slide.read_block(0, 0, 700, 0, 1152)


def test_an_undecodable_transfer_syntax_is_refused_at_open(tmp_path, real_slide) -> None:
    # the file meta's Transfer Syntax UID (JPEG baseline) replaced in place by an unassigned
    # UID of the same length (pydicom will not write a transfer syntax it does not know)
    data = real_slide(CAMELYON).read_bytes()
    head = pydicom.dcmread(real_slide(CAMELYON), stop_before_pixels=True)
    assert head.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    patched = tmp_path / "patched.dcm"
    patched.write_bytes(data.replace(b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.49", 1))
    with pytest.raises(
        wa.UnsupportedFormatError, match=r"patched\.dcm.*1\.2\.840\.10008\.1\.2\.4\.49"
    ):
        open_source(patched, reader="dicom")


def test_a_folder_without_dicom_is_still_refused(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("not a slide")
    with pytest.raises(wa.UnsupportedFormatError, match="folders of DICOM WSI"):
        wa.open(tmp_path)


def test_a_dicom_file_that_is_not_a_slide_is_refused(tmp_path, real_slide) -> None:
    dataset = pydicom.dcmread(real_slide(CAMELYON), stop_before_pixels=True)
    dataset.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    dataset.file_meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    other = tmp_path / "capture.dcm"
    dataset.save_as(other, enforce_file_format=True)
    with pytest.raises(wa.UnsupportedFormatError, match=r"capture\.dcm is a DICOM file but not"):
        open_source(other, reader="dicom")


def test_import_wsiarray_does_not_import_wsidicom(real_slide) -> None:
    code = (
        "import sys, wsiarray as wa; wa.open(sys.argv[1]).read(0, 0, 16, 16); "
        "assert 'wsidicom' not in sys.modules and 'pydicom' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code, str(real_slide(SVS))], check=True)


def test_without_wsidicom_the_reader_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, real_slide
) -> None:
    monkeypatch.setitem(sys.modules, "wsidicom", None)
    with pytest.raises(wa.ReaderUnavailableError, match=r"wsiarray\[dicom\]"):
        DicomSource(real_slide(CAMELYON))


# -- DICOMweb URLs (no server here: the URL handling, spec and secrecy of credentials) ---------

URL = "http://127.0.0.1:9/dicom-web/studies/1.2.3/series/4.5.6"


def test_a_url_spec_has_no_stamp_and_never_changes() -> None:
    spec = SourceSpec.create(URL, "dicom", {})
    assert (spec.path, spec.stamp, spec.changed()) == (URL, (0, 0), False)


def test_credentials_in_a_url_never_show() -> None:
    secret = "http://alice:s3cret@127.0.0.1:9/dicom-web/studies/1.2.3/series/4.5.6"
    url, credentials = split_credentials(secret, None)
    assert (url, credentials) == (URL, Credentials("alice", "s3cret"))
    assert "s3cret" not in repr(credentials)
    assert "s3cret" not in repr(SourceSpec.create(url, "dicom", {"credentials": credentials}))
    with pytest.raises(wa.UnsupportedFormatError) as error:  # nothing listens on port 9
        wa.open(secret)
    assert "s3cret" not in str(error.value)
    assert "alice" not in str(error.value)
    assert "DICOMweb series cannot be opened" in str(error.value)


def test_a_url_that_is_no_dicomweb_series_is_read_as_an_object_not_by_dicom() -> None:
    # any other URL is an object in storage (tests/sources/test_store.py): nothing listens
    with pytest.raises(wa.WsiArrayError, match=r"127\.0\.0\.1:9/slide\.svs") as error:
        wa.open("http://127.0.0.1:9/slide.svs")
    assert "dicom" not in str(error.value).lower()


@pytest.mark.parametrize("name", [BPAEC, CAMELYON, "grey16-j2k", "grey16-jpegls"])
def test_a_dicomweb_series_reads_as_its_files(name, orthanc, real_slide, dicom_corpus) -> None:
    """A round trip through a real DICOMweb server (Orthanc, the ``orthanc`` fixture); the
    JPEG 2000 series need their stored syntax asked for (Orthanc answers 500 otherwise).
    (The cam-* series share CAMELYON's SeriesInstanceUID: in one server they would be one
    series of mixed syntaxes.)"""
    path = dicom_corpus[name] if name in dicom_corpus else real_slide(name)
    files = [path] if path.is_file() else sorted(path.iterdir())
    files = [f for f in files if is_dicom_header(f.read_bytes()[:132])]
    local = wa.open(path)
    series_uid = local.metadata.properties["dicom.SeriesInstanceUID"]
    (study, series), *_ = [pair for pair in orthanc.upload(files) if pair[1] == series_uid]
    url = f"{orthanc.url}/studies/{study}/series/{series}"
    web = wa.open(url)
    assert (web.path, web.metadata.reader) == (url, "dicom")
    assert web.level_shapes == local.level_shapes
    assert web.metadata.channels == local.metadata.channels
    assert (web.metadata.mm_x, web.metadata.mm_y) == (local.metadata.mm_x, local.metadata.mm_y)
    assert [a.name for a in web.metadata.associated] == [a.name for a in local.metadata.associated]
    for level, info in enumerate(local.metadata.levels):
        for y0, y1, x0, x1 in _windows(info.shape, info.tile):
            np.testing.assert_array_equal(
                web.read(x0, y0, x1 - x0, y1 - y0, level=level),
                local.read(x0, y0, x1 - x0, y1 - y0, level=level),
            )


def test_a_concatenation_read_in_part_over_dicomweb_is_refused(orthanc, dicom_corpus) -> None:
    """wsidicom 0.36's DICOMweb source keeps one of a concatenation's four instances and
    would read the other parts' frames from it (99 % of pixels wrong at the origin)."""
    folder = dicom_corpus["svs-jpeg-concat"]
    local = wa.open(folder)  # from files: whole (tests above)
    (study, series), *_ = orthanc.upload(sorted(folder.iterdir()))
    with pytest.raises(wa.UnsupportedFormatError, match="concatenation of 4 instances"):
        wa.open(f"{orthanc.url}/studies/{study}/series/{series}")
    assert local.level_shapes[0] == (2967, 2220)


def test_a_colour_series_exposes_its_optical_paths_icc_profile(dicom_corpus, real_slide) -> None:
    import io

    from PIL import ImageCms
    from wsidicom import WsiDicom

    folder = dicom_corpus["svs-jpeg"]
    slide = wa.open(folder)
    with WsiDicom.open(folder) as wsi:
        assert slide.icc_profile == wsi.pyramids[0].metadata.optical_paths[0].icc_profile
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(slide.icc_profile)))
    # a fluorescence series' channels are no colours: BPAEC's RGB profile is not theirs
    assert wa.open(real_slide(BPAEC)).icc_profile is None


def test_a_converted_ndpi_keeps_the_ndpis_levels(real_slide, dicom_corpus) -> None:
    converted, ndpi = wa.open(dicom_corpus["ndpi-jpeg"]), wa.open(real_slide(NDPI))
    assert converted.level_shapes == ndpi.level_shapes
    assert converted.mm_x == pytest.approx(ndpi.mm_x, rel=1e-6)
    # re-encoded JPEG (wsidicomizer decodes and encodes again): close, not equal
    a, b = converted.read(500, 300, 700, 500), ndpi.read(500, 300, 700, 500)
    assert np.abs(a.astype(int) - b).mean() < 3


# -- series in object storage (a real S3 endpoint: moto's server, the ``s3_server`` fixture) ------


def _upload_series(s3_server, bucket: str, folder: Path) -> str:
    files = {f"series/{file.name}": file for file in sorted(folder.iterdir()) if file.is_file()}
    s3_server.upload(bucket, files)
    return f"s3://{bucket}/series"


@pytest.mark.parametrize("name", [BPAEC, "svs-jpeg"])
def test_a_series_under_a_bucket_prefix_reads_as_its_folder(
    name, s3_server, real_slide, dicom_corpus
) -> None:
    folder = _series(name, real_slide, dicom_corpus)
    bucket = f"dicom-{name.lower().replace('/', '-')}"
    url = _upload_series(s3_server, bucket, folder)
    options = s3_server.storage_options
    remote, local = wa.open(url, storage_options=options), wa.open(folder)
    assert remote.metadata.reader == "dicom"
    assert remote.level_shapes == local.level_shapes
    assert remote.metadata.channels == local.metadata.channels
    assert [a.name for a in remote.metadata.associated] == [
        a.name for a in local.metadata.associated
    ]
    for level, info in enumerate(local.metadata.levels):
        for y0, y1, x0, x1 in _windows(info.shape, info.tile):
            np.testing.assert_array_equal(
                remote.read(x0, y0, x1 - x0, y1 - y0, level=level),
                local.read(x0, y0, x1 - x0, y1 - y0, level=level),
            )
    last = len(local.metadata.levels) - 1
    # the graph carries the URL and its options, pickled small; a worker reopens from them
    graph = pickle.dumps(remote.image(last).data)
    assert len(graph) < 20_000
    for shown in (repr(remote), repr(remote._spec), str(remote.tree.attrs)):
        assert options["secret"] not in shown
    source_cache.clear()
    np.testing.assert_array_equal(pickle.loads(graph).compute(), local.image(last).values)


def test_one_instance_in_storage_opens_its_series_and_a_changed_one_is_noticed(
    s3_server, real_slide
) -> None:
    folder = real_slide(BPAEC)
    url = _upload_series(s3_server, "dicom-instance", folder)
    options = s3_server.storage_options
    slide = wa.open(f"{url}/10_0", storage_options=options)
    assert slide.level_shapes == wa.open(folder).level_shapes
    slide.read(0, 0, 16, 16)
    # an instance replaced in the bucket (here by another level's file) is a changed slide
    s3_server.put("dicom-instance", "series/11_0", (folder / "12_0").read_bytes())
    source_cache.clear()  # a worker, or a process that evicted it, opens it again
    with pytest.raises(wa.SlideChangedError):
        slide.read(0, 0, 16, 16)


def test_a_prefix_without_dicom_files_is_refused_naming_it(s3_server, real_slide) -> None:
    s3_server.upload("dicom-none", {"notes/readme.txt": real_slide(BPAEC) / "readme.txt"})
    with pytest.raises(wa.UnsupportedFormatError, match=r"s3://dicom-none/notes.*DICOM"):
        wa.open("s3://dicom-none/notes", storage_options=s3_server.storage_options)


# -- damaged series (issue 15's fuzzing: a tag of one instance changed) ---------------------------


def _tampered_bpaec(tmp_path: Path, real_slide, name: str, **values: object) -> Path:
    folder = tmp_path / "BPAEC"
    shutil.copytree(real_slide(BPAEC), folder)
    dataset = pydicom.dcmread(folder / name)
    for key, value in values.items():
        setattr(dataset, key, value)
    dataset.save_as(folder / name)
    return folder


def test_a_level_wsidicom_leaves_out_is_refused_naming_it(tmp_path, real_slide) -> None:
    # an ImageType that says no VOLUME: wsidicom ignores the instance, and the series would
    # open a level short (the fuzzer's mutant lost BPAEC's base level this way)
    folder = _tampered_bpaec(tmp_path, real_slide, "5_0", ImageType=["X"])
    with pytest.raises(wa.DamagedFileError, match=r"5_0 \(no image type\)"):
        wa.open(folder)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")  # pydicom, of the UID
def test_an_instance_whose_sop_class_is_garbled_is_refused_not_left_out(
    tmp_path, real_slide
) -> None:
    # fuzz seed 104729 (dicom_header_flip): one bit of 11_0's SOPClassUID flipped
    # ('1.2.840.10008.%.1.4...'): the file was no whole-slide image to the scan, and the
    # series opened with 7 of its 8 levels, silently
    folder = tmp_path / "BPAEC"
    shutil.copytree(real_slide(BPAEC), folder)
    data = bytearray((folder / "11_0").read_bytes())
    uid = b"1.2.840.10008.5.1.4.1.1.77.1.6"
    meta = data.index(uid)  # MediaStorageSOPClassUID in the file meta
    at = data.index(uid, meta + len(uid))  # the dataset's SOPClassUID
    data[at + len("1.2.840.10008.")] ^= 0x10
    (folder / "11_0").write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=r"11_0 of the series have a SOP class UID"):
        wa.open(folder)


@pytest.mark.parametrize(
    ("name", "kind", "size", "where"),
    [
        # fuzz seed 424242 (dicom-bpaec/dicom_tag_value/424242.936): 9_0 taken for a second
        # label; the series opened with 7 of its 8 levels, the 192 x 144 one missing
        ("9_0", "LABEL", "192 x 144", "between 384 and 96 pixels wide"),
        # fuzz seed 8675309 (dicom-bpaec/dicom_tag_value/8675309.322): the last level
        ("12_0", "OVERVIEW", "24 x 18", "below its 48 pixel wide last level"),
    ],
)
def test_a_level_relabelled_is_said_not_lost_quietly(
    tmp_path, real_slide, name: str, kind: str, size: str, where: str
) -> None:
    # wsidicom sorts instances by ImageType: a level whose VOLUME became LABEL or OVERVIEW
    # is that image, and the pyramid a level short, without a word
    folder = _tampered_bpaec(tmp_path, real_slide, name, ImageType=["DERIVED", "PRIMARY", kind])
    with pytest.warns(wa.DamagedFileWarning, match=rf"image type {kind}, {size} pixels, is the"):
        slide = wa.open(folder)
    assert slide.level_count == 7
    assert where in slide.tree.attrs["warnings"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", wa.DamagedFileWarning)
        assert wa.open(real_slide(BPAEC)).level_count == 8  # no warning for the original


def test_a_level_of_another_frame_size_is_refused(tmp_path, real_slide) -> None:
    # a tampered Rows: wsidicom left the level out of the series' pyramid, or, where it was
    # the largest level, took it for the base and left the others out; its frames no longer
    # fill its matrix, which is refused at open, naming it
    folder = _tampered_bpaec(tmp_path, real_slide, "9_0", Rows=1)
    with pytest.raises(wa.DamagedFileError, match=r"9_0: its TILED_FULL pixel matrix"):
        wa.open(folder)


def test_a_series_wsidicom_refuses_is_offered_to_no_other_reader(tmp_path, real_slide) -> None:
    # fuzz 2026.376: TILED_FULL relabelled TILED_SPARSE (no per-frame positions). wsidicom
    # refuses it; 'auto' then offered the file to OpenSlide, whose open crashed the process
    path = tmp_path / "camelyon.dcm"
    dataset = pydicom.dcmread(real_slide(CAMELYON))
    dataset.DimensionOrganizationType = "TILED_SPARSE"
    dataset.save_as(path)
    with pytest.raises(
        wa.DamagedFileError, match=r"camelyon\.dcm: wsidicom cannot read the series' instances"
    ):
        wa.open(path)


def test_a_pixel_matrix_its_frames_do_not_fill_is_refused_at_open(tmp_path, real_slide) -> None:
    # fuzz dicom_huge_size: TotalPixelMatrixRows -> 2**32 - 1; wsidicom trusted it, and the
    # level's coordinates ran out of memory
    path = tmp_path / "camelyon.dcm"
    dataset = pydicom.dcmread(real_slide(CAMELYON))
    dataset.TotalPixelMatrixRows = 2**32 - 1
    dataset.save_as(path)
    with pytest.raises(wa.DamagedFileError, match=r"camelyon\.dcm: .* holds 15"):
        wa.open(path)
