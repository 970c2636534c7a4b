"""The chain of image directories of a TIFF file, walked and checked before tifffile parses it.

tifffile believes what a directory declares: a chain that loops, a size of a float type, a
SamplesPerPixel of 0 or a tile side without the other made it hang, allocate, raise a
stray exception or leave a level out (issue 15's fuzzing). :func:`check_ifd_chain` reads
every directory's entries (and SubIFDs') once, bounds the walk, and refuses what no writer
makes, naming the directory, so that "auto" does not give a damaged file to another reader.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Literal, NamedTuple

import tifffile

from wsiarray.errors import DamagedFileError, TruncatedFileError

__all__ = ["Chain", "check_ifd_chain"]


#: ImageWidth and ImageLength, and the byte sizes of the TIFF types they may have
#: (SHORT, LONG, LONG8).
SIZE_TAGS = (256, 257)

INTEGER_TYPE_SIZES = {3: 2, 4: 4, 16: 8}

#: Byte sizes of the TIFF types (BYTE ... IFD8).
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
              16: 8, 17: 8, 18: 8}  # fmt: skip

#: SubIFDs, and the byte sizes of the TIFF types its offsets may have (LONG, IFD, LONG8, IFD8).
SUBIFDS_TAG = 330

SUBIFD_TYPE_SIZES = {4: 4, 13: 4, 16: 8, 18: 8}

#: Tags that size an image or its tiles: ImageWidth, ImageLength, TileWidth, TileLength.
GEOMETRY_TAGS = (256, 257, 322, 323)

#: Tags of one integer that say how to read the pixels: Compression, PhotometricInterpretation,
#: SamplesPerPixel, PlanarConfiguration, Predictor, ImageDepth, TileDepth. tifffile reads one
#: of another type or count as a float or tuple (and raised TypeError reading the page:
#: "slice indices must be integers"; an SVS level's ImageDepth of 9 values, fuzz seed
#: 27182818, made tifffile fail and "auto" open the slide with OpenSlide, which dropped that
#: level), or as 0, an unknown compression.
LAYOUT_TAGS = (259, 262, 277, 284, 317, 32997, 32998)

#: RowsPerStrip, an integer in a directory of strips (tifffile ignores it where there are
#: tiles, and takes the whole image for a strip where it has several values): one made
#: UNDEFINED made tifffile raise TypeError reading the page, and "auto" gave the slide to
#: OpenSlide, without that level (fuzz seed 1618033: synthetic-svs-lzw/tag_type/1618033.954).
ROWS_PER_STRIP_TAG = 278

#: PlanarConfiguration and its values (contiguous, separate): tifffile reads another as
#: separate planes, with a warning; the level left the pyramid.
PLANAR_TAG, PLANAR_VALUES = 284, (1, 2)

#: Tags of integers, one or more: BitsPerSample and the strip and tile tables. tifffile
#: reads one of another type as what that type says: TileByteCounts made FLOAT (fuzz seed
#: 2026: ome-os2/tag_type/2026.1399) or BYTE gave counts of 0 or of single bytes, tiles
#: read as absent (background), silently; BitsPerSample of an unknown type (65535,
#: svs-cmu1/tag_type/2026.485) silently wrong pixels. ExtraSamples and SampleFormat too: a
#: SampleFormat made DOUBLE (fuzz seed 424242: ome-os2/tag_type/424242.331) was a number
#: tifffile could not read, and wsiarray read the level as it was before.
INTEGERS_TAGS = (258, 273, 279, 324, 325, 338, 339)

#: The tags the chain walk reads in every directory.
WALKED_TAGS = frozenset(
    (*GEOMETRY_TAGS, *LAYOUT_TAGS, *INTEGERS_TAGS, ROWS_PER_STRIP_TAG, SUBIFDS_TAG)
)

#: SamplesPerPixel beyond which a directory is taken for damaged: channels of fluorescence
#: slides are pages, not samples, and a tile of more samples would be mostly declaration.
MAX_SAMPLES = 64

#: Image directories beyond which a chain is taken for damaged (a long time series has
#: thousands of pages; tifffile stops counting at 2**32).
MAX_DIRECTORIES = 1_000_000


class Chain(NamedTuple):
    """What the walk of the chain of directories found."""

    #: The byte where the last of the directories (SubIFDs too) and of their values stored
    #: apart ends.
    end: int
    #: Each SubIFD's offset → the index of the directory in the chain that lists it.
    subifd_owners: dict[int, int]


def check_ifd_chain(fh: BinaryIO, size: int, path: str, *, ndpi: bool = False) -> Chain:
    """Walk the chain of image directories, refusing a cut-off file, a loop and a 0-pixel image.

    Bounded: each directory is visited once, at most :data:`MAX_DIRECTORIES` of them, each
    within the file. ``ndpi``: the file is read as NDPI (tifffile does so by its name), whose
    next-directory offsets are 64-bit.

    tifffile drops directories past the end of a cut-off file with only a log message,
    which would silently hide levels or associated images. A directory whose ImageWidth or
    ImageLength is 0 (libtiff refuses it) made tifffile divide by zero while grouping pages
    into series, or drop the page: a file whose level 0 said 0 opened as its level 1.

    Raises
    ------
    TruncatedFileError
        A directory lies past the end of the file.
    UnsupportedFormatError
        A directory declares a 0-pixel wide or high image, or the chain loops.
    """
    fh.seek(0)
    header = fh.read(16)
    order: Literal["little", "big"] = "little" if header[:2] == b"II" else "big"
    big = int.from_bytes(header[2:4], order) == 43
    count_size, entry_size, offset_size = (8, 20, 8) if big else (2, 12, 4)
    offset = int.from_bytes(header[8:16] if big else header[4:8], order)
    if ndpi and not big and order == "little":
        offset_size = 8  # NDPI: the next directory's offset, then its high 32 bits
    seen: dict[int, int] = {}
    previous = 0
    last = len(header)
    owners: dict[int, int] = {}
    while offset:
        if offset in seen:
            # tifffile finds no loop in an NDPI (it read pages forever) and drops the
            # directories after a loop elsewhere: a quietly smaller pyramid
            msg = (
                f"{path}: image directory {len(seen) - 1} (at byte {previous:,}) points back "
                f"to directory {seen[offset]} (at byte {offset:,}) as the next one: the chain "
                "of directories loops, so the file is damaged"
            )
            raise DamagedFileError(msg)
        if len(seen) >= MAX_DIRECTORIES:
            msg = (
                f"{path}: the file's chain of image directories goes on past "
                f"{MAX_DIRECTORIES:,} directories; the file is damaged"
            )
            raise DamagedFileError(msg)
        seen[offset] = len(seen)
        previous = offset
        fh.seek(offset)
        count_bytes = fh.read(count_size)
        count = int.from_bytes(count_bytes, order)
        end = offset + count_size + count * entry_size + offset_size
        if len(count_bytes) < count_size or end > size:
            msg = (
                f"{path} is truncated: it has {size:,} bytes but an image directory is at "
                f"byte {offset:,}. Copy the file again completely."
            )
            raise TruncatedFileError(msg)
        entries = fh.read(count * entry_size + offset_size)
        tags = _directory_tags(entries, count, entry_size, order)
        # a size whose count changed is named as such, not as values past the end
        _check_size_types(tags, order, f"{path}: image directory {len(seen) - 1}")
        _check_layout_values(tags, order, f"{path}: image directory {len(seen) - 1}")
        values_end, tag = _values_end(entries, count, entry_size, order)
        if values_end > size:
            name = tifffile.TIFF.TAGS.get(tag, str(tag))
            msg = (
                f"{path} is truncated or damaged: it has {size:,} bytes but the {name} values "
                f"of image directory {len(seen) - 1} end at byte {values_end:,}. Copy the file "
                "again completely."
            )
            raise TruncatedFileError(msg)
        last = max(last, end, values_end)
        width, length = (_inline_value(tags, tag, order) for tag in SIZE_TAGS)
        if not width or not length:
            # a missing size is 0 to tifffile: its SVS series divided by it (fuzz seed 18)
            missing = "; None: the tag is missing" if None in (width, length) else ""
            msg = (
                f"{path}: image directory {len(seen) - 1} declares a {width} x {length} image "
                f"(ImageWidth x ImageLength){missing}; an image cannot be 0 pixels wide or "
                "high, so the file is damaged"
            )
            raise DamagedFileError(msg)
        where = f"{path}: image directory {len(seen) - 1}"
        for what, at in _subifd_offsets(fh, tags, order, size, where):
            if at + count_size > size:
                # tifffile leaves out SubIFDs past the end with a log message: a SubIFD
                # pyramid cut short opened with 1 of its 3 levels
                msg = (
                    f"{path} is truncated: it has {size:,} bytes but image directory "
                    f"{len(seen) - 1} lists {what} at byte {at:,}. Copy the file again "
                    "completely."
                )
                raise TruncatedFileError(msg)
            if what == "a SubIFD":
                owners[at] = len(seen) - 1
                fh.seek(at)
                sub_count = int.from_bytes(fh.read(count_size), order)
                if at + count_size + sub_count * entry_size > size:
                    msg = (
                        f"{path} is truncated: it has {size:,} bytes but the SubIFD at byte "
                        f"{at:,} of image directory {len(seen) - 1} ends past it. Copy the file "
                        "again completely."
                    )
                    raise TruncatedFileError(msg)
                sub_entries = fh.read(sub_count * entry_size)
                sub_tags = _directory_tags(sub_entries, sub_count, entry_size, order)
                sub_where = f"{path}: the SubIFD at byte {at:,} of image directory {len(seen) - 1}"
                _check_size_types(sub_tags, order, sub_where)
                _check_layout_values(sub_tags, order, sub_where)
                sub_end = at + count_size + sub_count * entry_size + offset_size
                last = max(last, sub_end, _values_end(sub_entries, sub_count, entry_size, order)[0])
        offset = int.from_bytes(entries[-offset_size:], order)
    return Chain(last, owners)


def _directory_tags(
    entries: bytes, count: int, entry_size: int, order: Literal["little", "big"]
) -> dict[int, tuple[int, int, bytes]]:
    """The entries the chain walk looks at (sizes, tile sizes, SubIFDs): tag → (type, count,
    value or offset field as stored). One C-level unpack of the directory: the walk runs at
    every open."""
    layout = ("<" if order == "little" else ">") + ("HHI4s" if entry_size == 12 else "HHQ8s")
    return {
        tag: (dtype, number, field)
        for tag, dtype, number, field in struct.iter_unpack(layout, entries[: count * entry_size])
        if tag in WALKED_TAGS
    }


def _values_end(
    entries: bytes, count: int, entry_size: int, order: Literal["little", "big"]
) -> tuple[int, int]:
    """The byte where a directory's values stored apart from it end (0 if none), and the tag.

    tifffile drops a tag whose value lies past the end of the file with a log message: a
    file cut just after a level's directory lost that level's TileOffsets, and the level.
    """
    layout = ("<" if order == "little" else ">") + ("HHI4s" if entry_size == 12 else "HHQ8s")
    inline = entry_size // 2 - 2
    end, last = 0, 0
    for tag, dtype, number, field in struct.iter_unpack(layout, entries[: count * entry_size]):
        nbytes = number * TYPE_SIZES.get(dtype, 0)
        if nbytes > inline:
            stop = int.from_bytes(field, order) + nbytes
            if stop > end:
                end, last = stop, tag
    return end, last


def _check_size_types(
    tags: dict[int, tuple[int, int, bytes]], order: Literal["little", "big"], where: str
) -> None:
    """Refuse a directory whose size, tile size or pixel layout (:data:`LAYOUT_TAGS`) is not
    one integer (SHORT, LONG or LONG8), whose BitsPerSample or strip or tile table
    (:data:`INTEGERS_TAGS`, and RowsPerStrip over strips) is not integers, or whose
    PlanarConfiguration is not 1 or 2.

    tifffile leaves such a page out of its series: a SubIFD level whose ImageLength became
    FLOAT was a quietly smaller pyramid, one in the chain a float shape in the arrays; an SVS
    level whose Compression became DOUBLE was "no installed codec", and "auto" opened the
    file with OpenSlide, without that level.
    """
    for tag in (*GEOMETRY_TAGS, *LAYOUT_TAGS):
        if tag not in tags:
            continue
        dtype, number, _ = tags[tag]
        name = tifffile.TIFF.TAGS.get(tag, str(tag))
        if dtype not in INTEGER_TYPE_SIZES or number != 1:
            kind = f" ({tifffile.DATATYPE(dtype).name})" if dtype in set(tifffile.DATATYPE) else ""
            msg = (
                f"{where} declares {name} as {number} value(s) of TIFF type {dtype}{kind}; "
                "it must be one integer (SHORT, LONG or LONG8), so the file is damaged"
            )
            raise DamagedFileError(msg)
    strips = () if 322 in tags else (ROWS_PER_STRIP_TAG,)
    for tag in (*INTEGERS_TAGS, *strips):
        if tag in tags and tags[tag][0] not in INTEGER_TYPE_SIZES:
            dtype = tags[tag][0]
            name = tifffile.TIFF.TAGS.get(tag, str(tag))
            kind = f" ({tifffile.DATATYPE(dtype).name})" if dtype in set(tifffile.DATATYPE) else ""
            msg = (
                f"{where} declares {name} of TIFF type {dtype}{kind}; it must be integers "
                "(SHORT, LONG or LONG8), so the file is damaged"
            )
            raise DamagedFileError(msg)
    planar = _inline_value(tags, PLANAR_TAG, order)
    if planar is not None and planar not in PLANAR_VALUES:
        msg = (
            f"{where} declares PlanarConfiguration = {planar}; it must be 1 (contiguous) or 2 "
            "(separate), so the file is damaged"
        )
        raise DamagedFileError(msg)


#: Compressions for bilevel images only (CCITT RLE, Group 3, Group 4): a decoder given 8-bit
#: data under one returns pixels without an error (fuzz seed 7919: a QPTIFF level 0's LZW
#: made CCITT RLE read as wrong pixels, silently).
BILEVEL_COMPRESSIONS = (2, 3, 4)


def _check_layout_values(
    tags: dict[int, tuple[int, int, bytes]], order: Literal["little", "big"], where: str
) -> None:
    """Refuse a directory with a tile side of 0 or one tile side without the other,
    SamplesPerPixel outside 1 to :data:`MAX_SAMPLES`, or a bilevel compression over samples
    that are not one bit.

    A TileWidth of 0 made tifffile take the level for a stripped image: it left the
    pyramid as an associated image (fuzz seed 7919: an SVS opened with 2 of its 3 levels).
    """
    for tag in (322, 323):
        if tag in tags and _inline_value(tags, tag, order) == 0:
            name = tifffile.TIFF.TAGS.get(tag, str(tag))
            msg = f"{where} declares {name} = 0; a tile cannot be 0 pixels, so the file is damaged"
            raise DamagedFileError(msg)
    if (322 in tags) != (323 in tags):
        # fuzz seed 27182818 (synthetic-svs-j2k/ifd_flip/27182818.250): TileWidth's code
        # flipped; tifffile read the level as strips, and it became the slide's label
        msg = (
            f"{where} declares {'TileWidth' if 322 in tags else 'TileLength'} without "
            f"{'TileLength' if 322 in tags else 'TileWidth'}; a tile has both, so the file "
            "is damaged"
        )
        raise DamagedFileError(msg)
    samples = _inline_value(tags, 277, order)
    if samples is not None and not 1 <= samples <= MAX_SAMPLES:
        # 0 made tifffile raise IndexError building its series, and "auto" opened the slide
        # with OpenSlide, without that level (fuzz seed 27182818: svs-j2k-tcga/tag_value)
        msg = (
            f"{where} declares SamplesPerPixel = {samples}; a pixel has 1 to {MAX_SAMPLES} "
            "samples, so the file is damaged"
        )
        raise DamagedFileError(msg)
    compression = _inline_value(tags, 259, order)
    if compression in BILEVEL_COMPRESSIONS:
        bits = tags[258][1] == 1 and _inline_value(tags, 258, order) == 1 if 258 in tags else True
        if (samples or 1) != 1 or not bits:
            msg = (
                f"{where} declares Compression {compression} (CCITT, for 1-bit images) over "
                "samples of more than one bit; the file is damaged"
            )
            raise DamagedFileError(msg)


def _subifd_offsets(
    fh: BinaryIO,
    tags: dict[int, tuple[int, int, bytes]],
    order: Literal["little", "big"],
    size: int,
    where: str,
) -> list[tuple[str, int]]:
    """The offsets a directory's SubIFDs tag (330) lists (LONG, IFD, LONG8 or IFD8), each
    with what it is; the list's own end where the list lies past the end of the file.

    ``where``: the file and directory, for the error of a SubIFDs tag that lists no offsets.
    """
    if SUBIFDS_TAG not in tags:
        return []
    dtype, number, field = tags[SUBIFDS_TAG]
    width = SUBIFD_TYPE_SIZES.get(dtype)
    if width is None or not 0 < number <= MAX_DIRECTORIES:
        # tifffile reads no SubIFDs then: a count 2 -> 0 hid an OME pyramid's 2 levels
        kind = f" ({tifffile.DATATYPE(dtype).name})" if dtype in set(tifffile.DATATYPE) else ""
        msg = (
            f"{where} declares SubIFDs as {number:,} value(s) of TIFF type {dtype}{kind}; "
            "SubIFDs lists 1 or more offsets (LONG, IFD, LONG8 or IFD8), so the file is damaged"
        )
        raise DamagedFileError(msg)
    if number * width <= len(field):
        raw = field[: number * width]
    else:
        where = int.from_bytes(field, order)
        if where + number * width > size:
            return [("the offsets of its SubIFDs ending", where + number * width)]
        fh.seek(where)
        raw = fh.read(number * width)
    return [
        ("a SubIFD", int.from_bytes(raw[i : i + width], order))
        for i in range(0, number * width, width)
    ]


def _inline_value(
    tags: dict[int, tuple[int, int, bytes]], tag: int, order: Literal["little", "big"]
) -> int | None:
    """The SHORT, LONG or LONG8 value of ``tag`` among a directory's entries, or ``None``."""
    if tag not in tags:
        return None
    dtype, _, field = tags[tag]
    width = INTEGER_TYPE_SIZES.get(dtype)
    return None if width is None else int.from_bytes(field[:width], order)
