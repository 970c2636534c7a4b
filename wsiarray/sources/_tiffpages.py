"""A TIFF level's pages checked against their directories and the file, at open.

What tifffile reads from a page's tags it believes: a size its tiles cannot hold, a layout
at odds with itself, a page of a level laid out otherwise than the level's first. Each
check here refuses such a page with a :class:`~wsiarray.errors.DamagedFileError` naming the
level (or image) before anything is allocated in proportion to what it declares.
"""

from __future__ import annotations

import math

import imagecodecs
import numpy as np
import tifffile
from tifffile import COMPRESSION, PHOTOMETRIC, PLANARCONFIG

from wsiarray.errors import DamagedFileError, TruncatedFileError
from wsiarray.sources._tiffchain import (
    GEOMETRY_TAGS,
    INTEGER_TYPE_SIZES,
    MAX_SAMPLES,
    SIZE_TAGS,
)
from wsiarray.sources._tifffile_internals import tile_table

__all__ = [
    "COLOUR",
    "RGB_BANDS",
    "check_data",
    "check_geometry",
    "check_like_keyframe",
    "check_packed_depth",
]


#: The most bytes one stored byte decodes to, per TIFF compression whose format bounds it, and
#: the bytes a tile may hold beyond that (headers, zlib's trailer, LZW's first clear code).
#: A size damaged upward over strips keeps its strip count, so nothing else catches it before
#: a whole-level read allocates it (fuzz seed 104729: qptiff-vectra/huge_size/104729.581, a
#: width of 1,920 -> 10**6 over 90 LZW strips, 1,519 bytes per stored byte, allocated 1.34
#: GiB). Uncompressed: 1 (exact); PackBits: 128 bytes from 2; deflate: a 258-byte match in 2
#: bits, 1,032; LZW: imagecodecs refuses a code table past 4,096 entries
#: (IMCD_LZW_TABLE_TOO_SMALL), and a run of one byte, which adds the longest string at every
#: code and clears the table when full, holds 7,367,041 bytes (runs of 1 to 3,838) in 5,407.25
#: bytes of codes a clear cycle: 1,362.4 bytes per byte, which long strips approach (1,304 over
#: 20 MB, 1,361 over 1 GB; a libtiff strip of 8,192 x 8,192 of one grey, 1,333; tests/sources/
#: test_damaged_tiff.py). JPEG (EOB runs), JPEG 2000 and CCITT (one bit a row) have no bound
#: worth checking.
MAX_EXPANSION = {1: 1, 32773: 64, 8: 1040, 32946: 1040, 5: 1365}

EXPANSION_SLACK = 64

#: Decoders of the compressions a packed depth is checked under, by TIFF compression (none is
#: checked by byte count).
PACKED_DECODERS = {
    32773: imagecodecs.packbits_decode,
    8: imagecodecs.zlib_decode,
    32946: imagecodecs.zlib_decode,
    5: imagecodecs.lzw_decode,
}

RGB_BANDS = {3: ("R", "G", "B"), 4: ("R", "G", "B", "A")}

#: Photometric interpretations whose samples are colour: R, G, B (stored as is, or as YCbCr).
COLOUR = (PHOTOMETRIC.RGB, PHOTOMETRIC.YCBCR)

#: Bits per sample that fill whole bytes. tifffile unpacks other depths (a 12-bit image is
#: valid), and decodes what a damaged one says: an LZW level's 8 -> 3 (as in fuzz seed
#: 424242: qptiff-vectra/tag_value/424242.1471) gave 3-bit pixels from 8-bit data, 124 levels
#: off, silently; so a level of another depth has its first stored tile decoded at open
#: (:func:`check_packed_depth`), under the compressions whose output length
#: is the declared one.
WHOLE_BYTE_BITS = (8, 16, 32, 64)

#: JPEGTables: the tables new-style JPEG (Compression 7) tiles share.
JPEG_TABLES_TAG = 347

#: Photometric interpretations of exactly one sample (and any ExtraSamples).
ONE_SAMPLE = (PHOTOMETRIC.MASK, PHOTOMETRIC.PALETTE)

