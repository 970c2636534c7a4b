"""The synthetic slide generator writes what a scanner writes; wsiarray reads it exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

import wsiarray as wa
from wsiarray.synthetic import write_aperio_svs


@pytest.fixture(scope="module")
def odd_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Odd size, 256-px tiles, non-power-of-two downsamples (3, 7)."""
    path = tmp_path_factory.mktemp("svs") / "odd.svs"
    return write_aperio_svs(path, size=(1001, 1337), tile=256, downsamples=(1, 3, 7), seed=3)


def test_sample_slide_is_an_aperio_file_openslide_recognises(sample_svs: Path) -> None:
    osr = openslide.OpenSlide(sample_svs)
    assert osr.properties["openslide.vendor"] == "aperio"
    assert osr.properties["openslide.mpp-x"] == "0.499"
    assert osr.properties["openslide.objective-power"] == "20"
    assert osr.level_dimensions == ((6000, 4000), (1500, 1000), (375, 250))
    assert sorted(osr.associated_images) == ["label", "macro", "thumbnail"]


def test_sample_slide_tiles_share_jpeg_tables(sample_svs: Path) -> None:
    with tifffile.TiffFile(sample_svs) as tif:
        page = tif.pages.first
        assert page.compression == 7
        assert page.photometric == 6
        assert page.tags["YCbCrSubSampling"].value == (2, 2)
        assert page.jpegtables is not None
        assert b"\xff\xdb" in page.jpegtables
        tif.filehandle.seek(page.dataoffsets[0])
        first_tile = tif.filehandle.read(page.databytecounts[0])
        assert first_tile.startswith(b"\xff\xd8")
        assert first_tile.endswith(b"\xff\xd9")
        assert b"\xff\xdb" not in first_tile[:600]  # abbreviated: no tables of its own
        assert (page.tilewidth, page.tilelength) == (240, 240)


def test_sample_slide_content_looks_like_tissue(sample_svs: Path) -> None:
    thumb = wa.open(sample_svs).thumbnail(256).astype(float)
    background = (thumb.min(axis=2) > 225).mean()
    assert 0.2 < background < 0.9  # glass and tissue both present
    tissue = thumb[thumb.min(axis=2) < 225]
    assert (tissue[:, 0] > tissue[:, 1]).mean() > 0.8  # pink-purple: more red than green
    assert thumb.std() > 10


def test_sample_pixels_equal_openslide_on_every_level(sample_svs: Path) -> None:
    slide, osr = wa.open(sample_svs), openslide.OpenSlide(sample_svs)
    for level in range(slide.level_count):
        height, width = slide.level_shapes[level]
        y0, x0 = height // 3, width // 3
        h, w = min(200, height - y0), min(300, width - x0)
        ours = slide.image(level)[y0 : y0 + h, x0 : x0 + w].to_numpy()
        ds = int(osr.level_downsamples[level])
        theirs = np.asarray(osr.read_region((x0 * ds, y0 * ds), level, (w, h)))[..., :3]
        np.testing.assert_array_equal(ours, theirs)


def test_odd_geometry(odd_svs: Path) -> None:
    slide = wa.open(odd_svs)
    assert slide.level_shapes == ((1001, 1337), (333, 445), (143, 191))
    assert slide.tree["level1"].attrs["downsample_x"] == 1337 / 445
    assert slide.tree["level0"].attrs["tile_width"] == 256
    osr = openslide.OpenSlide(odd_svs)
    assert osr.level_count == 3
    edge = slide.image(0)[900:, 1200:].to_numpy()  # the bottom-right partial tile
    np.testing.assert_array_equal(
        edge, np.asarray(osr.read_region((1200, 900), 0, (137, 101)))[..., :3]
    )


@pytest.mark.parametrize("compression", ["lzw", "deflate", "none", "jpeg2000"])
def test_other_compressions(tmp_path: Path, compression: str) -> None:
    path = write_aperio_svs(
        tmp_path / f"{compression}.svs",
        size=(600, 500),
        downsamples=(1, 2),
        compression=compression,
        associated=False,
    )
    slide = wa.open(path)
    assert slide.level_shapes == ((600, 500), (300, 250))
    with tifffile.TiffFile(path) as tif:
        expected = tif.series[0].levels[1].asarray()
    np.testing.assert_array_equal(slide.image(1).to_numpy(), expected)


def test_missing_mpp_and_magnification(tmp_path: Path) -> None:
    path = write_aperio_svs(
        tmp_path / "nompp.svs",
        size=(500, 500),
        downsamples=(1,),
        mpp=None,
        magnification=None,
        associated=False,
    )
    slide = wa.open(path)
    assert slide.mm_x is None
    assert slide.magnification is None
    assert slide.image(0).x.attrs["units"] == "base_pixels"


def test_writing_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "x.svs"
    with pytest.raises(ValueError, match="must start with 1"):
        write_aperio_svs(path, downsamples=(2, 4))
    assert list(tmp_path.iterdir()) == []  # no partial file left behind
