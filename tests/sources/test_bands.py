"""Band names: grey plus alpha is (L, A) in every reader, not C0, C1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import wsiarray as wa


@pytest.mark.parametrize(
    ("extrasamples", "names"),
    [("unassalpha", ["L", "A"]), ("assocalpha", ["L", "A"]), ("unspecified", ["C0", "C1"])],
)
def test_tiff_grey_alpha(tmp_path: Path, extrasamples: str, names: list[str]) -> None:
    path = tmp_path / "la.tif"
    pixels = np.random.default_rng(1).integers(0, 256, (64, 96, 2), dtype=np.uint8)
    tifffile.imwrite(
        path,
        pixels,
        photometric="minisblack",
        planarconfig="contig",
        extrasamples=[extrasamples],
        tile=(32, 32),
    )
    slide = wa.open(path)
    assert list(slide.tree["level0"].image.c.values) == names
    np.testing.assert_array_equal(slide.read(5, 7, 40, 30), pixels[7:37, 5:45])


def test_png_grey_alpha(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    pixels = np.random.default_rng(2).integers(0, 256, (20, 30, 2), dtype=np.uint8)
    Image.fromarray(pixels, mode="LA").save(path)
    slide = wa.open(path)
    assert list(slide.tree["level0"].image.c.values) == ["L", "A"]
    np.testing.assert_array_equal(slide.read(0, 0, 30, 20), pixels)
