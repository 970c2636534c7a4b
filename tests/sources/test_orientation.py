"""TIFF Orientation (tag 274): every value shown upright, against Pillow's ``exif_transpose``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

import wsiarray as wa
from wsiarray.sources import open_source

ORIENTATION_TAG = 274
SHORT = 3
#: a non-square level 0 whose sides are not whole tiles, so flips change which tiles a window reads
HEIGHT, WIDTH, TILE = 300, 520, 64


def _write(path: Path, orientation: int) -> np.ndarray:
    """A tiled two-level TIFF (SubIFD pyramid) stored with ``orientation``; its stored level 0."""
    rng = np.random.default_rng(orientation)
    base = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    tag = [(ORIENTATION_TAG, SHORT, 1, orientation, True)]
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            base,
            tile=(TILE, TILE),
            photometric="rgb",
            subifds=1,
            resolution=(1e4 / 0.5, 1e4 / 0.25),  # 0.5 µm wide, 0.25 µm tall pixels, per cm
            resolutionunit="CENTIMETER",
            extratags=tag,
        )
        tif.write(base[::2, ::2], tile=(TILE, TILE), photometric="rgb", subfiletype=1)
    return base


@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_orientation_reads_as_pillow_shows_it(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / f"o{orientation}.tif"
    stored = _write(path, orientation)
    # two independent references: Pillow's decode of the file (libtiff turns tiled pages
    # upright as it reads them) and exif_transpose of the stored pixels carrying the tag
    with Image.open(path) as im:
        expected = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(
        expected, np.asarray(ImageOps.exif_transpose(_exif_image(stored, orientation)))
    )

    slide = wa.open(path)
    assert slide.level_shapes[0] == expected.shape[:2]
    np.testing.assert_array_equal(slide.read(0, 0, expected.shape[1], expected.shape[0]), expected)
    # windows off the origin that cross tile borders, on both levels
    for level, (y, x, h, w) in [(0, (37, 61, 150, 201)), (1, (5, 9, 100, 70))]:
        reference = np.asarray(
            ImageOps.exif_transpose(_exif_image(stored[:: 2**level, :: 2**level], orientation))
        )
        np.testing.assert_array_equal(
            slide.read(x, y, w, h, level=level), reference[y : y + h, x : x + w]
        )
    # whole levels through dask, chunk boundaries off the stored tile grid
    level1 = slide.image(level=1, chunks=64).values
    assert level1.shape[:2] == slide.level_shapes[1]
    np.testing.assert_array_equal(level1[..., :], reference)

    transposed = orientation >= 5
    meta = slide.tree.attrs
    assert (meta["mm_x"], meta["mm_y"]) == pytest.approx(
        (0.00025, 0.0005) if transposed else (0.0005, 0.00025)
    )
    if orientation != 1:
        assert meta["properties"]["tiff.Orientation"] == str(orientation)


def _exif_image(pixels: np.ndarray, orientation: int) -> Image.Image:
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[ORIENTATION_TAG] = orientation
    image.info["exif"] = exif.tobytes()
    return image


def test_upright_sources_report_orientation_one(tmp_path: Path) -> None:
    path = tmp_path / "o6.tif"
    _write(path, 6)
    with open_source(path) as source:
        assert source.metadata.orientation == 1
        assert source.metadata.levels[0].shape == (WIDTH, HEIGHT)
        assert source.metadata.levels[0].tile == (TILE, TILE)


def test_openslide_reader_refuses_a_turned_tiff(tmp_path: Path) -> None:
    # OpenSlide returns each tile as stored: the slide would read turned, tile by tile
    path = tmp_path / "o3.tif"
    _write(path, 3)
    with pytest.raises(wa.UnsupportedFormatError, match=r"Orientation 3.*reader='tifffile'"):
        wa.open(path, reader="openslide")
    upright = tmp_path / "o1.tif"
    _write(upright, 1)
    assert wa.open(upright, reader="openslide").level_shapes[0] == (HEIGHT, WIDTH)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_jpeg_exif_orientation(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / "photo.jpg"
    stored = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    _exif_image(stored, orientation).save(path, exif=_exif_image(stored, orientation).info["exif"])
    with Image.open(path) as im:
        assert im.getexif()[ORIENTATION_TAG] == orientation
        expected = np.asarray(ImageOps.exif_transpose(im))
    slide = wa.open(path)
    assert slide.level_shapes[0] == expected.shape[:2]
    np.testing.assert_array_equal(slide.read(3, 5, 30, 20), expected[5:25, 3:33])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_dask_chunks_read_whole_stored_tiles(
    tmp_path: Path, orientation: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a flipped axis's tile grid starts at the stored last, partial tile: chunk edges must
    # still fall on stored tile edges, or every chunk decodes an extra row and column of tiles
    from wsiarray.sources.tifffile_ import TifffileSource

    path = tmp_path / f"o{orientation}.tif"
    _write(path, orientation)
    windows = []
    read_block = TifffileSource.read_block

    def recording(self, level, y0, y1, x0, x1, /, plane=()):
        windows.append((level, y0, y1, x0, x1))
        return read_block(self, level, y0, y1, x0, x1, plane=plane)

    monkeypatch.setattr(TifffileSource, "read_block", recording)
    slide = wa.open(path)
    slide.image(level=0, chunks=2 * TILE).values  # noqa: B018 - reads every chunk
    assert len(windows) == len(slide.image(level=0, chunks=2 * TILE).data.blocks.ravel())
    for _, y0, y1, x0, x1 in windows:
        assert y0 % TILE == 0, (y0, y1)
        assert x0 % TILE == 0, (x0, x1)
        assert y1 % TILE == 0 or y1 == HEIGHT, (y0, y1)
        assert x1 % TILE == 0 or x1 == WIDTH, (x0, x1)
