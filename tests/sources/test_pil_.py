"""The Pillow reader: plain images (PNG, JPEG ...) as one-level slides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import wsiarray as wa


@pytest.mark.parametrize(("mode", "bands"), [("RGB", 3), ("RGBA", 4), ("L", 1)])
def test_plain_png_is_a_one_level_slide(tmp_path: Path, mode: str, bands: int, pattern) -> None:
    data = pattern(1500, 1100, bands)
    path = tmp_path / f"plain-{mode}.png"
    Image.fromarray(data[..., 0] if bands == 1 else data, mode).save(path)
    slide = wa.open(path)
    assert slide.metadata.reader == "pil"
    assert slide.metadata.format == "png"
    assert slide.level_count == 1
    assert slide.mm_x is None
    np.testing.assert_array_equal(slide.image(0).values, data)
    np.testing.assert_array_equal(slide.image(0)[1000:, 1050:].values, data[1000:, 1050:])


def test_plain_jpeg(tmp_path: Path, pattern) -> None:
    data = pattern(300, 500, 3)
    path = tmp_path / "photo.jpg"
    Image.fromarray(data).save(path, quality=95)
    slide = wa.open(path)
    with Image.open(path) as image:
        np.testing.assert_array_equal(slide.image(0).values, np.asarray(image.convert("RGB")))


def test_truncated_png_fails_on_read(tmp_path: Path, pattern) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(pattern(500, 500, 3)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    slide = wa.open(path)
    with pytest.raises(wa.CorruptTileError, match="cannot be decoded"):
        slide.image(0).to_numpy()


def test_pixel_budget_for_plain_images(tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(png)
    with pytest.raises(wa.PixelBudgetError, match="60,000 pixels, more than the budget of 1,000"):
        wa.open(png, reader_options={"max_pixels": 1000})
    assert wa.open(png).shape == (200, 300)
