"""The DICOM WSI reader on highdicom's slide-microscopy test files (tests/data/highdicom).

Eight small VL Whole Slide Microscopy instances written by others (see the folder's README):
8-bit RGB uncompressed and JPEG-LS (with and without a Basic Offset Table) and 16-bit
MONOCHROME2, each a 50 x 50 level in 5 x 5 tiles of 10 px, TILED_FULL. Pixels are checked
against a decode that does not go through wsidicom: pydicom's frames (its ``pixel_array``;
for JPEG-LS, which none of pydicom's installed decoders reads, its encapsulated frames decoded
by imagecodecs) put in their row-major tile places.

Two pairs of the files share a series (one pair even its SOPInstanceUID), so a file is read
from a folder of its own; the folder as highdicom ships it is tested on its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import wsiarray as wa
from wsiarray.errors import UnsupportedFormatError

wsidicom = pytest.importorskip("wsidicom")
pydicom = pytest.importorskip("pydicom")

DATA = Path(__file__).parents[1] / "data" / "highdicom"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
RGB = ("R", "G", "B")
#: file: (dtype, channels) wsiarray should give
FILES = {
    "sm_image.dcm": ("uint8", RGB),
    "sm_image_control.dcm": ("uint8", RGB),
    "sm_image_dots.dcm": ("uint8", RGB),
    "sm_image_numbers.dcm": ("uint8", RGB),
    "sm_image_grayscale.dcm": ("uint16", ("DAPI",)),
    "sm_image_grayscale_reversed.dcm": ("uint16", ("DAPI",)),
    "sm_image_jpegls.dcm": ("uint8", RGB),
    "sm_image_jpegls_nobot.dcm": ("uint8", RGB),
}
#: (left, top, width, height): off the origin, across tile borders at 10, 20 and 30 px
WINDOW = (7, 3, 25, 21)


def _alone(name: str, tmp_path: Path) -> Path:
    """A copy of one file in a folder of its own (the shipped folder pairs some series)."""
    return Path(shutil.copy(DATA / name, tmp_path / name))


def _reference(path: Path) -> np.ndarray:
    """The instance's total pixel matrix (h, w, samples) from pydicom's frames, not wsidicom."""
    dataset = pydicom.dcmread(path)
    assert dataset.DimensionOrganizationType == "TILED_FULL"
    assert int(dataset.get("TotalPixelMatrixFocalPlanes", 1)) == 1
    assert len(dataset.OpticalPathSequence) == 1
    count = int(dataset.NumberOfFrames)
    if dataset.file_meta.TransferSyntaxUID == JPEG_LS_LOSSLESS:
        imagecodecs = pytest.importorskip("imagecodecs")
        frames = np.stack(
            [
                imagecodecs.jpegls_decode(frame)
                for frame in pydicom.encaps.generate_frames(
                    dataset.PixelData, number_of_frames=count
                )
            ]
        )
    else:
        frames = dataset.pixel_array
    frames = frames.reshape(count, dataset.Rows, dataset.Columns, -1)
    th, tw = dataset.Rows, dataset.Columns
    height, width = dataset.TotalPixelMatrixRows, dataset.TotalPixelMatrixColumns
    across = -(-width // tw)
    whole = np.zeros((-(-height // th) * th, across * tw, frames.shape[-1]), frames.dtype)
    for index, frame in enumerate(frames):  # TILED_FULL: row-major tiles
        ty, tx = divmod(index, across)
        whole[ty * th : (ty + 1) * th, tx * tw : (tx + 1) * tw] = frame
    return whole[:height, :width]


@pytest.mark.parametrize("reader", ["auto", "dicom"])
@pytest.mark.parametrize("name", FILES)
def test_each_file_reads_its_stored_pixels(name, reader, tmp_path) -> None:
    path = _alone(name, tmp_path)
    dtype, channels = FILES[name]
    expected = _reference(path)
    with wa.open(path, reader=reader) as slide, wsidicom.WsiDicom.open(path) as wsi:
        meta = slide.metadata
        assert meta.reader == "dicom"
        assert meta.level_shapes == tuple(
            (level.size.height, level.size.width) for level in wsi.pyramid.levels
        )
        assert meta.level_shapes == ((50, 50),)
        assert [info.tile for info in meta.levels] == [(10, 10)]
        assert (str(meta.dtype), meta.channels) == (dtype, channels)
        assert meta.associated == ()
        assert (meta.mm_y, meta.mm_x) == (0.000499, 0.000499)
        left, top, width, height = WINDOW
        block = slide.read(left, top, width, height)
        assert block.shape == (height, width, len(channels))
        assert block.dtype == expected.dtype
        np.testing.assert_array_equal(block, expected[top : top + height, left : left + width])
        np.testing.assert_array_equal(slide.read(0, 0, 50, 50), expected)


def test_the_reversed_grey_file_is_its_pair_with_the_frames_in_reverse(tmp_path) -> None:
    # what makes the shared-series test below meaningful: the two images differ
    grey = _reference(_alone("sm_image_grayscale.dcm", tmp_path))
    reversed_ = _reference(_alone("sm_image_grayscale_reversed.dcm", tmp_path))
    assert not np.array_equal(grey, reversed_)
    tiles = grey.reshape(5, 10, 5, 10).transpose(0, 2, 1, 3).reshape(25, 10, 10)[::-1]
    np.testing.assert_array_equal(
        tiles.reshape(5, 5, 10, 10).transpose(0, 2, 1, 3).reshape(50, 50), reversed_[..., 0]
    )


# -- the folder as highdicom ships it ----------------------------------------------------------


def test_the_shipped_folder_holds_six_series_and_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedFormatError, match=r"holds 6 whole-slide series"):
        wa.open(DATA, reader="dicom")


@pytest.mark.parametrize("name", ["sm_image.dcm", "sm_image_control.dcm"])
def test_two_files_with_one_sop_instance_uid_are_refused_by_the_dicom_reader(name) -> None:
    # sm_image.dcm and sm_image_control.dcm share study, series and SOPInstanceUID with
    # different pixels: wsidicom refuses the series, and wsiarray passes its error on
    with pytest.raises(UnsupportedFormatError) as caught:
        wa.open(DATA / name, reader="dicom")
    message = str(caught.value)
    assert message.startswith(f"{DATA / name}: wsidicom cannot open the series")
    assert "WsiDicomUidDuplicateError" in message


@pytest.mark.parametrize("name", ["sm_image.dcm", "sm_image_control.dcm"])
def test_two_files_with_one_sop_instance_uid_fall_back_to_openslide_by_auto(name) -> None:
    # "auto" tries the next reader that recognises the file; OpenSlide reads the named file
    pytest.importorskip("openslide")
    with wa.open(DATA / name) as slide:
        assert slide.metadata.reader == "openslide"
        np.testing.assert_array_equal(slide.read(0, 0, 50, 50), _reference(DATA / name))


def test_an_instance_opened_beside_another_of_the_same_plane_reads_its_own_pixels() -> None:
    """Two instances of one series hold the same level, optical path and focal plane (the
    second's frames reversed): wsidicom keeps both and reads the first it met, so the named
    file is read without the other; the pair's folder is refused, naming both."""
    for name in ("sm_image_grayscale_reversed.dcm", "sm_image_grayscale.dcm"):
        path = DATA / name
        with wa.open(path, reader="dicom") as slide:
            np.testing.assert_array_equal(slide.read(0, 0, 50, 50), _reference(path))


def test_a_folder_with_two_copies_of_a_level_is_refused_naming_both(tmp_path: Path) -> None:
    for name in ("sm_image_grayscale.dcm", "sm_image_grayscale_reversed.dcm"):
        shutil.copy(DATA / name, tmp_path / name)
    with pytest.raises(UnsupportedFormatError, match="same level") as error:
        wa.open(tmp_path, reader="dicom")
    assert "sm_image_grayscale.dcm" in str(error.value)
    assert "sm_image_grayscale_reversed.dcm" in str(error.value)
