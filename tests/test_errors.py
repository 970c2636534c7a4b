"""Bad input gets a specific wsiarray error with a message a person can act on."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

import wsiarray as wa

SMALL_SVS = "aperio/CMU-1-Small-Region.svs"


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.svs"
    with pytest.raises(wa.SlideNotFoundError, match="no such file") as info:
        wa.open(missing)
    assert isinstance(info.value, FileNotFoundError)
    assert str(missing) in str(info.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(wa.UnsupportedFormatError, match="is a directory"):
        wa.open(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.svs"
    empty.touch()
    with pytest.raises(wa.UnsupportedFormatError, match="is empty"):
        wa.open(empty)


def test_text_file_renamed_svs(tmp_path: Path) -> None:
    fake = tmp_path / "notes.svs"
    fake.write_text("these are my notes, not a slide\n" * 20)
    with pytest.raises(wa.UnsupportedFormatError) as info:
        wa.open(fake)
    message = str(info.value)
    for reader in ("tifffile", "openslide", "pil"):
        assert f"{reader}: does not recognise" in message
    assert isinstance(info.value, ValueError)


def test_unknown_reader(real_slide) -> None:
    with pytest.raises(
        wa.ReaderUnavailableError, match="available readers: tifffile, dicom, openslide, pil"
    ):
        wa.open(real_slide(SMALL_SVS), reader="bioformats")


def test_named_reader_that_cannot_read(tmp_path: Path) -> None:
    png = tmp_path / "plain.png"
    from PIL import Image

    Image.new("RGB", (10, 10)).save(png)
    with pytest.raises(wa.UnsupportedFormatError, match="OpenSlide cannot open it"):
        wa.open(png, reader="openslide")


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_truncated_file(tmp_path: Path, fraction: float, real_slide) -> None:
    data = real_slide(SMALL_SVS).read_bytes()
    cut = tmp_path / "cut.svs"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(wa.TruncatedFileError, match="is truncated") as info:
        wa.open(cut)
    assert f"{cut.stat().st_size:,} bytes" in str(info.value)


def test_truncated_level_data(tmp_path: Path) -> None:
    """Directories intact but tile data past the end: refused at open, not at read."""
    path = tmp_path / "short.tif"
    tifffile.imwrite(path, np.zeros((512, 512, 3), np.uint8), tile=(256, 256), compression="zlib")
    data = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        last_tile_start = max(tif.pages.first.dataoffsets)
        ifd = tif.pages.first.offset
    assert ifd < last_tile_start, "tifffile writes the directory first"
    path.write_bytes(data[: last_tile_start + 5])
    with pytest.raises(wa.TruncatedFileError, match="image data reaches byte"):
        wa.open(path)


def _corrupt_tile(real_slide, tmp_path: Path, tile: int, how: str) -> Path:
    source = real_slide(SMALL_SVS)
    target = tmp_path / "corrupt.svs"
    shutil.copyfile(source, target)
    with tifffile.TiffFile(target) as tif:
        offset = tif.pages.first.dataoffsets[tile]
        count = tif.pages.first.databytecounts[tile]
    data = bytearray(target.read_bytes())
    if how == "garbage":
        data[offset : offset + count] = (
            np.random.default_rng(0).integers(0, 256, count, np.uint8).tobytes()
        )
    elif how == "zeroed_tail":  # the second half zeroed, as a partly written file looks
        data[offset + count // 2 : offset + count] = bytes(count - count // 2)
    else:  # zeroed inside, the end-of-image marker intact: libjpeg only warns
        data[offset + count // 2 : offset + count - 2] = bytes(count - count // 2 - 2)
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("how", ["garbage", "zeroed_tail", "zeroed_inside"])
def test_corrupt_tile_fails_on_read_naming_the_tile(tmp_path: Path, how: str, real_slide) -> None:
    path = _corrupt_tile(
        real_slide, tmp_path, tile=5, how=how
    )  # row 0, column 5 of a 10-column grid
    slide = wa.open(path, chunks=240)  # opening reads headers only: no error yet
    image = slide.image(0)
    assert image[:240, :240].values.shape == (240, 240, 3)  # other tiles still read
    with pytest.raises(wa.CorruptTileError) as info:
        image[:240, 1200:1440].to_numpy()
    message = str(info.value)
    assert str(path) in message
    assert "row 0, column 5 of level 0" in message


def test_corrupt_ndpi_restart_interval_is_not_decoded_silently(damaged_ndpi) -> None:
    # libjpeg decodes zeroed entropy data without complaint; the restart marker that must end
    # every NDPI "tile" is missing, which wsiarray (like OpenSlide) checks
    path = damaged_ndpi(level=3, interval=0)
    slide = wa.open(path)
    assert slide.read(0, 8, 496, 8, level=3).shape == (8, 496, 3)  # the next interval reads
    with pytest.raises(wa.CorruptTileError, match="row 0, column 0 of level 3"):
        slide.read(0, 0, 496, 8, level=3)


def test_corrupt_tile_fails_through_openslide_reader_too(tmp_path: Path, real_slide) -> None:
    path = _corrupt_tile(real_slide, tmp_path, tile=5, how="zeroed_tail")
    slide = wa.open(path, reader="openslide")
    with pytest.raises(wa.CorruptTileError, match=r"pixels y=0:240, x=1200:1440 of level 0"):
        slide.image(0)[:240, 1200:1440].to_numpy()
    # OpenSlide poisons a handle after an error; the reader reopens it, so other tiles still read
    assert slide.image(0)[:240, :240].values.shape == (240, 240, 3)


def test_level_out_of_range(real_slide) -> None:
    slide = wa.open(real_slide(SMALL_SVS))
    with pytest.raises(wa.LevelError, match=r"has 1 level\(s\) \(0..0\)"):
        slide.image(3)


def test_associated_images_read_concurrently_are_right(sample_svs: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    slide = wa.open(sample_svs)
    images = slide.associated
    names = [name for name in images for _ in range(30)]
    expected = {name: image.values for name, image in images.items()}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda name: images[name].values, names))
    for name, image in zip(names, results, strict=True):
        np.testing.assert_array_equal(image, expected[name])
