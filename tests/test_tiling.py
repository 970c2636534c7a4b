"""Tile grids as slicing: geometry, metadata, the lazy tile stack and parallel maps."""

from __future__ import annotations

import numpy as np
import pytest

import wsiarray as wa
from wsiarray.tiling import axis_tiles

SVS = "aperio/CMU-1-Small-Region.svs"  # 2220 x 2967 at 20x
NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"


@pytest.mark.parametrize(
    ("args", "expected_widths"),
    [
        ((0, 8, 5, 4, False), [5, 5, 5, 5]),  # large_image's docstring example
        ((0, 8, 5, 4, True), [3, 4, 5, 5, 5, 5, 4, 3]),
        (
            (0, 5000, 512, 64, False),
            [512] * 11 + [72],
        ),  # 12 columns, the last 72 px (semantics page)
        ((100, 1100, 300, 0, False), [300, 300, 300, 100]),
    ],
)
def test_axis_tiles(args, expected_widths) -> None:
    start, stop, size, overlap, edges = args
    spans = axis_tiles(start, stop, size, overlap, edges=edges)
    assert [b - a for a, b in spans] == expected_widths
    assert spans[0][0] == start
    assert spans[-1][1] == stop


def test_grid_geometry_and_tile_metadata(real_slide) -> None:
    slide = wa.open(real_slide(SVS))
    grid = wa.TileGrid(slide, 512, 64)
    assert grid.shape == (7, 5)
    assert len(grid) == 35
    tile = grid[1, 2]
    assert (tile.y, tile.x, tile.height, tile.width) == (448, 896, 512, 512)
    assert tile.overlap == {"top": 64, "bottom": 64, "left": 64, "right": 64}
    assert grid[0, 0].overlap["left"] == grid[0, 0].overlap["top"] == 0
    assert tile.magnification == 20.0
    np.testing.assert_array_equal(tile.values, slide.image(0)[448:960, 896:1408].to_numpy())
    assert [t.index for t in grid][:3] == [(0, 0), (0, 1), (0, 2)]  # row-major


def test_grid_at_a_magnification_over_a_region_in_mm(real_slide) -> None:
    slide = wa.open(real_slide(NDPI))
    grid = wa.TileGrid(
        slide,
        256,
        region={"left": 0.1, "top": 0.2, "width": 0.5, "height": 0.4},
        units="mm",
        magnification=10,
    )
    level2 = slide.image(2)
    tile = grid[0, 0]
    assert tile.downsample == 4.0
    assert tile.x == int(np.floor(0.1 / (4 * slide.mm_x)))
    np.testing.assert_array_equal(
        tile.values, level2[tile.y : tile.y + 256, tile.x : tile.x + 256].to_numpy()
    )
    assert tile.base[1] == tile.x * 4


@pytest.mark.parametrize("edges", [False, True])
def test_to_dataarray_equals_the_tiles(edges: bool, real_slide) -> None:
    slide = wa.open(real_slide(SVS), chunks=1000)
    grid = wa.TileGrid(slide, 300, 40, edges=edges)
    stack = grid.to_dataarray()
    assert stack.dims == ("tile_y", "tile_x", "y", "x", "c")
    assert stack.shape[:2] == grid.shape
    for index in [(0, 0), (1, 2), (grid.shape[0] - 1, grid.shape[1] - 1)]:
        tile = grid[index]
        block = stack[index].to_numpy()
        # with edges, the first row and column are shifted by -overlap/2: padding comes first
        top = 20 if edges and index[0] == 0 else 0
        left = 20 if edges and index[1] == 0 else 0
        np.testing.assert_array_equal(
            block[top : top + tile.height, left : left + tile.width], tile.values
        )
    last = grid[grid.shape[0] - 1, grid.shape[1] - 1]
    assert (stack[-1, -1].to_numpy()[last.height :] == 255).all()  # padded with the background
    np.testing.assert_allclose(
        stack.tile_x.values[0], (grid.columns[0][0] + grid.columns[0][1]) / 2 * slide.mm_x
    )


def test_to_dataarray_drop_keeps_full_tiles_only(real_slide) -> None:
    grid = wa.TileGrid(wa.open(real_slide(SVS)), 512)
    stack = grid.to_dataarray(ragged="drop")
    assert stack.shape[:2] == (5, 4)  # 2967 // 512 rows, 2220 // 512 columns


@pytest.mark.parametrize("edges", [False, True])
def test_map_runs_one_task_per_chunk_of_tiles_and_equals_a_loop(edges: bool, real_slide) -> None:
    grid = wa.TileGrid(wa.open(real_slide(SVS)), 256, 32, edges=edges)
    means = grid.map(lambda tile: tile.reshape(-1, 3).mean(axis=0))
    assert means.dims == ("tile_y", "tile_x", "feature")
    assert means.data.npartitions < len(grid) / 10
    values = means.compute().values
    # by default each tile is exactly its own pixels, cropped at the slide's edges
    loop = np.array([[grid[ty, tx].values.reshape(-1, 3).mean(axis=0) for tx in range(
        grid.shape[1])] for ty in range(grid.shape[0])])  # fmt: skip
    np.testing.assert_allclose(values, loop)
    sizes = grid.map(lambda tile: np.array(tile.shape[:2])).compute().values
    assert sizes[-1, -1].tolist() == [grid[-1, -1].height, grid[-1, -1].width]
    assert sizes[-1, -1].tolist() != [256, 256]  # the corner tile is cropped
    # ragged="pad" sees the padded windows of to_dataarray()
    stack = grid.to_dataarray().to_numpy()
    padded = grid.map(lambda tile: tile.reshape(-1, 3).mean(axis=0), ragged="pad").compute()
    np.testing.assert_allclose(padded.values, stack.reshape(*stack.shape[:2], -1, 3).mean(axis=2))
    scalar = grid.map(lambda tile: float(tile.std()))
    assert scalar.dims == ("tile_y", "tile_x")


