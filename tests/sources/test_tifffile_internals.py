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
)


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
