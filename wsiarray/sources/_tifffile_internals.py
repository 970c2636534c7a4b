"""The tifffile internals wsiarray relies on, behind one adapter.

tifffile's public API reads whole pages or zarr chunks; wsiarray decodes single tiles into
its own blocks, which needs things tifffile does not promise:

- ``TiffPage.decode(..., _fullsize=True)``: an edge tile stored at its cropped size (some
  writers do) comes back padded to the full tile, as in a page read;
- ``tifffile.tifffile.jpeg_decode_colorspace``: the JPEG colour spaces tifffile decodes a
  page's tiles with, which the fast JPEG path must match pixel for pixel;
- ``TIFF.DECOMPRESSORS``: which compressions an installed codec decodes, checked at open;
- ``TiffPage.jpegheader``: the header tifffile decodes each NDPI restart interval with;
- ``TiffTag.valueoffset`` and NDPI's McuStarts: where a page's tile table lies in the file,
  read from there as arrays (:func:`tile_table`) rather than from tifffile's tuples.

``tests/sources/test_tifffile_internals.py`` calls them on real files: a tifffile release
that renames or changes them fails there, loudly, not in a user's read.
"""

from __future__ import annotations

import numpy as np
import tifffile

from wsiarray.errors import ReaderUnavailableError

__all__ = [
    "JCS_RGB",
    "can_decode",
    "decode_tile",
    "jpeg_colorspaces",
    "ndpi_jpeg_header",
    "tile_table",
]

#: libjpeg's J_COLOR_SPACE value for RGB, as ``jpeg_decode_colorspace`` returns it.
JCS_RGB = 2

#: The tags tifffile takes a page's data offsets from, in its order of preference
#: (TileOffsets, StripOffsets), and its byte counts (TileByteCounts, StripByteCounts).
OFFSET_TAGS = (324, 273)
COUNT_TAGS = (325, 279)
#: NDPI's McuStarts and McuStartsHighBytes: tifffile lists a level's restart intervals as
#: its tiles (see :func:`ndpi_jpeg_header`).
MCU_STARTS, MCU_STARTS_HIGH = 65426, 65432
#: The integer TIFF types a table is read as from the file (SHORT, LONG, LONG8) and their
#: numpy codes; any other type (a damaged directory) is left to tifffile's values.
TABLE_TYPES = {3: "u2", 4: "u4", 16: "u8"}
#: Bytes of a value that may sit in its directory entry rather than apart (BigTIFF's 8):
#: there NDPI adds high bits from elsewhere, and a table that short costs nothing to convert.
INLINE_BYTES = 8


def can_decode(page: tifffile.TiffPage) -> bool:
    """Whether an installed codec decodes the page's compression (``TIFF.DECOMPRESSORS``)."""
    return page.compression in tifffile.TIFF.DECOMPRESSORS


def decode_tile(
    page: tifffile.TiffPage, data: bytes, index: int, jpegtables: bytes | None
) -> np.ndarray:
    """Decode stored tile ``index`` of ``page`` to ``(tile height, tile width, samples)``.

    Raises
    ------
    Exception
        Whatever tifffile or its codec raises for data it cannot decode.
    """
    tile = page.decode(
        data, index, jpegtables=jpegtables, jpegheader=page.jpegheader, _fullsize=True
    )[0]
    return tile.reshape(tile.shape[-3:])


def jpeg_colorspaces(page: tifffile.TiffPage) -> tuple[int | None, int | str | None]:
    """``(colorspace, outcolorspace)``: how tifffile has libjpeg decode the page's JPEG tiles.

    Raises
    ------
    ReaderUnavailableError
        The installed tifffile no longer has the function.
    """
    try:
        from tifffile.tifffile import jpeg_decode_colorspace
    except ImportError as exc:  # pragma: no cover - guarded by the adapter's test
        msg = (
            f"tifffile {tifffile.__version__} no longer has jpeg_decode_colorspace, which "
            "wsiarray's JPEG path needs; install the tifffile version pyproject.toml names"
        )
        raise ReaderUnavailableError(msg) from exc
    return jpeg_decode_colorspace(
        page.photometric, page.planarconfig, page.extrasamples, page.is_jfif
    )


