"""Damaged TIFF slides (issue 15's fuzz triage): each a minimal mutation of a real slide,
written here into a copy in ``tmp_path``, refused with a specific error that names the file
(and the level), or read as the damage allows, never a stray exception, hang or wrong pixels."""

from __future__ import annotations

import random
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

import wsiarray as wa

CMU = "aperio/CMU-1-Small-Region.svs"
TCGA = "aperio/tcga-cr-7395-01a-01-ts1.svs"
NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"
OS2 = "ome-tiff/OS-2-ndpi.ome.tif"


def _copy(source: Path, tmp_path: Path) -> tuple[Path, bytearray]:
    return tmp_path / source.name, bytearray(source.read_bytes())


def _entry(source: Path, page: int, tag: str) -> int:
    """The file offset of ``tag``'s 12-byte directory entry in page ``page``."""
    with tifffile.TiffFile(source) as tif:
        return tif.pages[page].tags[tag].offset


def _set_entry(data: bytearray, at: int, dtype: int, value: bytes) -> None:
    """Rewrite a little-endian classic TIFF entry: its type, count 1 and inline value."""
    data[at + 2 : at + 4] = struct.pack("<H", dtype)
    data[at + 4 : at + 8] = struct.pack("<I", 1)
    data[at + 8 : at + 12] = value.ljust(4, b"\x00")


def _next_pointer(source: Path, page: int) -> tuple[int, list[int]]:
    """Where page ``page``'s next-directory offset is, and every page's offset."""
    with tifffile.TiffFile(source) as tif:
        offsets = [p.offset for p in tif.pages]
        at = offsets[page]
        count = struct.unpack("<H", source.read_bytes()[at : at + 2])[0]
    return at + 2 + 12 * count, offsets


# -- A3/A4/B/C: declared geometry checked at open ------------------------------------------------


