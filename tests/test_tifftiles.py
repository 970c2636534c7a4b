"""The TIFF tile reader: every decode path gives tifffile's pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.conftest import real_slide
from wsiarray.sources._tifftiles import ADOBE_RGB, SOI, LevelTiles
from wsiarray.synthetic import write_aperio_svs


def _tiles(path: Path) -> tuple[LevelTiles, tifffile.TiffPageSeries]:
    series = tifffile.TiffFile(path).series[0].levels[0]
    return LevelTiles(path, 0, series, fill=255), series


def _assert_reads_like_tifffile(tiles: LevelTiles, series: tifffile.TiffPageSeries) -> None:
    height, width = tiles.shape
    expected = series.asarray().reshape(height, width, -1)  # YX or YXS
    np.testing.assert_array_equal(tiles.read(0, height, 0, width), expected)
    # a block that starts and ends inside tiles
    y0, x0 = tiles.tile[0] // 3, tiles.tile[1] // 2
    y1, x1 = min(height, y0 + 2 * tiles.tile[0] + 7), min(width, x0 + tiles.tile[1] + 11)
    np.testing.assert_array_equal(tiles.read(y0, y1, x0, x1), expected[y0:y1, x0:x1])


@pytest.mark.parametrize(
    ("relative", "components"),
    [
        ("aperio/CMU-1-Small-Region.svs", "RGB"),  # Aperio: JPEG of untransformed R, G, B
        ("ome-tiff/OS-2-ndpi.ome.tif", "YCbCr"),  # JFIF
    ],
)
def test_real_rgb_jpeg_tiles_decode_as_rgbx(relative: str, components: str) -> None:
    tiles, series = _tiles(real_slide(relative))
    header = tiles._planes[0].rgbx_header
    assert header is not None
    assert header.startswith(SOI)
    assert (ADOBE_RGB in header) == (components == "RGB")
    _assert_reads_like_tifffile(tiles, series)


def test_synthetic_ycbcr_420_tiles_decode_as_rgbx(tmp_path: Path) -> None:
    path = tmp_path / "odd.svs"
    write_aperio_svs(path, size=(1000, 1333), tile=240, downsamples=(1, 4), quality=80)
    tiles, series = _tiles(path)
    assert tiles._planes[0].rgbx_header is not None
    _assert_reads_like_tifffile(tiles, series)


def test_grayscale_jpeg_tiles_decode_with_imagecodecs(tmp_path: Path) -> None:
    path = tmp_path / "gray.tif"
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (500, 700), dtype=np.uint8)
    tifffile.imwrite(path, image, tile=(256, 256), compression="jpeg")
    tiles, series = _tiles(path)
    assert tiles._planes[0].rgbx_header is None
    assert tiles._jpeg is not None
    _assert_reads_like_tifffile(tiles, series)
