"""The tifffile internals wsiarray relies on: a tifffile release that changes them fails here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

from wsiarray._jpeg_markers import SOI, segments
from wsiarray.sources._tifffile_internals import (
    JCS_RGB,
    can_decode,
    decode_tile,
    jpeg_colorspaces,
    ndpi_jpeg_header,
    tile_table,
)

#: Every real TIFF-family slide of the shared test data.
REAL_TIFFS = [
    "aperio/CMU-1-Small-Region.svs",
    "aperio/tcga-cr-7395-01a-01-ts1.svs",  # JPEG 2000
    "hamamatsu/test3-DAPI-2-(387).ndpi",
    "hamamatsu/test3-TRITC 2 (560).ndpi",
    "ome-tiff/OS-2-ndpi.ome.tif",  # big-endian
    "ome-tiff/test_pyramid.ome.tif",  # big-endian, levels in SubIFDs
    "qptiff/small_vectra.qptiff",  # strips, a page per channel
]


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        # Aperio stores untransformed R, G, B components: decoded as RGB to RGB
        ("aperio/CMU-1-Small-Region.svs", (JCS_RGB, JCS_RGB)),
        # a JFIF stream (QuPath / Bio-Formats): YCbCr, libjpeg's default, to RGB
        ("ome-tiff/OS-2-ndpi.ome.tif", (None, JCS_RGB)),
    ],
)
def test_jpeg_colorspaces_of_real_pages(
    relative: str, expected: tuple[int | None, int], real_slide: Callable[[str], Path]
) -> None:
    with tifffile.TiffFile(real_slide(relative)) as tif:
        assert jpeg_colorspaces(tif.pages.first) == expected


def test_decode_tile_pads_an_edge_tile_stored_cropped(tmp_path: Path) -> None:
    # some writers encode the right and bottom edge tiles at the size of the image's rest
    height, width, tile = 300, 280, 256
    image = np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)
    tiles = [
        imagecodecs.jpeg_encode(np.ascontiguousarray(image[y : y + tile, x : x + tile]), level=95)
        for y in range(0, height, tile)
        for x in range(0, width, tile)
    ]
    path = tmp_path / "cropped_edges.tif"
    tifffile.imwrite(path, iter(tiles), shape=image.shape, dtype=np.uint8, tile=(tile, tile),
                     compression=7, photometric="ycbcr", subsampling=(1, 1))  # fmt: skip
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        corner = decode_tile(page, tiles[3], 3, page.jpegtables)
    assert corner.shape == (tile, tile, 3)  # padded to the full tile
    expected = imagecodecs.jpeg_decode(tiles[3])
    np.testing.assert_array_equal(corner[: height - tile, : width - tile], expected)


def test_can_decode_knows_the_installed_codecs(real_slide: Callable[[str], Path]) -> None:
    with tifffile.TiffFile(real_slide("aperio/tcga-cr-7395-01a-01-ts1.svs")) as tif:
        assert can_decode(tif.pages.first)  # JPEG 2000 (33005), through imagecodecs
    assert 7 in tifffile.TIFF.DECOMPRESSORS
    assert 52479 not in tifffile.TIFF.DECOMPRESSORS


def test_ndpi_jpeg_header_is_an_interval_sized_frame(real_slide: Callable[[str], Path]) -> None:
    with tifffile.TiffFile(real_slide("hamamatsu/test3-DAPI-2-(387).ndpi")) as tif:
        header = ndpi_jpeg_header(tif.series[0].levels[0].keyframe)
    assert header is not None
    assert header.startswith(SOI)
    found = {segment[1]: segment for segment in segments(header)}
    assert int.from_bytes(found[0xDD][4:6], "big") == 3968 // 8  # a restart interval a row
    assert found[0xC0][5:9] == (8).to_bytes(2, "big") + (3968).to_bytes(2, "big")  # 8 x 3968
    with tifffile.TiffFile(real_slide("aperio/CMU-1-Small-Region.svs")) as tif:
        assert ndpi_jpeg_header(tif.pages.first) is None


def _all_pages(tif: tifffile.TiffFile) -> list[tifffile.TiffPage]:
    """The pages of the IFD chain and of their SubIFDs."""
    pages = list(tif.pages)
    for page in list(pages):
        if page.subifds:
            pages += list(tifffile.TiffPages(page))
    return pages


def _assert_tifffiles_table(page: tifffile.TiffPage | tifffile.TiffFrame) -> None:
    offsets, counts = tile_table(page)
    assert offsets.dtype == counts.dtype == np.uint64
    np.testing.assert_array_equal(offsets, np.array(page.dataoffsets, dtype=np.uint64))
    np.testing.assert_array_equal(counts, np.array(page.databytecounts, dtype=np.uint64))


@pytest.mark.parametrize("relative", REAL_TIFFS)
def test_tile_table_is_tifffiles_on_every_real_slide(
    relative: str, real_slide: Callable[[str], Path]
) -> None:
    with tifffile.TiffFile(real_slide(relative)) as tif:
        pages = _all_pages(tif)
        for page in pages:
            _assert_tifffiles_table(page)
    assert pages


@pytest.mark.parametrize(
    ("relative", "index"),
    [
        ("aperio/CMU-1-Small-Region.svs", 0),  # TileOffsets
        ("qptiff/small_vectra.qptiff", 1),  # StripOffsets
        ("ome-tiff/OS-2-ndpi.ome.tif", 0),  # big-endian
        ("hamamatsu/test3-DAPI-2-(387).ndpi", 0),  # restart intervals from McuStarts
    ],
)
def test_tile_table_reads_the_file_not_tifffiles_tuples(
    relative: str, index: int, real_slide: Callable[[str], Path]
) -> None:
    # the point of tile_table: the 695k-entry tuples of a 200k² level are never converted.
    # Blanked tuples (of the same length, first offset and last count, which NDPI's derivation
    # starts from) show the values come from the file
    with tifffile.TiffFile(real_slide(relative)) as tif:
        page = tif.pages[index]
        offsets, counts = list(page.dataoffsets), list(page.databytecounts)
        assert len(offsets) > 2
        page.dataoffsets = (offsets[0], *[0] * (len(offsets) - 1))
        page.databytecounts = (*[0] * (len(counts) - 1), counts[-1])
        found_offsets, found_counts = tile_table(page)
    np.testing.assert_array_equal(found_offsets, offsets)
    np.testing.assert_array_equal(found_counts, counts)


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize(
    ("bigtiff", "compression", "tile", "types"),
    [
        (False, None, 32, (4, 3)),  # LONG offsets, SHORT counts
        (
            False,
            "zlib",
            256,
            (4, 4),
        ),  # LONG counts: tifffile allows for compressed tiles 10x larger
        (True, None, 32, (16, 3)),  # BigTIFF: LONG8 offsets
    ],
)
def test_tile_table_reads_every_table_type(
    tmp_path: Path,
    byteorder: str,
    bigtiff: bool,
    compression: str | None,
    tile: int,
    types: tuple[int, int],
) -> None:
    path = tmp_path / "tiles.tif"
    image = np.random.default_rng(0).integers(0, 255, (600, 400), dtype=np.uint8)
    tifffile.imwrite(path, image, tile=(tile, tile), bigtiff=bigtiff, byteorder=byteorder,
                     compression=compression)  # fmt: skip
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert (page.tags[324].dtype, page.tags[325].dtype) == types
        _assert_tifffiles_table(page)
        assert len(tile_table(page)[0]) == -(-600 // tile) * -(-400 // tile)


def test_tile_table_of_frames_and_cut_strips(tmp_path: Path) -> None:
    # what tifffile changes or keeps no tags for comes from its values: a TiffFrame, and
    # StripOffsets longer than the image's strips (tifffile cuts them to the image)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((3, 64, 64), np.uint8), tile=(16, 16), photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        tif.pages.useframes = True
        frame = tif.pages[2]
        assert isinstance(frame, tifffile.TiffFrame)
        _assert_tifffiles_table(frame)
        assert len(tile_table(frame)[0]) == 16

    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), rowsperstrip=8)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        rows = tif.pages.first.tags[278]
        start = rows.offset + 8  # RowsPerStrip's value, in its entry
        assert int.from_bytes(data[start : start + 2], "little") == 8
    data[start : start + 2] = (16).to_bytes(2, "little")  # 8 strips listed, 4 in the image
    path.write_bytes(bytes(data))
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.tags[273].count == 8
        _assert_tifffiles_table(page)
        assert len(tile_table(page)[0]) == 4


def test_tile_table_of_an_ndpi_beyond_4_gib(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # NDPI keeps the high 32 bits of each directory entry's value after the directory: here
    # level 0's strip moves 4 GiB further (a sparse file) and its entry's high bits say so
    source = real_slide("hamamatsu/test3-DAPI-2-(387).ndpi")
    with tifffile.TiffFile(source) as tif:
        page = tif.pages.first
        codes = [tag.code for tag in page.tags]
        strip, count = page.tags[273].value[0], page.tags[279].value[0]
        high_bits = page.offset + 2 + 12 * len(codes) + 8 + 4 * codes.index(273)
        expected = np.array(page.dataoffsets, dtype=np.uint64) + np.uint64(2**32)
        counts = np.array(page.databytecounts, dtype=np.uint64)
    data = bytearray(source.read_bytes())
    assert data[high_bits : high_bits + 4] == bytes(4)
    data[high_bits : high_bits + 4] = (1).to_bytes(4, "little")
    path = tmp_path / "far.ndpi"  # tifffile reads NDPI by its name
    with path.open("wb") as file:
        file.write(data)
        file.seek(2**32 + strip)
        file.write(data[strip : strip + count])
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        _assert_tifffiles_table(page)
        offsets, found_counts = tile_table(page)
    np.testing.assert_array_equal(offsets, expected)
    np.testing.assert_array_equal(found_counts, counts)