def test_bad_grids(real_slide) -> None:
    slide = wa.open(real_slide(SVS))
    with pytest.raises(wa.OptionError, match="smaller than the tile size"):
        wa.TileGrid(slide, 100, 100)
    with pytest.raises(wa.RegionError, match="outside the slide"):
        wa.TileGrid(slide, 100, region={"left": 5000, "top": 5000, "width": 10, "height": 10})
    with pytest.raises(wa.OptionError, match="lacks height, left, top, width"):
        wa.TileGrid(slide, 100, region=(0, 0, 500, 500))  # type: ignore[arg-type]
    assert wa.TileGrid(slide, 100, offset=30).rows[:2] == [(30, 130), (130, 230)]


def test_tile_position_in_mm_and_map_keyword_arguments(real_slide) -> None:
    slide = wa.open(real_slide(SVS))
    grid = wa.TileGrid(slide, 512)
    tile = grid[2, 1]
    assert tile.position_mm == pytest.approx((1024 * slide.mm_y, 512 * slide.mm_x))
    scaled = grid.map(lambda t, factor: float(t.mean()) * factor, factor=2.0).compute()
    plain = grid.map(lambda t: float(t.mean())).compute()
    np.testing.assert_allclose(scaled.values, 2 * plain.values)


@pytest.mark.parametrize(
    ("offset", "edges"), [((100, 50), False), ((-100, -50), False), ((30, 30), True)]
)
def test_offset_grids_pad_and_stack_the_right_pixels(
    offset: tuple[int, int], edges: bool, real_slide
) -> None:
    grid = wa.TileGrid(wa.open(real_slide(SVS)), 300, 40, offset=offset, edges=edges)
    stack = grid.to_dataarray().to_numpy()
    (rows, cols) = grid.crops
    for ty, tx in [(0, 0), (1, 2), (grid.shape[0] - 1, grid.shape[1] - 1)]:
        tile = grid[ty, tx]
        (ra, rb), (ca, cb) = rows[ty], cols[tx]
        np.testing.assert_array_equal(stack[ty, tx, ra:rb, ca:cb], tile.values)
    sums = grid.map(lambda tile: tile.astype(np.int64).sum(axis=(0, 1)), ragged="pad").compute()
    np.testing.assert_array_equal(sums.values, stack.astype(np.int64).sum(axis=(2, 3)))


def test_map_tiles_of_an_overlapping_grid_do_not_share_memory(real_slide) -> None:
    grid = wa.TileGrid(wa.open(real_slide(SVS)), 256, 64)

    def subtract_minimum(tile: np.ndarray) -> float:
        tile -= tile.min()  # in place, as a user may
        return float(tile.mean())

    expected = [[subtract_minimum(grid[ty, tx].values) for tx in range(grid.shape[1])]
                for ty in range(grid.shape[0])]  # fmt: skip
    np.testing.assert_array_equal(grid.map(subtract_minimum).compute().values, expected)


def test_map_dtype_comes_from_a_real_tile(real_slide) -> None:
    grid = wa.TileGrid(wa.open(real_slide(SVS)), 256)
    result = grid.map(lambda t: 0 if not t.any() else t.mean() / 255)  # 0 only on a black tile
    assert result.dtype == np.float64
    assert 0.5 < float(result.mean()) < 1


def test_bad_ragged_and_empty_grids_are_refused(real_slide) -> None:
    slide = wa.open(real_slide(SVS))
    with pytest.raises(wa.OptionError, match="ragged='crpo'"):
        wa.TileGrid(slide, 256).map(np.mean, ragged="crpo")  # type: ignore[arg-type]
    with pytest.raises(wa.RegionError, match="no tile of the grid"):
        wa.TileGrid(
            slide,
            300,
            offset=(5000, 0),
            region={"left": 0, "top": 0, "width": 1000, "height": 1000},
        )


def test_a_grid_with_no_kept_tile_samples_a_full_background_tile(sample_svs) -> None:
    # the function runs once on a background tile to learn the result's length; it must be
    # a full-size tile, not an empty array
    slide = wa.open(sample_svs)
    mask = wa.tissue_mask(slide)
    grid = wa.TileGrid(slide, 128, mask=mask.where(False, False).astype(bool))
    shapes = []

    def record(tile):
        shapes.append(tile.shape)
        return tile.reshape(-1, tile.shape[-1]).mean(axis=0)

    result = grid.map(record)
    assert shapes == [(128, 128, 3)]
    assert np.isnan(result.values).all()