#: Photometric interpretations of one grey sample (and any ExtraSamples).
GREY = (PHOTOMETRIC.MINISWHITE, PHOTOMETRIC.MINISBLACK)


def check_geometry(page: tifffile.TiffPage, where: str) -> None:
    """Refuse a level whose sizes, tile sizes or samples are not those of an image.

    Raises
    ------
    UnsupportedFormatError
        A size or tile size that is not one positive integer (a tag whose type became FLOAT,
        or whose count changed), or SamplesPerPixel at odds with BitsPerSample's count or the
        photometric interpretation.
    """
    for tag in GEOMETRY_TAGS:
        entry = page.tags.get(tag)
        if entry is None:
            continue
        value = entry.value
        if (
            entry.dtype not in INTEGER_TYPE_SIZES
            or entry.count != 1
            or isinstance(value, bool)
            or not isinstance(value, int | np.integer)
            or value < 0
            or (value == 0 and tag in SIZE_TAGS)  # a 0 tile size is named with its grid
        ):
            name = tifffile.TIFF.TAGS.get(tag, str(tag))
            type_name = (
                tifffile.DATATYPE(entry.dtype).name
                if entry.dtype in set(tifffile.DATATYPE)
                else str(entry.dtype)
            )
            msg = (
                f"{where} declares {name} = {value!r} ({entry.count} value(s) of type "
                f"{type_name}); a size must be one positive integer, so the file is damaged"
            )
            raise DamagedFileError(msg)
    samples = page.samplesperpixel
    bits = page.tags.get("BitsPerSample")
    bits_count = bits.count if bits is not None else 1
    colour = page.photometric in COLOUR
    if (
        not 1 <= samples <= MAX_SAMPLES
        or bits_count not in (1, samples)
        or (colour and samples < len(RGB_BANDS[3]))
        # JPEGTables is new-style JPEG's: old-style JPEG over it decoded CMU-1's level 0 48
        # levels off, silently (fuzz seed 27182818: svs-cmu1/tag_value, Compression 7 -> 6)
        or (page.compression == COMPRESSION.OJPEG and JPEG_TABLES_TAG in page.tags)
        # a mask or palette image is one sample (fuzz seed 27182818: svs-cmu1/tag_value,
        # Photometric RGB -> MASK read RGB JPEG as other colours, silently)
        or (page.photometric in ONE_SAMPLE and samples - len(page.extrasamples) != 1)
        # grey JPEG of 3 or more samples: libjpeg then guesses their colour space, YCbCr or
        # CMYK (fuzz seed 65537: svs-cmu1/tag_value/65537.464, Photometric RGB -> MINISWHITE
        # decoded CMU-1's RGB as YCbCr, 47 levels off on average, silently; OpenSlide read
        # grey). Two samples are not converted (large_image's small_la.tiff: grey and alpha)
        or (
            page.photometric in GREY
            and page.compression == COMPRESSION.JPEG
            and samples - len(page.extrasamples) >= len(RGB_BANDS[3])
        )
    ):
        msg = (
            f"{where} declares SamplesPerPixel = {samples} with {bits_count} BitsPerSample "
            f"value(s), photometric {getattr(page.photometric, 'name', page.photometric)} and "
            f"compression {getattr(page.compression, 'name', page.compression)}; these do not "
            "describe one image, so the file is damaged"
        )
        raise DamagedFileError(msg)
    if page.dtype is None:
        # fuzz seed 1618033 (ome-os2/ifd_flip/1618033.47): SampleFormat 1 -> 33 left tifffile
        # without a data type; the JPEG tiles were read as the OME-XML's uint8, silently
        msg = (
            f"{where} declares SampleFormat = {page.tags.valueof(339)!r} over "
            f"{page.bitspersample}-bit samples, which is no data type, so the file is damaged"
        )
        raise DamagedFileError(msg)


#: What the pages of one level (its channels, focal planes, time points) must share: tifffile
#: decodes them all as their keyframe says.
PAGE_LAYOUT = (
    "imagewidth",
    "imagelength",
    "tilewidth",
    "tilelength",
    "bitspersample",
    "sampleformat",
    "samplesperpixel",
    "compression",
    "photometric",
    "planarconfig",
    "predictor",
)


