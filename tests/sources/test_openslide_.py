"""The OpenSlide reader: RGBA composited over the background."""

from __future__ import annotations

import numpy as np

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