def test_a_size_larger_than_the_tiles_listed_is_refused_at_open(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz A3 (huge_size): ImageWidth 2220 -> 1,000,000 made a grid of 4167 columns over 130
    # offsets; the first read raised IndexError in LevelTiles._fetch
    source = real_slide(CMU)
    path, data = _copy(source, tmp_path)
    _set_entry(data, _entry(source, 0, "ImageWidth"), 4, struct.pack("<I", 1_000_000))
    path.write_bytes(bytes(data))
    with pytest.raises(wa.UnsupportedFormatError, match=r"level 0 is a 1000000 x 2967 image") as e:
        wa.open(path, reader="tifffile")
    assert str(path) in str(e.value)
    assert "130 offsets" in str(e.value)


def test_samples_per_pixel_at_odds_with_bits_per_sample_is_refused_at_open(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz A4 (tag_value): SamplesPerPixel 3 -> 57401 allocated (bands, h, w) at the first read
    source = real_slide(CMU)
    path, data = _copy(source, tmp_path)
    _set_entry(data, _entry(source, 0, "SamplesPerPixel"), 3, struct.pack("<H", 57401))
    path.write_bytes(bytes(data))
    with pytest.raises(
        wa.UnsupportedFormatError, match=r"image directory 0 declares SamplesPerPixel = 57401"
    ):
        wa.open(path, reader="tifffile")


def test_samples_per_pixel_too_few_for_rgb_is_refused_at_open(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    source = real_slide(CMU)
    path, data = _copy(source, tmp_path)
    _set_entry(data, _entry(source, 0, "SamplesPerPixel"), 3, struct.pack("<H", 1))
    bits = _entry(source, 0, "BitsPerSample")
    _set_entry(data, bits, 3, struct.pack("<H", 8))
    path.write_bytes(bytes(data))
    with pytest.raises(wa.UnsupportedFormatError, match=r"SamplesPerPixel = 1 .* photometric RGB"):
        wa.open(path, reader="tifffile")


@pytest.mark.parametrize("tag", ["ImageLength", "TileWidth"])
def test_a_size_of_type_float_is_refused_at_open(
    tmp_path: Path, real_slide: Callable[[str], Path], tag: str
) -> None:
    # fuzz B (tag_type): a size tag's type LONG/SHORT -> FLOAT reached the arrays as a float
    # ("shape can only contain integers", "'float' object cannot be interpreted as an integer")
    source = real_slide(TCGA)
    path, data = _copy(source, tmp_path)
    with tifffile.TiffFile(source) as tif:
        value = tif.pages[0].tags[tag].value
    _set_entry(data, _entry(source, 0, tag), 11, struct.pack("<f", float(value)))
    path.write_bytes(bytes(data))
    message = rf"image directory 0 declares {tag} as 1 value\(s\) of TIFF type 11 \(FLOAT\)"
    with pytest.raises(wa.UnsupportedFormatError, match=message):
        wa.open(path, reader="tifffile")


def test_a_subifd_level_size_of_type_float_is_refused_not_left_out(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz B/F3 (tag_type): tifffile left the SubIFD level out of the series: 1 level of 3
    source = real_slide("ome-tiff/test_pyramid.ome.tif")  # big-endian
    path, data = _copy(source, tmp_path)
    with tifffile.TiffFile(source) as tif:
        subifd = tif.pages[0].subifds[0]
        tif.filehandle.seek(subifd)
        at = tifffile.TiffPage(tif, index=(0, 0)).tags["ImageLength"].offset
    data[at + 2 : at + 4] = struct.pack(">H", 11)
    path.write_bytes(bytes(data))
    message = rf"the SubIFD at byte {subifd:,} of image directory 0 declares ImageLength"
    with pytest.raises(wa.UnsupportedFormatError, match=message):
        wa.open(path, reader="tifffile")


@pytest.mark.parametrize(("tag", "dtype"), [("TileByteCounts", 11), ("TileByteCounts", 1),
                                          ("BitsPerSample", 65535)])  # fmt: skip
def test_a_tile_table_or_bits_per_sample_not_of_integers_is_refused_at_open(
    tmp_path: Path, real_slide: Callable[[str], Path], tag: str, dtype: int
) -> None:
    # fuzz seed 2026 (tag_type): TileByteCounts LONG -> FLOAT or BYTE made tifffile read
    # counts of 0 (tiles absent: background) or single bytes, BitsPerSample of type 65535
    # wrong pixels; all silently. Only the entry's type changes, its count and values stay
    source = real_slide(CMU)
    path, data = _copy(source, tmp_path)
    at = _entry(source, 0, tag)
    data[at + 2 : at + 4] = struct.pack("<H", dtype)
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=rf"directory 0 declares {tag} of TIFF type"):
        wa.open(path)


def test_a_size_with_a_count_of_2_31_is_refused_at_open(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz C (tag_count): ImageLength's count 1 -> 2**31; tifffile read a level of height 0,
    # which wsiarray divided by (ZeroDivisionError in geometry, slide and compat)
    source = real_slide(CMU)
    path, data = _copy(source, tmp_path)
    at = _entry(source, 0, "ImageLength")
    data[at + 4 : at + 8] = struct.pack("<I", 2**31)
    path.write_bytes(bytes(data))
    message = r"image directory 0 declares ImageLength as 2147483648 value\(s\) of TIFF type 3"
    with pytest.raises(wa.UnsupportedFormatError, match=message):
        wa.open(path, reader="tifffile")


def test_a_tile_past_the_end_of_the_file_is_truncation_named_at_open(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    source = real_slide(TCGA)
    path, data = _copy(source, tmp_path)
    with tifffile.TiffFile(source) as tif:
        page = tif.pages[2]  # level 1
        at = page.tags["TileOffsets"].valueoffset + 4 * 5
    data[at : at + 4] = struct.pack("<I", len(data) - 10)
    path.write_bytes(bytes(data))
    with pytest.raises(wa.TruncatedFileError, match=r"level 1: the file is truncated") as e:
        wa.open(path, reader="tifffile")
    assert str(path) in str(e.value)


# -- E/F1: the chain of directories walked bounded, loops refused ------------------------------


@pytest.mark.parametrize(("name", "page", "to"), [(NDPI, 1, 0), (NDPI, 1, 1), (TCGA, 1, 0)])
def test_a_directory_chain_that_loops_is_refused_at_open_without_hanging(
    tmp_path: Path, real_slide: Callable[[str], Path], name: str, page: int, to: int
) -> None:
    # fuzz E/F1 (ifd_loop): an NDPI loop hung in tifffile's series_ndpi (it finds no loop in
    # NDPI); an SVS loop opened with the levels before it, silently
    source = real_slide(name)
    path, data = _copy(source, tmp_path)
    at, offsets = _next_pointer(source, page)
    data[at : at + 4] = struct.pack("<I", offsets[to])
    path.write_bytes(bytes(data))
    start = time.perf_counter()
    with pytest.raises(wa.UnsupportedFormatError, match=rf"points back to directory {to}") as e:
        wa.open(path, reader="tifffile")
    assert time.perf_counter() - start < 10
    assert str(path) in str(e.value)


def test_a_file_cut_just_after_a_level_directory_is_truncation_not_fewer_levels(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz F1 (truncate): 588 bytes cut from the end of the TCGA SVS, just after level 1's
    # directory: tifffile dropped its TileOffsets/TileByteCounts and the file opened with 1 of 2
    # levels, silently
    source = real_slide(TCGA)
    path, data = _copy(source, tmp_path)
    path.write_bytes(bytes(data[:-588]))
    with pytest.raises(wa.TruncatedFileError, match=r"TileByteCounts values of image directory 2"):
        wa.open(path, reader="tifffile")


def test_an_ndpi_next_pointer_past_the_end_is_truncation(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # NDPI's next-directory offsets are 64-bit: the high half counts too
    source = real_slide(NDPI)
    path, data = _copy(source, tmp_path)
    at, _ = _next_pointer(source, 1)
    data[at + 4 : at + 8] = struct.pack("<I", 1)
    path.write_bytes(bytes(data))
    with pytest.raises(wa.TruncatedFileError, match=r"image directory is at byte 4,29"):
        wa.open(path, reader="tifffile")


# -- G1: damaged JPEG tiles raise, never decode leniently to garbage ---------------------------


def _tile_span(source: Path, page: int, index: int) -> tuple[int, int]:
    with tifffile.TiffFile(source) as tif:
        pages = tif.series[0].levels[page].pages[0]
        return pages.dataoffsets[index], pages.databytecounts[index]


def test_random_bytes_inside_a_jpeg_tile_raise_corrupt_tile(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz G1 (tile_random): libjpeg's strict decode failed ("Corrupt JPEG data: ... extraneous
    # bytes", "Unsupported marker type"), the lenient retry returned 10,432 wrong pixels of
    # 57,600 in this tile, no error; OpenSlide says "premature end of data segment"
    source = real_slide(CMU)
    path, data = _copy(source, tmp_path)
    offset, count = _tile_span(source, 0, 20)  # row 2, column 0 of 13 rows x 10 columns
    start = offset + count // 2
    data[start : start + 512] = random.Random(15).randbytes(512)
    path.write_bytes(bytes(data))
    slide = wa.open(path, reader="tifffile")
    with pytest.raises(wa.CorruptTileError, match=r"tile at row 2, column 0 of level 0") as e:
        slide.read(level=0, left=0, top=480, width=240, height=240)
    assert str(path) in str(e.value)
    # the tiles around it still read as the original's
    original = wa.open(source, reader="tifffile")
    window = {"level": 0, "left": 240, "top": 480, "width": 240, "height": 240}
    np.testing.assert_array_equal(slide.read(**window), original.read(**window))


def test_random_bytes_inside_an_ndpi_restart_interval_raise_corrupt_tile(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # the restart intervals' decode (runs of 8, then interval by interval) is strict too
    source = real_slide(NDPI)
    path, data = _copy(source, tmp_path)
    offset, count = _tile_span(source, 0, 100)
    start = offset + count // 2
    data[start : start + 64] = random.Random(15).randbytes(64)
    path.write_bytes(bytes(data))
    slide = wa.open(path, reader="tifffile")
    with pytest.raises(wa.CorruptTileError, match=r"tile at row 100, column 0 of level 0") as e:
        slide.read(level=0, left=0, top=0, width=3968, height=8 * 120)
    assert str(path) in str(e.value)


# -- G2: offset 0 is damage, byte count 0 is absence -------------------------------------------


def _set_tile_entry(source: Path, data: bytearray, tag: str, index: int, value: int) -> None:
    with tifffile.TiffFile(source) as tif:
        at = tif.pages[0].tags[tag].valueoffset + 4 * index
    data[at : at + 4] = struct.pack("<I", value)


def test_a_tile_offset_of_0_with_bytes_is_damage_not_background(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz G2 (tile_offset): the tile was shown as background (white), silently
    source = real_slide(CMU)
    path, data = _copy(source, tmp_path)
    _set_tile_entry(source, data, "TileOffsets", 11, 0)  # row 1, column 1
    path.write_bytes(bytes(data))
    slide = wa.open(path, reader="tifffile")
    with pytest.raises(wa.CorruptTileError, match=r"row 1, column 1 of level 0 .*offset is 0") as e:
        slide.read(level=0, left=240, top=240, width=240, height=240)
    assert str(path) in str(e.value)


def test_a_tile_byte_count_of_0_is_absent_and_read_as_background(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # the convention (docs/formats.md), as OpenSlide: a tile the file does not store
    source = real_slide(CMU)
    path, data = _copy(source, tmp_path)
    _set_tile_entry(source, data, "TileByteCounts", 11, 0)
    path.write_bytes(bytes(data))
    pixels = wa.open(path, reader="tifffile").read(
        level=0, left=240, top=240, width=240, height=240
    )
    assert (np.asarray(pixels) == 255).all()


# -- F2: a SubIFD pyramid cut short ------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.2, 0.5])
def test_a_subifd_pyramid_cut_short_is_truncation_not_fewer_levels(
    tmp_path: Path, real_slide: Callable[[str], Path], keep: float
) -> None:
    # fuzz F2 (truncate): tifffile leaves out SubIFDs past the end; the OME-TIFF opened with
    # 1 of its 3 levels and no error
    source = real_slide("ome-tiff/test_pyramid.ome.tif")
    path, data = _copy(source, tmp_path)
    path.write_bytes(bytes(data[: int(len(data) * keep)]))
    with pytest.raises(wa.TruncatedFileError, match=r"is truncated") as e:
        wa.open(path, reader="tifffile")
    assert str(path) in str(e.value)


def test_a_file_the_tiff_reader_finds_damaged_is_offered_to_no_other_reader(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz crash ndpi-dapi/huge_size/15.232: ImageLength 4864 -> 2**31 - 1. The tiff reader
    # refused it, "auto" then offered it to OpenSlide, which aborted the process (SIGABRT
    # under a 4 GiB address space) reading a level
    source = real_slide(NDPI)
    path, data = _copy(source, tmp_path)
    _set_entry(data, _entry(source, 0, "ImageLength"), 4, struct.pack("<I", 2**31 - 1))
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match="damaged") as error:
        wa.open(path)
    assert str(path) in str(error.value)
    assert "openslide" not in str(error.value)


# -- A6/F4: an OME-XML the pages do not back up ------------------------------------------------

OS2 = "ome-tiff/OS-2-ndpi.ome.tif"
PYRAMID = "ome-tiff/test_pyramid.ome.tif"


def _edit_description(source: Path, tmp_path: Path, old: bytes, new: bytes) -> Path:
    """A copy whose first ImageDescription has ``old`` replaced by ``new`` (same length)."""
    path, data = _copy(source, tmp_path)
    with tifffile.TiffFile(source) as tif:
        tag = tif.pages[0].tags["ImageDescription"]
        start, end = tag.valueoffset, tag.valueoffset + tag.count
    at = data.index(old, start, end)
    data[at : at + len(old)] = new
    path.write_bytes(bytes(data))
    return path


def test_planes_the_ome_xml_declares_and_the_file_lacks_are_refused_at_open(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz A6 (ome-os2/description_edit/15.233): SizeZ 1 -> 1000000; tifffile zeroed the
    # missing planes and the tree hung building a million of them
    path = _edit_description(real_slide(OS2), tmp_path, b'SizeZ="1"', b'SizeZ="9"')
    with pytest.raises(
        wa.DamagedFileError, match=r"level 0 is declared as 9 pages .* holds 1"
    ) as e:
        wa.open(path)
    assert str(path) in str(e.value)


def test_an_ome_xml_declaring_more_planes_than_a_tiff_holds_is_refused_before_tifffile(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # tifffile's OME series lists every declared plane: SizeZ 10**8 took it 64 s and 1.6 GB
    path, data = _copy(real_slide(OS2), tmp_path)
    path.write_bytes(bytes(data))
    xml = tifffile.tiffcomment(path)
    tifffile.tiffcomment(path, xml.replace('SizeZ="1"', 'SizeZ="100000000"').encode())
    start = time.perf_counter()
    with pytest.raises(wa.DamagedFileError, match=r"OME-XML declares 300,000,000 planes") as e:
        wa.open(path)
    assert time.perf_counter() - start < 5
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # F4 (synthetic-ome/description_edit/15.90): a byte that is not UTF-8
        (b"<?xml", b"\xff?xml", r"OME-XML .* is not well-formed XML"),
        # F4 (synthetic-ome/description_edit/15.255): tifffile raised a ValueError
        (b'SizeC="1"', b'SizeC="x"', r"tifffile cannot make the images its OME-XML describes"),
    ],
    ids=["not-utf8", "size-c"],
)
def test_a_damaged_ome_xml_is_damage_not_its_first_page_alone(
    tmp_path: Path, real_slide: Callable[[str], Path], old: bytes, new: bytes, message: str
) -> None:
    # the tifffile reader raised a plain error, so "auto" offered the file to OpenSlide,
    # which opened level 0 of the 3-level SubIFD pyramid alone, without a word
    path = _edit_description(real_slide(PYRAMID), tmp_path, old, new)
    with pytest.raises(wa.DamagedFileError, match=message) as e:
        wa.open(path)
    assert str(path) in str(e.value)


# -- F3/F4: a page in a level's place that does not fit, the thumbnail never the slide ---------


def _set_value(data: bytearray, at: int, value: int, order: str = "<") -> None:
    """Rewrite the inline SHORT or LONG value of the classic TIFF entry at ``at``."""
    dtype = struct.unpack(f"{order}H", data[at + 2 : at + 4])[0]
    data[at + 8 : at + 12] = struct.pack(f"{order}{'H' if dtype == 3 else 'I'}", value).ljust(
        4, b"\x00"
    )


@pytest.mark.parametrize(
    ("page", "tag", "message"),
    [
        # fuzz ndpi-tritc/tag_type/16.213: tifffile read the level as 1-bit samples and moved
        # it into a series of its own; the NDPI opened with 2 of its 4 levels. Refused by the
        # chain walk now, before tifffile reads the page
        (2, "BitsPerSample", r"image directory 2 declares BitsPerSample of TIFF type 65535"),
        # fuzz ndpi-dapi/tag_value/16.626: level 3's width 496 -> 1; 3 of 4 levels
        (3, "ImageWidth", r"page 3 \(NDPI magnification 5.0\) is a 1 x 608 image"),
    ],
)
def test_an_ndpi_level_that_does_not_fit_the_pyramid_is_refused_not_dropped(
    tmp_path: Path, real_slide: Callable[[str], Path], page: int, tag: str, message: str
) -> None:
    source = real_slide(NDPI)
    path, data = _copy(source, tmp_path)
    at = _entry(source, page, tag)
    if tag == "BitsPerSample":
        data[at + 2 : at + 4] = struct.pack("<H", 65535)  # an unknown TIFF type
    else:
        _set_value(data, at, 1)
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=message) as e:
        wa.open(path)
    assert str(path) in str(e.value)
    if tag == "ImageWidth":
        assert "not a reduced copy of level 0 (a 3968 x 4864 image" in str(e.value)


def test_a_subifd_that_is_not_a_reduced_copy_of_level_0_is_refused(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz ome-pyramid/huge_size/16.523: level 0's width 16 -> 1,000,000; tifffile's OME
    # series failed, its generic one made each SubIFD an image of its own, and the file
    # opened as one 1,000,000 px wide level of uncompressed strips
    source = real_slide(PYRAMID)  # big-endian
    path, data = _copy(source, tmp_path)
    at = _entry(source, 0, "ImageWidth")
    data[at + 2 : at + 4] = struct.pack(">H", 4)  # LONG
    _set_value(data, at, 1_000_000, ">")
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=r"SubIFD 0 of level 0 is a 8 x 8 image") as e:
        wa.open(path)
    assert str(path) in str(e.value)


def test_an_aperio_slide_whose_description_is_lost_opens_as_its_pyramid_not_its_thumbnail(
    tmp_path: Path,
) -> None:
    # fuzz F4 (synthetic-svs-lzw/description_edit/16.893): without "Aperio" in the first
    # ImageDescription tifffile reads the file as a generic TIFF, and its largest image was the
    # stripped 1024 px thumbnail, opened as the slide
    from wsiarray.synthetic import write_aperio_svs

    path = write_aperio_svs(
        tmp_path / "slide.svs", size=(480, 480), downsamples=(1, 2), associated=False
    )
    expected = wa.open(path)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        data[tif.pages[0].tags["ImageDescription"].valueoffset] = 0  # an empty string
        assert tif.pages[1].imagewidth == 1024  # the thumbnail
    damaged = tmp_path / "damaged.svs"
    damaged.write_bytes(bytes(data))
    slide = wa.open(damaged)
    assert slide.metadata.format == "generic-tiff"
    assert slide.level_shapes == ((480, 480), (240, 240))
    window = {"level": 1, "left": 0, "top": 0, "width": 240, "height": 240}
    np.testing.assert_array_equal(slide.read(**window), expected.read(**window))


# -- F1: a chain of directories cut short by a next offset of 0 ---------------------------------


@pytest.mark.parametrize(
    ("name", "page"),
    [
        (TCGA, 1),  # level 0, thumbnail | level 1 lost
        (NDPI, 2),  # fuzz ndpi-tritc/ifd_next/16.220: level 3, macro and map lost
    ],
    ids=["svs", "ndpi"],
)
def test_a_chain_cut_by_a_next_offset_of_0_is_said_not_fewer_pages_quietly(
    tmp_path: Path, real_slide: Callable[[str], Path], name: str, page: int
) -> None:
    # a well-formed TIFF with fewer pages: tifffile and OpenSlide open the pages before the
    # cut without a word; the pages after it are in the file, used by nothing. A warning
    # and the slide's metadata say so (not an error: a de-identified slide looks the same)
    source = real_slide(name)
    path, data = _copy(source, tmp_path)
    at, _ = _next_pointer(source, page)
    data[at : at + 4] = b"\x00" * 4
    path.write_bytes(bytes(data))
    with pytest.warns(wa.DamagedFileWarning, match=r"bytes .* belong to no image directory"):
        slide = wa.open(path)
    (message,) = slide.tree.attrs["warnings"]
    assert str(path) in message
    assert "cut short" in message
    assert wa.open(source).tree.attrs["warnings"] == []


def test_zeros_after_the_last_image_are_not_a_cut_chain(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # padding, or an image an anonymiser wiped and unlinked, is no evidence of lost pages
    source = real_slide(CMU)
    path, data = _copy(source, tmp_path)
    path.write_bytes(bytes(data) + b"\x00" * 100_000)
    assert wa.open(path).level_shapes == ((2967, 2220),)
    path.write_bytes(bytes(data) + b"\x01" * 5_000)
    with pytest.warns(wa.DamagedFileWarning, match=r"last 5,000 bytes"):
        wa.open(path)


def test_a_de_identified_slide_opens_with_a_warning(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # a de-identifier unlinks the label and macro (and zeroes their strips, not all of
    # their tables): a good file whose last bytes nothing reaches, which must open
    source = real_slide(CMU)
    path, data = _copy(source, tmp_path)
    at, _ = _next_pointer(source, 0)  # level 0 -> thumbnail -> ...: keep level 0 only
    data[at : at + 4] = b"\x00" * 4
    path.write_bytes(bytes(data))
    with pytest.warns(wa.DamagedFileWarning, match="de-identified"):
        slide = wa.open(path)
    np.testing.assert_array_equal(slide.read(0, 0, 512, 512), wa.open(source).read(0, 0, 512, 512))


def test_a_level_of_another_aspect_is_refused_naming_it(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # tifffile's SVS series keeps a tiled page of any shape as a level
    source = real_slide(TCGA)
    path, data = _copy(source, tmp_path)
    _set_value(data, _entry(source, 2, "ImageLength"), 3000)  # level 1: 2221 x 1783
    path.write_bytes(bytes(data))
    with pytest.raises(
        wa.DamagedFileError, match=r"level 1 is a 2221 x 3000 image .* not a reduce"
    ):
        wa.open(path)


def test_a_subifd_level_with_a_0_tile_size_is_damage_offered_to_no_other_reader(
    tmp_path: Path,
) -> None:
    # fuzz synthetic-ome/tag_value/16.25: TileLength 128 -> 0 in SubIFD level 1; the tiff
    # reader refused it as unsupported, so "auto" gave it to OpenSlide, which opened level 0
    # of the 3-level SubIFD pyramid alone
    path = _subifd_pyramid(tmp_path / "pyramid.ome.tif")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tif.filehandle.seek(tif.pages[0].subifds[0])
        _set_value(data, tifffile.TiffPage(tif, index=(0, 0)).tags["TileLength"].offset, 0)
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=r"the SubIFD at byte .* declares TileLength = 0"):
        wa.open(path)


# -- seed 17: layout tags, a level 0 in a SubIFD's place, an associated image's strips ---------


@pytest.mark.parametrize(
    ("tag", "dtype", "value", "message"),
    [
        # svs-j2k-tcga/tag_type/17.35: "no installed codec" for compression 0, so "auto"
        # opened the file with OpenSlide, without level 1
        ("Compression", 12, None, r"declares Compression as 1 value\(s\) of TIFF type 12"),
        # svs-j2k-tcga/ifd_flip/17.978: tifffile raised TypeError reading the page
        ("SamplesPerPixel", 2, None, r"declares SamplesPerPixel as 1 value\(s\) of TIFF type 2"),
        # synthetic-svs-lzw/ifd_flip/17.310: tifffile read the level as separate planes
        ("PlanarConfiguration", None, 5, r"declares PlanarConfiguration = 5"),
    ],
)
def test_a_level_whose_pixel_layout_tag_is_damaged_is_refused(
    tmp_path: Path,
    real_slide: Callable[[str], Path],
    tag: str,
    dtype: int | None,
    value: int | None,
    message: str,
) -> None:
    source = real_slide(TCGA)
    path, data = _copy(source, tmp_path)
    at = _entry(source, 2, tag)  # level 1
    if dtype is not None:
        data[at + 2 : at + 4] = struct.pack("<H", dtype)
    if value is not None:
        _set_value(data, at, value)
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=rf"image directory 2 {message}") as e:
        wa.open(path)
    assert str(path) in str(e.value)


def test_a_level_0_too_small_for_its_subifds_is_refused_not_replaced_by_one(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # synthetic-ome/tag_value/17.554: level 0's ImageLength 600 -> 2; tifffile's OME series
    # failed, and its generic one made a SubIFD the largest image: opened as level 1 alone
    source = real_slide(PYRAMID)  # 16 x 16, SubIFDs 8 x 8 and 4 x 4
    path, data = _copy(source, tmp_path)
    _set_value(data, _entry(source, 0, "ImageLength"), 2, ">")
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=r"SubIFD 0 of page 0 is a 8 x 8 image") as e:
        wa.open(path)
    assert "not a reduced copy of page 0 (a 16 x 2 image" in str(e.value)


def test_an_associated_image_whose_strips_do_not_cover_it_is_refused_at_open(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # qptiff-vectra/huge_size/17.117: the thumbnail's ImageLength -> 10**6 over its 90 strips;
    # tifffile only logs the strip count, and reading the thumbnail allocated 1.8 GiB
    source = real_slide(CMU)
    path, data = _copy(source, tmp_path)
    at = _entry(source, 1, "ImageLength")  # the thumbnail: 574 x 768 in 48 strips
    data[at + 2 : at + 4] = struct.pack("<H", 4)
    _set_value(data, at, 1_000_000)
    path.write_bytes(bytes(data))
    with pytest.raises(
        wa.DamagedFileError,
        match=r"the thumbnail image is a 574 x 1000000 image .* lists 48 offsets",
    ):
        wa.open(path)


# -- seed 18: a missing size, an empty SubIFDs tag, a level's codec unlike level 0's -----------


def test_a_directory_without_image_width_is_refused(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # synthetic-svs-jpeg/ifd_flip/18.275: a flipped bit renamed level 2's ImageWidth tag;
    # tifffile's SVS series divided by the 0 width, and "auto" opened 2 of 3 levels with
    # OpenSlide
    source = real_slide(TCGA)
    path, data = _copy(source, tmp_path)
    at = _entry(source, 2, "ImageWidth")
    data[at : at + 2] = struct.pack("<H", 255)  # SubfileType, which the entry before is not
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=r"image directory 2 declares a None x 1783"):
        wa.open(path)


def _subifd_pyramid(path: Path) -> Path:
    """A 3-level OME-TIFF SubIFD pyramid written by tifffile (deflate, 128 px tiles)."""
    base = np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    options = {"tile": (128, 128), "compression": "zlib", "photometric": "rgb"}
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(base, subifds=2, **options)
        for step in (2, 4):
            tif.write(base[::step, ::step], subfiletype=1, **options)
    return path


def test_a_subifds_tag_listing_no_offsets_is_refused(tmp_path: Path) -> None:
    # synthetic-ome/tag_count/18.464: SubIFDs' count 2 -> 0 hid both reduced levels
    path = _subifd_pyramid(tmp_path / "pyramid.ome.tif")
    data = bytearray(path.read_bytes())
    at = _entry(path, 0, "SubIFDs")
    data[at + 4 : at + 8] = struct.pack("<I", 0)
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=r"declares SubIFDs as 0 value\(s\)"):
        wa.open(path)


def test_a_level_in_a_codec_unlike_level_0_that_none_decodes_is_damage(tmp_path: Path) -> None:
    # synthetic-ome/tag_value/18.171: SubIFD level 1's Compression 8 -> 9 (JBIG): "no
    # installed codec" let "auto" open the file with OpenSlide, which reads no SubIFDs
    path = _subifd_pyramid(tmp_path / "pyramid.ome.tif")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tif.filehandle.seek(tif.pages[0].subifds[0])
        _set_value(data, tifffile.TiffPage(tif, index=(0, 0)).tags["Compression"].offset, 9)
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=r"level 1 declares compression JBIG_BW"):
        wa.open(path)


# -- seed 104729: a size its stored bytes cannot hold ---------------------------------------


def test_a_width_its_lzw_strips_cannot_hold_is_refused_at_open(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz seed 104729 (qptiff-vectra/huge_size/104729.581): level 0's ImageWidth 1,920 ->
    # 10**6 kept its 90 strips of 16 rows, so the strip count matched; the compat thumbnail
    # read the whole level and allocated 1.34 GiB before its first strip failed to decode.
    # That page is now also a channel left out of level 0 (the test below); the thumbnail's
    # 23 strips (480 x 360, 16 rows each) are only caught by their byte counts
    source = real_slide("qptiff/small_vectra.qptiff")
    path, data = _copy(source, tmp_path)
    at = _entry(source, 3, "ImageWidth")
    data[at + 2 : at + 4] = struct.pack("<H", 4)  # LONG, to hold 10**6
    _set_value(data, at, 1_000_000)
    path.write_bytes(bytes(data))
    with pytest.raises(
        wa.DamagedFileError,
        match=r"the thumbnail image: its strip 0 holds 5,310 bytes of LZW data, which cannot "
        r"decode to the 48,000,000 bytes the image's size declares \(at most 1,365 per byte\)",
    ) as e:
        wa.open(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    ("compression", "encode"),
    [
        (5, imagecodecs.lzw_encode),
        (8, lambda data: zlib.compress(data, 9)),
        (32773, imagecodecs.packbits_encode),
    ],
)
def test_the_expansion_bounds_hold_what_the_codecs_make_of_a_run_of_one_byte(
    compression: int, encode: Callable[[bytes], bytes]
) -> None:
    # a run of one value is what each codec compresses best: the bound refuses no tile a real
    # encoder writes (over 256 KiB: LZW
    # 299, deflate 946, PackBits 64 bytes per byte)
    from wsiarray.sources._tiffpages import EXPANSION_SLACK, MAX_EXPANSION

    data = bytes(1 << 18)  # imagecodecs' PackBits takes 3 s over 1 MB, 41 s over 4 MB
    encoded = encode(data)
    assert len(data) <= len(encoded) * MAX_EXPANSION[compression] + EXPANSION_SLACK


def _lzw_zeros(length: int, clear_at: int | None) -> bytes:
    """TIFF LZW (most significant bit first, early change) of ``length`` zero bytes: each
    code the longest string in the table, the table cleared when it holds ``clear_at``
    entries (never, for ``None``)."""
    out, acc, held = bytearray(), 0, 0

    def put(code: int, width: int) -> None:
        nonlocal acc, held
        acc, held = (acc << width) | code, held + width
        while held >= 8:
            held -= 8
            out.append((acc >> held) & 0xFF)
        acc &= (1 << held) - 1

    put(256, 9)
    next_code, width, done = 258, 9, 0
    while done < length:
        run = min(next_code - 257, length - done)  # the string "0" * run is code 256 + run
        put(256 + run if run > 1 else 0, width)
        done += run
        next_code = min(next_code + 1, 4096)
        if next_code + 1 > 1 << width and width < 12:
            width += 1
        if clear_at is not None and next_code >= clear_at:
            put(256, width)
            next_code, width = 258, 9
    put(257, width)
    if held:
        put(0, 8 - held)
    return bytes(out)


def test_no_lzw_stream_the_decoder_takes_expands_past_the_bound() -> None:
    # the LZW bound is imagecodecs' decoder's: a run of one byte, each code the longest
    # string, with the table cleared when full (at 4,096 entries, as late as the decoder
    # takes). Its ratio grows with the stream towards one clear cycle's, 1,362.4 bytes per
    # byte (the bound was 1,320 from 30 MB, and refused a valid libtiff strip of 64 MB at
    # 1,333). Without clear codes the stream could go on at 3,838 bytes per 12-bit code
    # (2,558 per byte), and the decoder refuses it
    from wsiarray.sources._tiffpages import MAX_EXPANSION

    data = bytes(20_000_000)
    stream = _lzw_zeros(len(data), clear_at=4096)
    assert imagecodecs.lzw_decode(stream) == data
    assert 1300 < len(data) / len(stream) <= MAX_EXPANSION[5]
    # 1 GB is not decoded here: its stream is the same cycles as the 20 MB one's, more of them
    longest = 1_000_000_000 / len(_lzw_zeros(1_000_000_000, clear_at=4096))
    assert 1360 < longest <= MAX_EXPANSION[5]
    cycle = 3838 * 3839 // 2  # bytes one clear cycle decodes to
    per_cycle = len(_lzw_zeros(200 * cycle, 4096)) - len(_lzw_zeros(100 * cycle, 4096))
    assert 100 * cycle / per_cycle <= MAX_EXPANSION[5]
    with pytest.raises(imagecodecs.LzwError, match="TABLE_TOO_SMALL"):
        imagecodecs.lzw_decode(_lzw_zeros(len(data), clear_at=None))


def test_a_valid_libtiff_lzw_strip_of_one_grey_is_not_refused(tmp_path: Path) -> None:
    # libtiff's own LZW (Pillow's libtiff writer) of 8,192 x 8,192 of one grey in one strip:
    # 1,333 bytes per stored byte, a valid file the 1,320 bound refused as damaged
    from PIL import Image, TiffImagePlugin

    path = tmp_path / "grey.tif"
    pillow_writer = TiffImagePlugin.WRITE_LIBTIFF
    TiffImagePlugin.WRITE_LIBTIFF = True
    try:
        Image.new("L", (8192, 8192), 200).save(path, compression="tiff_lzw", tiffinfo={278: 8192})
    finally:
        TiffImagePlugin.WRITE_LIBTIFF = pillow_writer
    with tifffile.TiffFile(path) as tif:
        count = tif.pages[0].databytecounts
        assert tif.pages[0].compression == 5
        assert len(count) == 1
        assert 8192 * 8192 / count[0] > 1320
    slide = wa.open(path)
    assert slide.level_shapes[0] == (8192, 8192)
    assert (slide.read(8000, 8000, 192, 192) == 200).all()


@pytest.mark.parametrize(
    ("page", "tag", "value", "message"),
    [
        # tifffile groups a QPTIFF's channel pages by size: the Cy3 page made 1 px narrower
        # or shorter became a series of its own, and the slide opened with DAPI and FITC only
        (2, "ImageWidth", 1919, r"level 0 is page\(s\) 0, 1 .* leaves out page\(s\) 2 \(a 1919"),
        (2, "ImageLength", 1439, r"leaves out page\(s\) 2 \(a 1920 x 1439 image"),
        # fuzz seed 104729 (qptiff-vectra/huge_size/104729.581), DAPI 10**6 px wide: level 0
        # became that one page (and its strips could not hold it)
        (0, "ImageWidth", 1_000_000, r"level 0 is page\(s\) 0 \(a 1000000 x 1440 image"),
    ],
)
def test_a_qptiff_channel_page_of_another_size_is_refused_not_left_out(
    tmp_path: Path, real_slide: Callable[[str], Path], page: int, tag: str, value: int, message: str
) -> None:
    source = real_slide("qptiff/small_vectra.qptiff")
    path, data = _copy(source, tmp_path)
    at = _entry(source, page, tag)
    data[at + 2 : at + 4] = struct.pack("<H", 4)  # LONG
    _set_value(data, at, value)
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=message) as e:
        wa.open(path)
    assert "describe themselves as full-resolution channels" in str(e.value)
    assert wa.open(source).metadata.channels == ("DAPI", "FITC", "Cy3")


def test_an_ndpi_level_1_px_off_its_sampling_step_is_refused_not_dropped(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz seed 31337 (ndpi-tritc/tag_value/31337.695): level 3's ImageLength 608 -> 607 is
    # still a reduced copy of level 0 (sides rounded either way), but tifffile takes a level
    # only at level 2's size divided by a sampling factor, exactly: 3 of 4 levels, silently
    source = real_slide(NDPI)
    path, data = _copy(source, tmp_path)
    _set_value(data, _entry(source, 3, "ImageLength"), 607)
    path.write_bytes(bytes(data))
    with pytest.raises(
        wa.DamagedFileError, match=r"page 3 \(NDPI magnification 5.0\) is a 496 x 607 image"
    ) as e:
        wa.open(path)
    assert "tifffile leaves it out of the pyramid (3 of 4 levels)" in str(e.value)
    assert wa.open(source).level_count == 4


def test_an_ndpi_level_a_sampling_step_from_the_one_above_by_its_magnification_is_a_level(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # levels x40, x10, x5 (x20 unlinked from the chain): tifffile takes x10 (a step of 4) and
    # leaves x5 out (a step of 2), but its Magnification and size make it a level, as
    # OpenSlide reads it: a level, not damage
    source = real_slide(NDPI)
    path, data = _copy(source, tmp_path)
    at, offsets = _next_pointer(source, 0)
    data[at : at + 4] = struct.pack("<I", offsets[2])
    path.write_bytes(bytes(data))
    with tifffile.TiffFile(path) as tif:
        assert [level.shape[:2] for level in tif.series[0].levels] == [(4864, 3968), (1216, 992)]
    with tifffile.TiffFile(source) as tif:
        x5 = tif.pages[3].asarray()
    slide = wa.open(path)
    assert slide.level_shapes == ((4864, 3968), (1216, 992), (608, 496))
    assert slide.metadata.format == wa.open(source).metadata.format
    assert np.array_equal(slide.read(0, 0, 496, 608, level=2), x5)


def test_a_qptiff_channel_directory_linked_in_twice_is_refused(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz seed 65537 (qptiff-vectra/duplicate_ifd/65537.994): DAPI's directory copied to the
    # end of the file and linked after itself; the slide opened with 4 channels (DAPI twice)
    source = real_slide("qptiff/small_vectra.qptiff")
    path, data = _copy(source, tmp_path)
    at, _ = _next_pointer(source, 0)
    first = struct.unpack("<I", data[4:8])[0]
    copy = len(data)
    data += data[first : at + 4]  # the directory, its next pointer still page 1
    data[at : at + 4] = struct.pack("<I", copy)
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=r"level 0: its pages 0 and 1 are one image"):
        wa.open(path)


def test_channel_pages_that_share_one_stored_strip_are_not_one_directory_twice(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # writers may store a blank tile once for several pages (tifftools, large_image): FITC's
    # first strip pointed at DAPI's is two pages sharing data, not a directory linked twice
    source = real_slide("qptiff/small_vectra.qptiff")
    path, data = _copy(source, tmp_path)
    with tifffile.TiffFile(source) as tif:
        dapi, fitc = tif.pages[0], tif.pages[1]
        offsets_at = fitc.tags["StripOffsets"].valueoffset
        counts_at = fitc.tags["StripByteCounts"].valueoffset
        first_offset, first_count = dapi.dataoffsets[0], dapi.databytecounts[0]
        rows = dapi.rowsperstrip
    data[offsets_at : offsets_at + 4] = struct.pack("<I", first_offset)
    data[counts_at : counts_at + 4] = struct.pack("<I", first_count)
    path.write_bytes(bytes(data))
    slide = wa.open(path)
    assert slide.metadata.channels == ("DAPI", "FITC", "Cy3")
    pixels = slide.read(0, 0, 1920, 2 * rows)
    original = wa.open(source).read(0, 0, 1920, 2 * rows)
    assert np.array_equal(pixels[:rows, :, 1], original[:rows, :, 0])  # FITC's strip is DAPI's
    assert np.array_equal(pixels[rows:], original[rows:])


# -- seed 424242: how samples are read, declared otherwise -------------------------------------


def test_a_sample_format_not_of_integers_is_refused(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz seed 424242 (ome-os2/tag_type/424242.331): SampleFormat SHORT -> DOUBLE, a number
    # tifffile could not read; wsiarray read the level as before
    source = real_slide("ome-tiff/OS-2-ndpi.ome.tif")
    path, data = _copy(source, tmp_path)
    at = _entry(source, 0, "SampleFormat")
    order = "<" if data[:2] == b"II" else ">"
    width = 8 if data[2:4] in (b"\x2b\x00", b"\x00\x2b") else 4  # BigTIFF's 8-byte count
    assert width == 4, "OS-2 is a classic TIFF"
    data[at + 2 : at + 4] = struct.pack(f"{order}H", 12)
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=r"declares SampleFormat of TIFF type 12"):
        wa.open(path)


def test_a_page_of_a_level_laid_out_unlike_the_others_is_refused(
    tmp_path: Path, real_slide: Callable[[str], Path]
) -> None:
    # fuzz seed 424242 (qptiff-vectra/tag_value/424242.1471): DAPI's BitsPerSample 8 -> 3;
    # tifffile decodes every channel as the first page says: all three as 3-bit samples,
    # wrong pixels without an error (now refused as a depth no level has, the next test).
    # Here FITC's 8 -> 16: FITC would have been read as DAPI's 8 bits
    source = real_slide("qptiff/small_vectra.qptiff")
    path, data = _copy(source, tmp_path)
    _set_value(data, _entry(source, 1, "BitsPerSample"), 16)
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=r"page 1 declares bitspersample = 16 where"):
        wa.open(path)


@pytest.mark.parametrize("compression", ["lzw", "zlib", "packbits", None])
def test_a_level_whose_bits_per_sample_became_a_packed_depth_is_refused(
    tmp_path: Path, compression: str | None
) -> None:
    # the same damage on a level of one page: 8 -> 3 over LZW gave 3-bit pixels from 8-bit
    # data, 124 levels off on average, as tifffile reads them too
    image = np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    path = tmp_path / "lzw.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression=compression, photometric="rgb")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        at = tif.pages[0].tags["BitsPerSample"].valueoffset
    data[at : at + 6] = struct.pack("<3H", 3, 3, 3)
    path.write_bytes(bytes(data))
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].bitspersample == 3  # tifffile reads it, unpacked
    with pytest.raises(
        wa.DamagedFileError, match=r"level 0: its tile 0 decodes to .* 3-bit samples"
    ) as e:
        wa.open(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("compression", ["lzw", "deflate", "packbits", "none"])
@pytest.mark.parametrize(("bits", "tile"), [(4, True), (4, False), (1, False)])
def test_a_level_of_a_packed_depth_is_read_as_tifffile_reads_it(
    tmp_path: Path, compression: str, bits: int, tile: bool
) -> None:
    # a packed depth is valid TIFF, which the check above must not refuse: 4-bit tiles and
    # strips and 1-bit strips written by libvips, read equal to tifffile's reading
    pyvips = pytest.importorskip("pyvips", reason="pyvips (a test dependency) writes them")
    image = np.random.default_rng(bits).integers(0, 256, (700, 500), dtype=np.uint8)
    path = tmp_path / f"packed{bits}.tif"
    pyvips.Image.new_from_array(image).tiffsave(
        str(path), compression=compression, bitdepth=bits, tile=tile, predictor="none"
    )
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].bitspersample == bits
        assert tif.pages[0].is_tiled == tile
        expected = tif.asarray()
    slide = wa.open(path)
    assert np.array_equal(slide.read(0, 0, 500, 700)[..., 0], expected)


def test_a_level_of_12_bits_is_read_as_tifffile_reads_it(tmp_path: Path) -> None:
    image = np.random.default_rng(12).integers(0, 4096, (700, 500), dtype=np.uint16)
    path = tmp_path / "packed12.tif"
    tifffile.imwrite(path, image, tile=(256, 256), photometric="minisblack", bitspersample=12)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].bitspersample == 12
    assert np.array_equal(wa.open(path).read(0, 0, 500, 700)[..., 0], image)


# -- layout tags damaged (fuzz seeds 7919 to 1618033): one value that describes no image ---


def _set_count(data: bytearray, at: int, count: int) -> None:
    data[at + 4 : at + 8] = struct.pack("<I", count)


def _set_code(data: bytearray, at: int, code: int) -> None:
    data[at : at + 2] = struct.pack("<H", code)


def _set_type(data: bytearray, at: int, dtype: int) -> None:
    data[at + 2 : at + 4] = struct.pack("<H", dtype)


@pytest.mark.parametrize(
    ("slide", "page", "tag", "edit", "message"),
    [
        # fuzz seed 7919 (synthetic SVS, level 1's TileWidth 240 -> 0): tifffile took the page
        # for a stripped image, and the slide opened with 2 of its 3 levels
        (
            TCGA,
            2,
            "TileWidth",
            lambda d, at: _set_value(d, at, 0),
            r"image directory 2 declares TileWidth = 0",
        ),
        # fuzz seed 7919 (QPTIFF level 0: LZW -> CCITT RLE): decoded without an error into
        # wrong pixels; CCITT is for 1-bit images only
        (
            CMU,
            0,
            "Compression",
            lambda d, at: _set_value(d, at, 2),
            r"Compression 2 \(CCITT, for 1-bit images\)",
        ),
        # fuzz seed 65537 (svs-cmu1/tag_value/65537.464): Photometric RGB -> MINISWHITE;
        # libjpeg guessed the three samples were YCbCr, and level 0 read 47 levels off on
        # average, with no error (OpenSlide read it grey)
        (
            CMU,
            0,
            "PhotometricInterpretation",
            lambda d, at: _set_value(d, at, 0),
            r"SamplesPerPixel = 3 .* photometric MINISWHITE",
        ),
        # svs-j2k-tcga/tag_value/27182818.73: tifffile raised IndexError building its series,
        # and "auto" opened the slide with OpenSlide, which dropped the level
        (TCGA, 2, "SamplesPerPixel", lambda d, at: _set_value(d, at, 0), r"SamplesPerPixel = 0;"),
        # svs-j2k-tcga/ifd_flip/27182818.1477: ImageDepth of 9 values, the same way
        (TCGA, 2, "ImageDepth", lambda d, at: _set_count(d, at, 9), r"ImageDepth as 9 value"),
        # synthetic-svs-j2k/ifd_flip/27182818.250: TileWidth's code flipped; tifffile read the
        # level as strips, and it became the slide's label
        (TCGA, 2, "TileWidth", lambda d, at: _set_code(d, at, 66), r"TileLength without TileW"),
        # svs-cmu1/tag_value/27182818.195: new-style JPEG tiles decoded as old-style JPEG,
        # 48 levels off on average, silently
        (CMU, 0, "Compression", lambda d, at: _set_value(d, at, 6), r"and compression OJPEG;"),
        # svs-cmu1/tag_value/27182818.421: RGB JPEG read as a transparency mask
        (CMU, 0, "PhotometricInterpretation", lambda d, at: _set_value(d, at, 4), r"MASK"),
        # fuzz seed 1618033 (synthetic-svs-lzw/tag_type/1618033.954): RowsPerStrip LONG ->
        # UNDEFINED made tifffile raise TypeError reading the page; that level was left out
        (TCGA, 1, "RowsPerStrip", lambda d, at: _set_type(d, at, 7), r"RowsPerStrip of TIFF t"),
        # fuzz seed 1618033 (ome-os2/ifd_flip/1618033.47): SampleFormat 1 -> 33 is no data
        # type (tifffile's dtype None); the JPEG tiles were read as the OME-XML's uint8
        (OS2, 0, "SampleFormat", lambda d, at: _set_value(d, at, 33, ">"), r"SampleFormat = 33"),
    ],
)
def test_layout_tags_at_odds_with_each_other_are_refused(
    tmp_path: Path,
    real_slide: Callable[[str], Path],
    slide: str,
    page: int,
    tag: str,
    edit: Callable[[bytearray, int], None],
    message: str,
) -> None:
    source = real_slide(slide)
    path, data = _copy(source, tmp_path)
    edit(data, _entry(source, page, tag))
    path.write_bytes(bytes(data))
    with pytest.raises(wa.DamagedFileError, match=message) as e:
        wa.open(path)
    assert str(path) in str(e.value)


def test_an_ome_xml_declaring_channels_the_pages_lack_is_damage_not_offered_to_openslide(
    tmp_path: Path,
) -> None:
    # fuzz seed 31415926 (synthetic-ome/description_edit/31415926.858): SizeC 3 -> 99 over
    # RGB pages made 33 planes (axes CYXS) of which the file holds 1. That layout was refused
    # as unsupported first, and "auto" gave the file to OpenSlide, which opened its first
    # page without the SubIFD levels: 1 of 3 levels, no error
    source = _subifd_pyramid(tmp_path / "source.ome.tif")
    (tmp_path / "copy").mkdir()
    path = _edit_description(source, tmp_path / "copy", b'SizeC="3"', b'SizeC="9"')
    with pytest.raises(wa.DamagedFileError, match=r"level 0 is declared as 3 pages \(C=3"):
        wa.open(path)
    assert wa.open(source).level_count == 3
