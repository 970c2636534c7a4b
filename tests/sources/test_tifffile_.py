"""Synthetic files written with tifffile and Pillow: odd geometry, codecs, bands and dtypes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

import wsiarray as wa


def _write_pyramid(
    path: Path,
    levels: list[np.ndarray],
    *,
    tile: int,
    compression: str | None,
    ome: bool = False,
    resolution: tuple[float, float] | None = None,
    photometric: str | None = None,
) -> None:
    options = {"tile": (tile, tile), "compression": compression, "photometric": photometric}
    if compression == "jpeg2000":
        options["compressionargs"] = {"reversible": True}  # lossless
    if resolution:
        options |= {"resolution": resolution, "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path, ome=ome) as tif:
        tif.write(levels[0], subifds=len(levels) - 1, **options)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, **options)


@pytest.mark.parametrize(
    "compression", ["zlib", "lzw", "jpeg2000", None], ids=["deflate", "lzw", "jpeg2000", "raw"]
)
def test_odd_sized_pyramid_round_trips_exactly(
    tmp_path: Path, compression: str | None, pattern
) -> None:
    """Odd sizes, edge tiles and a non-power-of-two downsample (3), lossless codecs."""
    base = pattern(1001, 777, 3)
    levels = [base, base[::3, ::3].copy(), base[::9, ::9].copy()]
    path = tmp_path / "odd.ome.tif"
    _write_pyramid(path, levels, tile=128, compression=compression, ome=True)
    slide = wa.open(path)
    assert slide.level_shapes == ((1001, 777), (334, 259), (112, 87))
    assert slide.tree["level1"].attrs["downsample_x"] == 777 / 259
    for level, expected in enumerate(levels):
        np.testing.assert_array_equal(slide.image(level).values, expected)
    # an edge tile crossing both the right and bottom borders
    np.testing.assert_array_equal(slide.image(0)[990:, 700:].values, base[990:, 700:])


def test_missing_resolution_gives_pixel_coordinates(tmp_path: Path, pattern) -> None:
    path = tmp_path / "nompp.tif"
    _write_pyramid(path, [pattern(300, 400, 3)], tile=64, compression="zlib")
    slide = wa.open(path)
    assert slide.metadata.format == "generic-tiff"
    assert slide.mm_x is None
    assert slide.magnification is None
    image = slide.image(0)
    assert image.x.attrs["units"] == "base_pixels"
    np.testing.assert_allclose(image.x.values[:2], [0.5, 1.5])


def test_resolution_tags_give_mm_and_derived_magnification(tmp_path: Path, pattern) -> None:
    path = tmp_path / "res.tif"
    _write_pyramid(
        path, [pattern(256, 256, 3)], tile=64, compression="zlib", resolution=(40000.0, 40000.0)
    )
    slide = wa.open(path)
    assert slide.mm_x == pytest.approx(10 / 40000)  # 0.25 µm
    assert slide.magnification == pytest.approx(40.0)
    assert slide.metadata.magnification_derived


def test_rgba_keeps_alpha_band(tmp_path: Path, pattern) -> None:
    path = tmp_path / "rgba.tif"
    data = pattern(200, 300, 4)
    tifffile.imwrite(
        path,
        data,
        tile=(64, 64),
        photometric="rgb",
        extrasamples=["unassalpha"],
        compression="zlib",
    )
    slide = wa.open(path)
    assert slide.metadata.channels == ("R", "G", "B", "A")
    np.testing.assert_array_equal(slide.image(0).values, data)


def test_sixteen_bit_single_channel(tmp_path: Path, pattern) -> None:
    path = tmp_path / "grey16.tif"
    data = pattern(300, 200, 1, "uint16")[..., 0]
    tifffile.imwrite(path, data, tile=(64, 64), compression="zlib")
    slide = wa.open(path)
    image = slide.image(0)
    assert image.dtype == np.uint16
    assert list(image.c.values) == ["L"]
    np.testing.assert_array_equal(image.values[..., 0], data)


def test_multichannel_ome_uses_channel_names(tmp_path: Path, pattern) -> None:
    path = tmp_path / "fluo.ome.tif"
    data = np.moveaxis(pattern(128, 160, 3, "uint16"), -1, 0)  # CYX
    metadata = {
        "axes": "CYX",
        "Channel": {"Name": ["DAPI", "CD3", "PanCK"]},
        "PhysicalSizeX": 0.5,
        "PhysicalSizeY": 0.5,
    }
    tifffile.imwrite(path, data, tile=(64, 64), compression="zlib", metadata=metadata, ome=True)
    slide = wa.open(path)
    assert slide.metadata.channels == ("DAPI", "CD3", "PanCK")
    assert slide.mm_x == pytest.approx(0.0005)
    np.testing.assert_array_equal(slide.image(0).values, np.moveaxis(data, 0, -1))


def test_axes_other_than_planes_are_refused_with_a_reason(tmp_path: Path) -> None:
    # Z and T are dimensions (tests/sources/test_planes.py); other axes are named in a refusal
    path = tmp_path / "rotations.tif"
    tifffile.imwrite(
        path, np.zeros((3, 64, 64), np.uint8), photometric="minisblack", metadata={"axes": "RYX"}
    )
    with pytest.raises(wa.UnsupportedFormatError, match="R=3"):
        wa.open(path)


def test_jpeg_edge_tiles_stored_at_their_cropped_size(tmp_path: Path) -> None:
    # some writers encode the right and bottom edge tiles at the size of the image's rest
    import imagecodecs

    height, width, tile = 600, 520, 256
    image = np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)

    def tiles() -> Iterator[bytes]:
        for y in range(0, height, tile):
            for x in range(0, width, tile):
                block = np.ascontiguousarray(image[y : y + tile, x : x + tile])
                yield imagecodecs.jpeg_encode(block, level=85)

    path = tmp_path / "cropped_edges.tif"
    tifffile.imwrite(path, tiles(), shape=image.shape, dtype=np.uint8, tile=(tile, tile),
                     compression=7, photometric="ycbcr", subsampling=(1, 1))  # fmt: skip
    np.testing.assert_array_equal(wa.open(path).image(0).values, tifffile.imread(path))


def test_a_compression_no_codec_reads_is_refused_at_open(tmp_path: Path) -> None:
    # as OpenSlide's test fixture unopenable.tiff: compression 52479. It opened, and then
    # every read said the file was damaged; now open says why
    path = tmp_path / "unopenable.tif"
    tiles = (bytes(16 * 16 * 3) for _ in range(16))
    tifffile.imwrite(path, tiles, shape=(64, 64, 3), dtype=np.uint8, tile=(16, 16),
                     photometric="rgb")  # fmt: skip
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages.first.tags["Compression"].valueoffset
    data = bytearray(path.read_bytes())
    data[offset : offset + 2] = (52479).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(
        wa.UnsupportedFormatError, match=r"level 0 is compressed with an unknown one .*52479"
    ):
        wa.open(path, reader="tifffile")
    with pytest.raises(wa.UnsupportedFormatError, match="compression 52479"):
        wa.open(path)  # every reader says why


def _zero_tag(path: Path, page: int, tag: str) -> None:
    """Overwrite one SHORT or LONG tag value of a page with 0, as a damaged writer leaves it."""
    with tifffile.TiffFile(path) as tif:
        entry = tif.pages[page].tags[tag]
        offset, size = entry.valueoffset, 2 if entry.dtype == 3 else 4
    data = bytearray(path.read_bytes())
    data[offset : offset + size] = bytes(size)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("page", "tag", "tiled", "message"),
    [
        (0, "ImageWidth", True, r"image directory 0 declares a 0 x 64 image"),
        (2, "ImageWidth", False, r"image directory 2 declares a 0 x 16 image"),
        (0, "TileWidth", True, r"image directory 0 declares TileWidth = 0"),
        (0, "RowsPerStrip", False, r"level 0 declares a 64 x 64 image in 64 x 0 strips"),
    ],
)
def test_a_zero_size_is_named_not_a_division_by_zero(
    tmp_path: Path, pattern, page: int, tag: str, tiled: bool, message: str
) -> None:
    # tifffile (grouping pages into series) and the tile grid divide by these sizes: the
    # error was "ZeroDivisionError: division by zero" inside an UnsupportedFormatError
    path = tmp_path / "zero.tif"
    options = {"tile": (16, 16)} if tiled else {"rowsperstrip": 16}
    base = pattern(64, 64, 3)
    with tifffile.TiffWriter(path) as tif:
        for step, kind in ((1, 0), (2, 1), (4, 1)):
            tif.write(base[::step, ::step], photometric="rgb", compression="zlib",
                      subfiletype=kind, **options)  # fmt: skip
    _zero_tag(path, page, tag)
    with pytest.raises(wa.UnsupportedFormatError, match=message) as error:
        wa.open(path, reader="tifffile")
    assert "ZeroDivisionError" not in str(error.value)


def test_a_zero_width_level_0_is_refused_not_shown_as_level_1(tmp_path: Path, pattern) -> None:
    # with no tifffile "shaped" description, tifffile drops a 0-pixel page: the file opened
    # with its level 1 (32 x 32) as the slide
    path = tmp_path / "zero.tif"
    base = pattern(64, 64, 3)
    with tifffile.TiffWriter(path) as tif:
        for step, kind in ((1, 0), (2, 1)):
            tif.write(base[::step, ::step], photometric="rgb", tile=(16, 16), subfiletype=kind,
                      metadata=None)  # fmt: skip
    _zero_tag(path, 0, "ImageWidth")
    with pytest.raises(wa.UnsupportedFormatError, match=r"image directory 0 declares a 0 x 64"):
        wa.open(path, reader="tifffile")


@pytest.mark.parametrize("tiled", [True, False], ids=["tiled", "stripped"])
def test_an_olympus_vsi_is_refused_by_name(tmp_path: Path, pattern, tiled: bool) -> None:
    # to a TIFF reader a VSI is a TIFF holding a preview; the slide is in the .ets files of
    # the folder _<name>_ beside it. It used to open as the preview
    path = tmp_path / "slide.vsi"
    tifffile.imwrite(path, pattern(64, 96, 3), photometric="rgb", tile=(16, 16) if tiled else None)
    with pytest.raises(wa.UnsupportedFormatError, match=r"Olympus VSI.*_slide_.*not beside"):
        wa.open(path, reader="tifffile")
    stack = tmp_path / "_slide_" / "stack1"
    stack.mkdir(parents=True)
    (stack / "frame_t.ets").write_bytes(b"SIS\x00")
    with pytest.raises(wa.UnsupportedFormatError, match=r"1 \.ets file there.*bfconvert"):
        wa.open(path, reader="tifffile")
    # by "auto" too: OpenSlide, which would show a tiled preview as a generic TIFF, does not
    # take a .vsi
    with pytest.raises(wa.UnsupportedFormatError, match="Olympus VSI"):
        wa.open(path)


def test_a_series_option_past_the_last_series_is_an_option_error(
    real_slide: Callable[[str], Path],
) -> None:
    path = real_slide("aperio/CMU-1-Small-Region.svs")  # level 0, thumbnail, label, macro
    for series in (4, -1):
        with pytest.raises(wa.OptionError, match=r"'series'.* holds 4 series .* 0 to 3"):
            wa.open(path, reader="tifffile", reader_options={"series": series})
    assert wa.open(path, reader_options={"series": 3}).level_shapes == ((431, 1280),)
