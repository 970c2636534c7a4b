"""Z-stacks and time series as dimensions: OME-TIFF ``Z``/``T`` read plane by plane.

The files are OME-TIFF pyramids (SubIFD levels) written by tifffile's OME writer; the
reference is tifffile's own decode of each level's whole series.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile

import wsiarray as wa
from wsiarray.sources import source_cache

TILE = 64


def _write_ome(path: Path, data: np.ndarray, axes: str, **metadata: object) -> None:
    """An OME-TIFF with ``data`` as level 0 and a 2x-reduced SubIFD level (tiled)."""
    y, x = axes.index("Y"), axes.index("X")
    reduced = data[(slice(None),) * y + (slice(None, None, 2),)]
    reduced = reduced[(slice(None),) * x + (slice(None, None, 2),)]
    photometric = "rgb" if axes.endswith("S") else "minisblack"
    with tifffile.TiffWriter(path, ome=True) as tif:
        options = {"tile": (TILE, TILE), "photometric": photometric, "compression": "zlib"}
        tif.write(data, subifds=1, metadata={"axes": axes, **metadata}, **options)
        tif.write(reduced, subfiletype=1, **options)


@pytest.fixture(scope="module")
def z_stack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """5 focal planes, 2 channels, 200 x 300 px, 0.5 µm pixels, 2 µm between planes."""
    path = tmp_path_factory.mktemp("planes") / "zstack.ome.tif"
    data = np.random.default_rng(5).integers(0, 4096, (5, 2, 200, 300), dtype=np.uint16)
    _write_ome(
        path,
        data,
        "ZCYX",
        PhysicalSizeX=0.5,
        PhysicalSizeY=0.5,
        PhysicalSizeZ=2.0,
        Channel={"Name": ["DAPI", "FITC"]},
    )
    return path, data


def test_z_stack_is_a_dimension(z_stack: tuple[Path, np.ndarray]) -> None:
    path, _data = z_stack
    slide = wa.open(path)
    assert slide.planes == {"z": pytest.approx((0.0, 0.002, 0.004, 0.006, 0.008))}
    image = slide.tree["level0"].image
    assert image.dims == ("z", "y", "x", "c")
    assert list(image.c.values) == ["DAPI", "FITC"]
    assert image.z.attrs["units"] == "mm"
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        assert series.axes == "ZCYX"
        for level in range(2):
            expected = np.moveaxis(series.levels[level].asarray(), 1, -1)  # z, y, x, c
            stacked = slide.tree[f"level{level}"].image
            np.testing.assert_array_equal(stacked.values, expected)
            # off the origin, across tiles, one plane at a time
            np.testing.assert_array_equal(
                slide.at_plane(z=3).read(37, 21, 100, 70, level=level),
                expected[3, 21:91, 37:137],
            )


def test_methods_read_one_plane(z_stack: tuple[Path, np.ndarray]) -> None:
    path, data = z_stack
    slide = wa.open(path)
    assert slide.plane == {"z": 0}
    first = np.moveaxis(data[0], 0, -1)
    np.testing.assert_array_equal(slide.read(0, 0, 300, 200), first)
    assert slide.image().dims == ("y", "x", "c")
    np.testing.assert_array_equal(slide.image().values, first)
    fourth = slide.at_plane(z=4)
    assert float(fourth.image().z) == pytest.approx(0.008)
    np.testing.assert_array_equal(
        fourth.region(10, 20, 50, 40).values, np.moveaxis(data[4, :, 20:60, 10:60], 0, -1)
    )
    # downsampled reads resample within the plane
    np.testing.assert_array_equal(
        fourth.image(downsample=2).values, np.moveaxis(data[4, :, ::2, ::2], 0, -1)
    )
    # a pickled slide (a dask graph's task) keeps its plane
    assert pickle.loads(pickle.dumps(fourth)).plane == {"z": 4}
    source_cache.clear()
    np.testing.assert_array_equal(fourth.read(0, 0, 8, 8), np.moveaxis(data[4, :, :8, :8], 0, -1))
    with pytest.raises(wa.LevelError, match="z=5 out of range"):
        slide.at_plane(z=5)
    with pytest.raises(wa.OptionError, match="no plane dimension 't'"):
        slide.at_plane(t=0)


def test_time_and_z_rgb(tmp_path: Path) -> None:
    path = tmp_path / "tz.ome.tif"
    data = np.random.default_rng(6).integers(0, 256, (3, 2, 96, 128, 3), dtype=np.uint8)
    _write_ome(path, data, "TZYXS", TimeIncrement=30.0, PhysicalSizeZ=1.5)
    slide = wa.open(path)
    image = slide.tree["level0"].image
    assert image.dims == ("t", "z", "y", "x", "c")
    assert list(image.c.values) == ["R", "G", "B"]
    assert slide.planes["t"] == pytest.approx((0.0, 30.0, 60.0))
    assert image.t.attrs["units"] == "s"
    np.testing.assert_array_equal(image.values, data)
    np.testing.assert_array_equal(image.isel(t=2, z=1).values, data[2, 1])
    np.testing.assert_array_equal(
        slide.at_plane(t=1, z=1).read(5, 6, 70, 50), data[1, 1, 6:56, 5:75]
    )


def test_a_2d_slide_has_no_planes(sample_svs: Path) -> None:
    slide = wa.open(sample_svs)
    assert slide.planes == {}
    assert slide.plane == {}
    assert slide.tree["level0"].image.dims == ("y", "x", "c")


def test_export_writes_the_plane_the_slide_reads(
    z_stack: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, data = z_stack
    store = wa.write_ome_zarr(wa.open(path).at_plane(z=2), tmp_path / "z2.zarr")
    exported = wa.open(store)
    assert exported.properties["wsiarray.plane"] == "z=2"
    np.testing.assert_array_equal(exported.read(0, 0, 300, 200), np.moveaxis(data[2], 0, -1))
