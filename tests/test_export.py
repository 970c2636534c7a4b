"""OME-Zarr export (OME-NGFF 0.5, zarr v3) and the reader that reopens it.

Every slide is exported once per module (the exports are shared by the tests that only read
them); the oracles are the slide itself, ome-zarr-py's reader and xarray's zarr engine.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr
import zarr

import wsiarray as wa
from wsiarray.sources import SourceSpec

SVS = "aperio/CMU-1-Small-Region.svs"
NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"
QPTIFF = "qptiff/small_vectra.qptiff"
NO_MM = "aperio/tcga-cr-7395-01a-01-ts1.svs"
SLIDES = [SVS, NDPI, QPTIFF, "sample"]


def _slide(real_slide, name: str) -> wa.Slide:
    return wa.open(wa.datasets.sample_slide() if name == "sample" else real_slide(name))


def _attributes(store: Path, group: str = "") -> dict:
    return json.loads((store / group / "zarr.json").read_text())["attributes"]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, real_slide
) -> dict[str, tuple[wa.Slide, Path]]:
    """Each slide and its default export (file levels, zstd, associated images)."""
    out = tmp_path_factory.mktemp("export")
    result = {}
    for name in SLIDES:
        slide = _slide(real_slide, name)
        result[name] = (slide, wa.write_ome_zarr(slide, out / f"{Path(name).stem}.zarr"))
    return result


@pytest.mark.parametrize("name", SLIDES)
def test_reopened_export_equals_the_slide(
    exported: dict[str, tuple[wa.Slide, Path]], name: str
) -> None:
    slide, store = exported[name]
    again = wa.open(store)
    assert again.metadata.reader == "zarr"
    assert np.array_equal(again.image(0).values, slide.image(0).values)  # bit-identical
    assert again.level_shapes == slide.level_shapes
    for level in range(1, slide.level_count):
        assert np.array_equal(
            again.read(0, 0, 300, 200, level=level), slide.read(0, 0, 300, 200, level=level)
        )
    meta, back = slide.metadata, again.metadata
    for field in ("format", "dtype", "channels", "mm_x", "mm_y", "magnification"):
        assert getattr(back, field) == getattr(meta, field), field
    assert back.magnification_derived == meta.magnification_derived
    assert back.background == meta.background
    assert dict(back.properties) == dict(meta.properties)
    assert list(again.associated) == list(slide.associated)
    for key, image in slide.associated.items():
        assert np.array_equal(again.associated[key].values, image.values), key
    xr.testing.assert_identical(
        again.image(0).coords.to_dataset(), slide.image(0).coords.to_dataset()
    )


def test_channel_names_of_fluorescence_in_omero_and_wsiarray_attrs(
    exported: dict[str, tuple[wa.Slide, Path]],
) -> None:
    _, store = exported[QPTIFF]
    attrs = _attributes(store)
    assert [c["label"] for c in attrs["ome"]["omero"]["channels"]] == ["DAPI", "FITC", "Cy3"]
    assert attrs["wsiarray"]["channels"] == ["DAPI", "FITC", "Cy3"]
    assert wa.open(store).image(0).c.values.tolist() == ["DAPI", "FITC", "Cy3"]


def test_ngff_metadata_layout(exported: dict[str, tuple[wa.Slide, Path]]) -> None:
    slide, store = exported[NDPI]
    attrs = _attributes(store)
    assert attrs["ome"]["version"] == "0.5"
    (multiscale,) = attrs["ome"]["multiscales"]
    assert "version" not in multiscale  # 0.5 keeps it under "ome" only
    assert multiscale["axes"] == [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space", "unit": "millimeter"},
        {"name": "x", "type": "space", "unit": "millimeter"},
    ]
    mm = slide.mm_x
    for k, dataset in enumerate(multiscale["datasets"]):
        assert dataset["path"] == f"level{k}/image"
        transforms = dataset["coordinateTransformations"]
        assert transforms[0] == {"type": "scale", "scale": [1.0, mm * 2**k, mm * 2**k]}
        if k == 0:
            assert len(transforms) == 1  # the origin is the centre of the first pixel
        else:  # the first pixel's centre sits (2**k - 1) / 2 level-0 pixels in
            assert transforms[1]["type"] == "translation"
            shift = mm * (2**k - 1) / 2
            assert transforms[1]["translation"] == pytest.approx([0.0, shift, shift])
        array = json.loads((store / dataset["path"] / "zarr.json").read_text())
        assert array["dimension_names"] == ["c", "y", "x"]
        assert array["codecs"][-1]["name"] == "zstd"
    info = attrs["wsiarray"]
    assert info["format"] == "hamamatsu"
    assert info["source"] == slide.path
    assert info["magnification"] == 40.0
    macro = _attributes(store, "associated/macro")["ome"]["multiscales"][0]
    assert macro["axes"][1] == {"name": "y", "type": "space"}  # no physical scale
    assert macro["datasets"] == [
        {
            "path": "image",
            "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}],
        }
    ]


def test_without_pixel_size_scale_is_in_base_pixels(tmp_path: Path, real_slide) -> None:
    slide = wa.open(real_slide(NO_MM))
    store = wa.write_ome_zarr(slide, tmp_path / "nomm.zarr", associated=False)
    (multiscale,) = _attributes(store)["ome"]["multiscales"]
    assert all("unit" not in axis for axis in multiscale["axes"])
    scale = multiscale["datasets"][1]["coordinateTransformations"][0]["scale"]
    assert scale == [1.0, 3567 / 1783, 4443 / 2221]
    again = wa.open(store)
    assert again.mm_x is None
    assert again.magnification is None
    assert "associated" not in again.tree.children


def test_ome_zarr_py_reads_the_same_levels(exported: dict[str, tuple[wa.Slide, Path]]) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    slide, store = exported[NDPI]
    node = next(iter(Reader(parse_url(store))()))
    assert node.load(Multiscales) is not None
    assert [tuple(d.shape) for d in node.data] == [(3, h, w) for h, w in slide.level_shapes]
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "y", "x"]
    for level, data in enumerate(node.data):
        expected = np.moveaxis(slide.image(level).values, -1, 0)
        assert np.array_equal(np.asarray(data), expected), level
    assert node.metadata["channel_names"] == ["R", "G", "B"]


def test_xarray_zarr_engine_opens_the_tree(exported: dict[str, tuple[wa.Slide, Path]]) -> None:
    slide, store = exported[NDPI]
    tree = xr.open_datatree(store, engine="zarr", consolidated=False)
    for level in range(slide.level_count):
        image = tree[f"level{level}"]["image"]
        assert image.dims == ("c", "y", "x")
        assert image.dtype == np.uint8
        assert image.shape == (3, *slide.level_shapes[level])
    assert tree["level3"]["image"].transpose("y", "x", "c").values.tolist() == (
        slide.image(3).values.tolist()
    )
    assert tree["associated/macro/image"].dims == ("c", "y", "x")
    assert tree.attrs["ome"]["version"] == "0.5"


def test_chunk_grid_is_the_one_asked_for(tmp_path: Path, real_slide) -> None:
    slide = wa.open(real_slide(SVS))
    store = wa.write_ome_zarr(slide, tmp_path / "c512.zarr", chunks=512, associated=False)
    array = zarr.open_array(store / "level0" / "image", mode="r")
    assert array.chunks == (3, 512, 512)
    assert array.shape == (3, 2967, 2220)
    files = list((store / "level0" / "image" / "c").rglob("*"))
    assert sum(f.is_file() for f in files) == math.ceil(2967 / 512) * math.ceil(2220 / 512)
    assert wa.open(store).metadata.levels[0].tile == (512, 512)


def test_default_chunks_and_small_levels(exported: dict[str, tuple[wa.Slide, Path]]) -> None:
    _, store = exported[NDPI]
    assert zarr.open_array(store / "level0" / "image", mode="r").chunks == (3, 1024, 1024)
    # a level smaller than a chunk is one chunk of its own size
    assert zarr.open_array(store / "level3" / "image", mode="r").chunks == (3, 608, 496)


def test_power_of_two_pyramid(tmp_path: Path, real_slide) -> None:
    slide = wa.open(real_slide(SVS))
    store = wa.write_ome_zarr(slide, tmp_path / "p2.zarr", pyramid="power_of_two", associated=False)
    again = wa.open(store)
    height, width = slide.shape
    assert again.level_shapes == tuple(
        (height // 2**k, width // 2**k) for k in range(again.level_count)
    )
    assert again.level_count == 3  # 741 x 555 is the first to fit in a 1024 chunk
    for k in range(again.level_count):
        expected = slide.image(downsample=2**k).values
        assert np.array_equal(again.image(k).values, expected), k
    (multiscale,) = _attributes(store)["ome"]["multiscales"]
    assert multiscale["type"] == "area"
    scale = multiscale["datasets"][2]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx([1.0, slide.mm_y * 4, slide.mm_x * 4])


def test_jpeg_round_trip(tmp_path: Path, real_slide) -> None:
    slide = wa.open(real_slide(SVS))
    store = wa.write_ome_zarr(slide, tmp_path / "jpeg.zarr", compressor="jpeg")
    codecs = json.loads((store / "level0" / "image" / "zarr.json").read_text())["codecs"]
    assert [c["name"] for c in codecs] == ["transpose", "imagecodecs_jpeg"]
    again = wa.open(store)
    original, decoded = slide.image(0).values, again.image(0).values
    # quality 90 without chroma subsampling measured 43.4 dB on this slide; 40 dB leaves
    # room for libjpeg versions but still fails for 4:2:0 (34 dB) or a colour mix-up
    assert _psnr(original, decoded) > 40
    assert np.abs(original.astype(int) - decoded).mean() < 2
    # associated images stay lossless
    assert np.array_equal(again.associated["label"].values, slide.associated["label"].values)
    label = json.loads((store / "associated/label/image/zarr.json").read_text())["codecs"]
    assert label[-1]["name"] == "zstd"
    store_bytes = sum(f.stat().st_size for f in (store / "level0").rglob("*") if f.is_file())
    assert store_bytes < original.nbytes / 5


def test_jpeg_grey_and_tiny_levels(tmp_path: Path, real_slide) -> None:
    slide = wa.open(real_slide("ome-tiff/test_pyramid.ome.tif"))  # 16, 8, 4 px, one channel
    again = wa.open(wa.write_ome_zarr(slide, tmp_path / "grey.zarr", compressor="jpeg"))
    assert again.level_shapes == slide.level_shapes
    assert again.metadata.channels == ("L",)
    assert np.abs(again.image(0).values.astype(int) - slide.image(0).values).max() < 16


def test_jpeg_refuses_what_it_cannot_hold(tmp_path: Path, real_slide) -> None:
    path = tmp_path / "u16.tif"
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint16), tile=(32, 32), photometric="rgb")
    with pytest.raises(wa.OptionError, match="8-bit images of 1 or 3 channels") as info:
        wa.write_ome_zarr(wa.open(path), tmp_path / "x.zarr", compressor="jpeg")
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "x.zarr").exists()
    fluorescence = wa.open(real_slide("qptiff/small_vectra.qptiff"))
    with pytest.raises(wa.OptionError, match="would mix the channels DAPI, FITC, Cy3"):
        wa.write_ome_zarr(fluorescence, tmp_path / "f.zarr", compressor="jpeg")


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"compressor": "lzw"}, "choose one of 'zstd', 'jpeg', 'none'"),
        ({"pyramid": "fibonacci"}, "choose one of 'levels', 'power_of_two'"),
        ({"chunks": 8}, "at least 16"),
    ],
)
def test_bad_options(tmp_path: Path, option: dict, match: str, real_slide) -> None:
    with pytest.raises(wa.OptionError, match=match):
        wa.write_ome_zarr(wa.open(real_slide(SVS)), tmp_path / "x.zarr", **option)


def test_existing_destination(tmp_path: Path, real_slide) -> None:
    slide = wa.open(real_slide("ome-tiff/test_pyramid.ome.tif"))
    store = wa.write_ome_zarr(slide, tmp_path / "out.zarr")
    with pytest.raises(wa.DestinationExistsError, match="overwrite=True") as info:
        wa.write_ome_zarr(slide, store)
    assert isinstance(info.value, FileExistsError)
    stamp = SourceSpec.create(store, "zarr", {}).stamp
    wa.write_ome_zarr(wa.open(real_slide(QPTIFF)), store, overwrite=True, associated=False)
    assert SourceSpec.create(store, "zarr", {}).stamp != stamp  # a cached handle is not reused
    assert wa.open(store).metadata.channels == ("DAPI", "FITC", "Cy3")
    assert not (store / "associated").exists()  # the old store was removed, not merged

    empty = tmp_path / "empty"
    empty.mkdir()
    wa.write_ome_zarr(slide, empty)  # an empty directory is fine
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(wa.DestinationExistsError, match="not a zarr store"):
        wa.write_ome_zarr(slide, other, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"


def test_failed_export_leaves_nothing_and_keeps_the_store_it_was_to_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_slide
) -> None:
    import dask.array as da

    slide = wa.open(real_slide("ome-tiff/test_pyramid.ome.tif"))
    store = tmp_path / "kept.zarr"
    wa.write_ome_zarr(slide, store)
    before = sorted(p.relative_to(store) for p in store.rglob("*"))

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(da, "store", crash)
    with pytest.raises(KeyboardInterrupt):
        wa.write_ome_zarr(slide, tmp_path / "new.zarr")
    with pytest.raises(KeyboardInterrupt):
        wa.write_ome_zarr(slide, store, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.zarr"]  # no partial stores
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before
    assert wa.open(store).level_count == 3
    monkeypatch.undo()
    wa.write_ome_zarr(slide, store, overwrite=True)  # a zarr store: replaceable
    assert wa.open(store).level_count == 3


def test_directories_that_are_not_ome_zarr(tmp_path: Path) -> None:
    with pytest.raises(wa.UnsupportedFormatError, match="is a directory"):
        wa.open(tmp_path)
    zarr.create_group(str(tmp_path / "plain.zarr"), zarr_format=3)
    with pytest.raises(wa.UnsupportedFormatError, match="without OME-NGFF multiscales"):
        wa.open(tmp_path / "plain.zarr")


def test_reads_foreign_ome_zarr_04_on_zarr_v2(tmp_path: Path) -> None:
    """A store written elsewhere: t, c, z, y, x axes, micrometres, ``omero`` labels."""
    store = tmp_path / "v04.zarr"
    root = zarr.open_group(str(store), mode="w", zarr_format=2)
    rng = np.random.default_rng(1)
    full = rng.integers(0, 4096, (1, 2, 1, 300, 200), dtype=np.uint16)
    for k, data in enumerate([full, full[..., ::2, ::2]]):
        array = root.create_array(
            str(k), shape=data.shape, dtype=data.dtype, chunks=(1, 1, 1, 128, 128)
        )
        array[...] = data
    root.attrs.update(
        {
            "multiscales": [
                {
                    "version": "0.4",
                    "name": "cells",
                    "axes": [
                        {"name": "t", "type": "time"},
                        {"name": "c", "type": "channel"},
                        {"name": "z", "type": "space", "unit": "micrometer"},
                        {"name": "y", "type": "space", "unit": "micrometer"},
                        {"name": "x", "type": "space", "unit": "micrometer"},
                    ],
                    "datasets": [
                        {
                            "path": str(k),
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [1, 1, 2, 0.325 * 2**k, 0.5 * 2**k]}
                            ],
                        }
                        for k in range(2)
                    ],
                }
            ],
            "omero": {"channels": [{"label": "DAPI"}, {"label": "GFP"}]},
        }
    )
    slide = wa.open(store)
    assert slide.metadata.format == "ome-zarr"
    assert slide.metadata.dtype == "uint16"
    assert slide.metadata.channels == ("DAPI", "GFP")
    assert (slide.mm_y, slide.mm_x) == pytest.approx((0.000325, 0.0005))
    assert slide.magnification == pytest.approx(20.0)
    assert slide.metadata.magnification_derived
    assert slide.level_shapes == ((300, 200), (150, 100))
    assert slide.metadata.levels[0].tile == (128, 128)
    assert np.array_equal(slide.image(0).values, np.moveaxis(full[0, :, 0], 0, -1))
    assert np.array_equal(slide.image(1).values, np.moveaxis(full[0, :, 0, ::2, ::2], 0, -1))
    assert slide.metadata.properties["ome.version"] == "0.4"


def test_reads_are_thread_safe(exported: dict[str, tuple[wa.Slide, Path]]) -> None:
    slide, store = exported["sample"]
    again = wa.open(store, chunks=1024)
    expected = slide.image(0).values
    means = again.image(0).astype(np.float64).mean(("y", "x")).compute()  # dask threads
    assert np.allclose(means, expected.mean((0, 1)))
    rng = np.random.default_rng(0)
    boxes = [(int(rng.integers(0, 3500)), int(rng.integers(0, 5500))) for _ in range(64)]

    def read(box: tuple[int, int]) -> bool:
        y, x = box
        return np.array_equal(again.read(x, y, 500, 500), expected[y : y + 500, x : x + 500])

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(read, boxes))


def test_progress_bar_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], real_slide
) -> None:
    from dask.diagnostics import ProgressBar

    slide = wa.open(real_slide("ome-tiff/test_pyramid.ome.tif"))
    with ProgressBar(minimum=0):
        wa.write_ome_zarr(slide, tmp_path / "bar.zarr")
    assert "100%" in capsys.readouterr().out


def test_export_of_an_export_is_identical(
    exported: dict[str, tuple[wa.Slide, Path]], tmp_path: Path
) -> None:
    slide, store = exported[SVS]
    again = wa.open(wa.write_ome_zarr(wa.open(store), tmp_path / "twice.zarr"))
    assert np.array_equal(again.image(0).values, slide.image(0).values)
    assert dict(again.properties) == dict(slide.properties)