def ndpi_jpeg_header(page: tifffile.TiffPage) -> bytes | None:
    """The JPEG header tifffile puts in front of each of an NDPI page's restart intervals.

    tifffile lists an NDPI level's restart intervals (its McuStarts tag) as the page's tiles,
    one MCU row high, and keeps the level's JPEG header with its frame resized to one
    interval as ``TiffPage.jpegheader``; ``None`` where it did not (no McuStarts, or a header
    without a restart interval).
    """
    header = getattr(page, "jpegheader", None)
    return bytes(header) if header else None


def tile_table(page: tifffile.TiffPage | tifffile.TiffFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, byte counts)`` of a page's tiles (or strips) as ``uint64`` arrays.

    Equal to tifffile's ``page.dataoffsets`` and ``page.databytecounts``, but read as arrays
    from where tifffile read them: tifffile unpacks TileOffsets and TileByteCounts into tuples
    of Python ints, and turning the 695,556 of a 200k² slide's level 0 into an array took
    12-24 ms each (``np.asarray`` of the tuple), reading the tag's bytes again 0.3 ms plus
    the read. An NDPI level's restart intervals come from its McuStarts array as tifffile
    derives them. Whatever tifffile changed or could not read (strips it cut to the image's
    count, a frame without tags, a table in its directory entry or of another TIFF type)
    is converted from tifffile's values.
    """
    table = _ndpi_table(page) if page.parent.is_ndpi else _stored_table(page)
    if table is not None:
        return table
    return (
        np.asarray(page.dataoffsets, dtype=np.uint64),
        np.asarray(page.databytecounts, dtype=np.uint64),
    )


def _stored_table(
    page: tifffile.TiffPage | tifffile.TiffFrame,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The tile table read from the file where tifffile's tuples are its tags' values as
    stored, else ``None``."""
    tags = getattr(page, "tags", None)  # a TiffFrame keeps none
    if tags is None:
        return None
    arrays = []
    for codes, values in ((OFFSET_TAGS, page.dataoffsets), (COUNT_TAGS, page.databytecounts)):
        tag = next((tags.get(code) for code in codes if code in tags), None)
        code = TABLE_TYPES.get(int(tag.dtype)) if tag is not None else None
        if (
            code is None
            or tag.count != len(values)  # tifffile cut strips to the image, or made one up
            or tag.count * int(code[1]) <= INLINE_BYTES
        ):
            return None
        array = _read_array(page, tag.valueoffset, code, tag.count)
        if array is None:
            return None
        arrays.append(array)
    return arrays[0], arrays[1]


def _ndpi_table(
    page: tifffile.TiffPage | tifffile.TiffFrame,
) -> tuple[np.ndarray, np.ndarray] | None:
    """An NDPI level's restart intervals, as tifffile derives them from McuStarts (offsets
    into the level's one strip, 64-bit with McuStartsHighBytes; an interval ends where the
    next starts, the last where the strip ends), else ``None``."""
    tags = getattr(page, "tags", None)
    starts = tags.valueof(MCU_STARTS) if tags is not None else None
    high = tags.valueof(MCU_STARTS_HIGH) if tags is not None else None
    if (
        not isinstance(starts, np.ndarray)
        or len(starts) < 2
        or len(starts) != len(page.dataoffsets)
        or not isinstance(high, np.ndarray | None)
    ):
        return None  # one interval or none (tifffile's strip), or an odd McuStarts
    starts = starts.astype(np.int64)  # tifffile's arithmetic, to the same values
    if high is not None:
        starts += (high.astype(np.uint64) << np.uint64(32)).astype(np.int64)
    # tifffile's first offset and last byte count give the strip's start and end
    strip = page.dataoffsets[0] - int(starts[0])
    offsets = starts + strip
    counts = np.diff(starts, append=page.databytecounts[-1] + int(starts[-1]))
    if offsets.min() < 0 or counts.min() < 0:
        return None  # damage: tifffile's values, converted as they always were
    return offsets.astype(np.uint64), counts.astype(np.uint64)


def _read_array(
    page: tifffile.TiffPage | tifffile.TiffFrame, offset: int, code: str, count: int
) -> np.ndarray | None:
    """``count`` values of numpy type ``code`` at ``offset`` in the file's byte order, read
    as tifffile reads a tag's values (its file handle, under its lock); ``None`` if the file
    ends before them."""
    handle = page.parent.filehandle
    size = count * int(code[1])
    with handle.lock:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        return None
    # no copy where the file holds little-endian LONG8 already (a read-only array)
    return np.frombuffer(data, dtype=page.parent.byteorder + code).astype(np.uint64, copy=False)