def check_like_keyframe(
    page: tifffile.TiffPage | tifffile.TiffFrame, keyframe: tifffile.TiffPage, where: str
) -> None:
    """Refuse a page of a level laid out otherwise than the level's keyframe.

    Raises
    ------
    DamagedFileError
        The page's own directory declares another :data:`PAGE_LAYOUT` value: a QPTIFF's DAPI
        page with BitsPerSample 8 -> 3 had FITC and Cy3 decoded as 3-bit samples too, wrong
        pixels without an error (fuzz seed 424242: qptiff-vectra/tag_value/424242.1471).
    """
    if not isinstance(page, tifffile.TiffPage) or page is keyframe:
        return  # a TiffFrame has no layout of its own
    for name in PAGE_LAYOUT:
        ours, theirs = getattr(page, name), getattr(keyframe, name)
        if ours != theirs:
            msg = (
                f"{where}: page {page.index} declares {name} = {ours} where the level's first "
                f"page {keyframe.index} declares {theirs}; the pages of a level share one "
                "layout, so the file is damaged"
            )
            raise DamagedFileError(msg)


def check_data(
    offsets: np.ndarray, counts: np.ndarray, keyframe: tifffile.TiffPage, where: str, size: int
) -> int:
    """Refuse a page whose tiles (its :func:`tile_table`, ``offsets`` and ``counts``) the
    declared tile grid does not match, or past the file's end; return the byte where its data
    ends (0 for none).

    ``keyframe``: the page giving the grid (the level's; an associated image's own page:
    tifffile decodes its strips whole and only logs a strip count that does not match, so a
    thumbnail's ImageLength 1440 -> 10**6 over 90 strips allocated 1.8 GiB).

    Raises
    ------
    UnsupportedFormatError
        TileOffsets and TileByteCounts (or the strips') do not list one entry per tile of the
        grid the image and tile sizes make.
    TruncatedFileError
        A tile's data ends past the end of the file.
    """
    expected = _tile_count(keyframe)  # None for a 0 tile size: named with the level's grid
    if len(offsets) != len(counts) or (
        expected is not None and (len(offsets) != expected or len(counts) != expected)
    ):
        kind = "tiles" if keyframe.is_tiled else "strips"
        number = "an unknown number of" if expected is None else f"{expected:,}"
        msg = (
            f"{where} is a {keyframe.imagewidth} x {keyframe.imagelength} image of "
            f"{number} {kind}, but its directory lists {len(offsets):,} offsets and "
            f"{len(counts):,} byte counts; the file is damaged"
        )
        raise DamagedFileError(msg)
    if not len(offsets):
        return 0
    if expected is not None:
        _check_expansion(keyframe, counts, where)
    # offset 0 is not data (a tile the file does not store, or damage named at its read)
    ends = np.where(offsets > 0, offsets + counts, 0)
    end = int(ends.max())
    if end > size:
        msg = (
            f"{where}: the file is truncated: it has {size:,} bytes but the image data reaches "
            f"byte {end:,}. Copy the file again completely."
        )
        raise TruncatedFileError(msg)
    return end


