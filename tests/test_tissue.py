"""Tissue masks on real and synthetic H&E slides, and grids that skip the glass."""

from __future__ import annotations

import numpy as np
import pytest

import wsiarray as wa
from wsiarray.tissue import otsu_threshold

SVS = "aperio/CMU-1-Small-Region.svs"


def test_otsu_separates_two_populations() -> None:
    rng = np.random.default_rng(0)
    low, high = rng.normal(0.05, 0.02, 5000), rng.normal(0.4, 0.05, 2000)
    cut = otsu_threshold(np.concatenate([low, high]))
    assert 0.09 < cut < 0.3
    assert (low > cut).mean() < 0.01
    assert (high <= cut).mean() < 0.001


def test_mask_on_real_he_slide_follows_the_stain(real_slide) -> None:
    slide = wa.open(real_slide(SVS))
    mask = wa.tissue_mask(slide)
    assert mask.dtype == bool
    assert mask.dims == ("y", "x")
    assert mask.attrs["mm_x"] == pytest.approx(0.008, rel=0.01)
    assert 0.15 < float(mask.mean()) < 0.6  # a strip of skin on glass
    pixels = slide.image(mpp=8).values.astype(float)
    tissue, glass = pixels[mask.values], pixels[~mask.values]
    assert tissue.mean() < glass.mean() - 30  # stained tissue is darker than the glass
    assert (glass.min(axis=1) > 180).mean() > 0.9  # and the glass is bright


def test_mask_on_the_synthetic_sample_finds_its_blobs(sample_svs) -> None:
    slide = wa.open(sample_svs)
    mask = wa.tissue_mask(slide)
    level = slide.image(mpp=8).values.astype(float)
    pink = (level[..., 0] - level[..., 1]) > 25  # eosin: red well above green
    agreement = (mask.values == pink).mean()
    assert agreement > 0.85


def test_mask_without_pixel_size_uses_the_smallest_level(real_slide) -> None:
    slide = wa.open(real_slide("aperio/tcga-cr-7395-01a-01-ts1.svs"))
    with pytest.raises(wa.MissingResolutionError):
        wa.tissue_mask(slide)
    mask = wa.tissue_mask(slide, mpp=None)
    assert mask.shape == slide.level_shapes[-1]


def test_grid_with_a_mask_keeps_tissue_tiles_only(real_slide) -> None:
    slide = wa.open(real_slide(SVS))
    mask = wa.tissue_mask(slide)
    grid = wa.TileGrid(slide, 256, magnification=10, mask=mask, min_tissue=0.5)
    assert 0 < len(grid) < grid.shape[0] * grid.shape[1]
    assert all(grid.tissue[t.index] >= 0.5 for t in grid)
    means = grid.map(lambda tile: tile.reshape(-1, 3).mean(axis=0)).compute()
    assert np.isnan(means.values[~grid.keep]).all()
    assert not np.isnan(means.values[grid.keep]).any()
    # the tissue fraction of a tile agrees with the mask under it
    tile = next(iter(grid))
    top, left, height, width = tile.base
    under = mask.sel(
        y=slice(top * slide.mm_y, (top + height) * slide.mm_y),
        x=slice(left * slide.mm_x, (left + width) * slide.mm_x),
    )
    assert grid.tissue[tile.index] == pytest.approx(float(under.mean()), abs=0.15)
