"""The OpenSlide reader: RGBA composited over the background, stored pixels at any position."""

from __future__ import annotations

import numpy as np
import pytest

import wsiarray as wa
from wsiarray.sources.openslide_ import composite_over


def test_composite_over_background() -> None:
    rgba = np.array([[[10, 20, 30, 255], [0, 0, 0, 0], [200, 100, 50, 128]]], dtype=np.uint8)
    rgb = composite_over(rgba, (255, 250, 240))
    np.testing.assert_array_equal(rgb[0, 0], [10, 20, 30])  # opaque: unchanged
    np.testing.assert_array_equal(rgb[0, 1], [255, 250, 240])  # transparent: background
    expected = np.round((np.array([200, 100, 50]) * 128 + np.array([255, 250, 240]) * 127) / 255)
    np.testing.assert_array_equal(rgb[0, 2], expected)
    assert rgb.dtype == np.uint8
    assert rgb.shape == (1, 3, 3)


TCGA = "aperio/tcga-cr-7395-01a-01-ts1.svs"  # level 1: downsample 2.0005 (odd width)


def test_stored_pixels_off_the_origin_of_a_fractional_level(real_slide) -> None:
    # OpenSlide interpolates such a level at any position but its origin (up to 73 off here
    # before): reads start at the origin, and agree with tifffile's own decode
    import openslide

    path = real_slide(TCGA)
    slide = wa.open(path, reader="openslide", chunks=512)
    assert slide.level_downsamples[1][1] != 2.0
    reference = np.asarray(openslide.OpenSlide(path).read_region((0, 0), 1, (2221, 1783)))
    np.testing.assert_array_equal(
        slide.read(384, 384, 256, 256, level=1), reference[384:640, 384:640, :3]
    )
    np.testing.assert_array_equal(slide.image(1).values, reference[..., :3])
    np.testing.assert_array_equal(
        slide.read(1000, 700, 300, 200, level=1), wa.open(path).read(1000, 700, 300, 200, level=1)
    )


def test_a_fractional_level_too_large_to_read_from_its_origin_is_refused(
    real_slide, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsiarray.sources import openslide_

    monkeypatch.setattr(openslide_, "ORIGIN_READ_PIXELS", 100_000)
    slide = wa.open(real_slide(TCGA), reader="openslide")
    assert slide.read(0, 0, 64, 64, level=1).shape == (64, 64, 3)  # at the origin: exact
    assert slide.read(500, 500, 64, 64, level=0).shape == (64, 64, 3)  # whole downsample
    with pytest.raises(wa.PixelBudgetError, match=r"interpolates level 1 .*reader='tifffile'"):
        slide.read(500, 500, 64, 64, level=1)


def test_a_tile_larger_than_its_level_is_refused_at_open(real_slide, tmp_path) -> None:
    # fuzz A7 (dicom_huge_size): Rows and Columns -> 65535 made OpenSlide allocate a ~17 GB
    # frame buffer at the first read; glib aborted the process under a memory limit
    source = real_slide("dicom/multiframe_camelyon_challenge_image.dcm")
    data = bytearray(source.read_bytes())
    for tag in (b"\x28\x00\x10\x00US\x02\x00", b"\x28\x00\x11\x00US\x02\x00"):  # Rows, Columns
        at = data.index(tag) + len(tag)
        data[at : at + 2] = b"\xff\xff"
    path = tmp_path / source.name
    path.write_bytes(bytes(data))
    with pytest.raises(wa.UnsupportedFormatError, match=r"level 0 is 1152 x 700 .* 65535 x 65535"):
        wa.open(path, reader="openslide")


def test_an_associated_image_openslide_cannot_decode_is_a_corrupt_tile_error(
    real_slide, tmp_path
) -> None:
    # fuzz D (tag_count): the macro's StripOffsets count one short; OpenSlideError came out bare
    import struct

    import tifffile

    source = real_slide("aperio/CMU-1-Small-Region.svs")
    with tifffile.TiffFile(source) as tif:
        tag = tif.pages[3].tags["StripOffsets"]
        at, count = tag.offset, tag.count
    data = bytearray(source.read_bytes())
    data[at + 4 : at + 8] = struct.pack("<I", count - 1)
    path = tmp_path / source.name
    path.write_bytes(bytes(data))
    slide = wa.open(path, reader="openslide")
    with pytest.raises(wa.CorruptTileError, match=r"associated image 'macro'") as error:
        slide.associated["macro"].values  # noqa: B018 - the read
    assert str(path) in str(error.value)
    # the handle is replaced after OpenSlide's error: the slide still reads
    assert np.asarray(slide.read(level=0, left=0, top=0, width=64, height=64)).shape[:2] == (64, 64)