def _check_expansion(keyframe: tifffile.TiffPage, counts: np.ndarray, where: str) -> None:
    """Refuse tiles (or strips) whose declared pixels their stored bytes cannot hold under
    the level's compression (:data:`MAX_EXPANSION`); tiles not stored (count 0) are absent.

    Raises
    ------
    DamagedFileError
        A stored tile's byte count is too small for the size the directory declares.
    """
    ratio = MAX_EXPANSION.get(int(keyframe.compression))
    subsampled = keyframe.photometric == PHOTOMETRIC.YCBCR and keyframe.subsampling != (1, 1)
    if ratio is None or subsampled:
        return
    need = _segment_bytes(keyframe, counts)
    # compared as integers: 0.5 ms for 695,556 tiles, where floats took 17
    fewest = np.maximum(0, -(-(need - EXPANSION_SLACK) // ratio))
    short = (counts > 0) & (counts < fewest)
    if short.any():
        index = int(np.argmax(short))
        kind = "tile" if keyframe.is_tiled else "strip"
        name = COMPRESSION(keyframe.compression).name
        msg = (
            f"{where}: its {kind} {index} holds {int(counts[index]):,} bytes of {name} data, "
            f"which cannot decode to the {int(need[index]):,} bytes the image's size declares "
            f"(at most {ratio:,} per byte); the image's size or its byte counts are damaged"
        )
        raise DamagedFileError(msg)


def _segment_bytes(keyframe: tifffile.TiffPage, counts: np.ndarray) -> np.ndarray:
    """The bytes each tile (or strip) of ``counts``' table decodes to, as the level's sizes,
    samples and BitsPerSample declare them (rows padded to whole bytes)."""
    contiguous = keyframe.samplesperpixel > 1 and keyframe.planarconfig == PLANARCONFIG.CONTIG
    height, width = (keyframe.chunks[:-1] if contiguous else keyframe.chunks)[-2:]
    samples = keyframe.samplesperpixel if contiguous else 1
    row_bytes = -(-width * samples * keyframe.bitspersample // 8)
    if keyframe.is_tiled:
        depth = max(keyframe.tiledepth, 1)
        return np.full(len(counts), height * depth * row_bytes, dtype=np.int64)
    # the last strip of each sample holds what rows are left
    rows = np.full(len(counts), height, dtype=np.int64)
    strips = math.ceil(keyframe.imagelength / height)
    rows[strips - 1 :: strips] = keyframe.imagelength - (strips - 1) * height
    return rows * row_bytes


def _tile_count(page: tifffile.TiffPage) -> int | None:
    """Tiles (or strips) a page's sizes declare: its grid, times the samples if stored apart
    (``None`` for a 0 tile size, which the level's tile grid names)."""
    contiguous = page.samplesperpixel > 1 and page.planarconfig == PLANARCONFIG.CONTIG
    dims = page.chunks[:-1] if contiguous else page.chunks
    height, width = dims[-2], dims[-1]
    if height <= 0 or width <= 0:
        return None
    grid = math.ceil(page.imagelength / height) * math.ceil(page.imagewidth / width)
    separate = page.planarconfig == PLANARCONFIG.SEPARATE and page.samplesperpixel > 1
    depth = math.ceil(page.imagedepth / max(page.tiledepth, 1)) if page.is_tiled else 1
    return grid * depth * (page.samplesperpixel if separate else 1)


def check_packed_depth(keyframe: tifffile.TiffPage, fh: tifffile.FileHandle, where: str) -> None:
    """Refuse a level of a packed depth (not :data:`WHOLE_BYTE_BITS`) whose first stored
    tile (or strip) decodes to more or fewer bytes than that depth declares.

    Only under no compression, PackBits, deflate and LZW, which decode to what was
    written; others (12-bit JPEG, JPEG 2000) are read as tifffile reads them. The decode
    stops one byte past the declared length, so a damaged tile costs no more memory.

    Raises
    ------
    DamagedFileError
        The tile's length is not the declared one: its BitsPerSample is damaged.
    """
    compression = int(keyframe.compression)
    if keyframe.bitspersample in WHOLE_BYTE_BITS or compression not in MAX_EXPANSION:
        return
    offsets, counts = tile_table(keyframe)
    stored = np.flatnonzero((offsets > 0) & (counts > 0))
    if not len(stored):
        return
    index = int(stored[0])
    need = int(_segment_bytes(keyframe, counts)[index])
    count = int(counts[index])
    if compression == COMPRESSION.NONE:
        length, detail = count, ""
    else:
        with fh.lock:
            fh.seek(int(offsets[index]))
            data = fh.read(count)
        try:
            length, detail = len(PACKED_DECODERS[compression](data, out=need + 1)), ""
        except RuntimeError as exc:  # the codecs' errors (output too small among them)
            length, detail = -1, f" ({type(exc).__name__}: {exc})"
    if length != need:
        kind = "tile" if keyframe.is_tiled else "strip"
        decoded = "more or fewer" if length < 0 else f"{length:,}"
        msg = (
            f"{where}: its {kind} {index} decodes to {decoded} bytes{detail}, where "
            f"{keyframe.bitspersample}-bit samples (BitsPerSample) make {need:,}; the "
            "level's BitsPerSample or data is damaged"
        )
        raise DamagedFileError(msg)
