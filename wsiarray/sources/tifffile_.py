"""Reader for TIFF-family slides, over tifffile.

Aperio SVS (JPEG, JPEG 2000), Hamamatsu NDPI, OME-TIFF (single level or SubIFD pyramid),
QPTIFF, Philips TIFF, Leica SCN, Ventana BIF and generic tiled pyramidal TIFF: whatever
tifffile reads as a pyramid series.
"""

from __future__ import annotations

import itertools
import math
import struct
import threading
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, ClassVar, Literal, NamedTuple, override
from urllib.parse import urlsplit

import imagecodecs
import numpy as np
import tifffile
from tifffile import COMPRESSION, PHOTOMETRIC, PLANARCONFIG, RESUNIT

from wsiarray.errors import (
    CorruptTileError,
    DamagedFileError,
    DamagedFileWarning,
    OptionError,
    TruncatedFileError,
    UnsupportedFormatError,
)
from wsiarray.sources import _vendor
from wsiarray.sources._base import (
    AssociatedInfo,
    LevelInfo,
    PlaneAxis,
    SlideMetadata,
    SlideSource,
)
from wsiarray.sources._store import StorageOptions, is_remote, open_store
from wsiarray.sources._tifffile_internals import can_decode, tile_table
from wsiarray.sources._tifftiles import LevelTiles

__all__ = ["TifffileSource"]

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: Series names tifffile gives to images that are not the slide itself.
ASSOCIATED_SERIES = {"label", "macro", "thumbnail", "map", "overview"}

#: tifffile's ``is_<flag>`` attribute → the format name wsiarray reports (OpenSlide's vendor names).
FORMATS = (
    ("svs", "aperio"),
    ("ndpi", "hamamatsu"),
    ("philips", "philips"),
    ("scn", "leica"),
    ("bif", "ventana"),
    ("qpi", "qptiff"),
    ("ome", "ome-tiff"),
)

#: TIFF tags copied into the properties as ``tiff.<name>`` (OpenSlide's convention).
TEXT_TAGS = ("ImageDescription", "Make", "Model", "Software", "DateTime", "Artist", "Copyright")

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

#: Bytes after the last one a file's directories, values and images use beyond which its
#: chain of directories is taken for cut short (good files: at most 96; see
#: :meth:`TifffileSource._check_tail`).
UNUSED_TAIL_BYTES = 4096

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

#: Hamamatsu's Magnification tag: a level's objective power; -1 on the macro, -2 on the map.
NDPI_MAGNIFICATION = 65421

#: Image directories beyond which a chain is taken for damaged (a long time series has
#: thousands of pages; tifffile stops counting at 2**32).
MAX_DIRECTORIES = 1_000_000

RGB_BANDS = {3: ("R", "G", "B"), 4: ("R", "G", "B", "A")}
#: TIFF ResolutionUnit values that name a length (1, no unit, is a placeholder: ignored).
RESOLUTION_UNITS = {RESUNIT.INCH: "inch", RESUNIT.CENTIMETER: "cm"}
#: Photometric interpretations whose samples are colour: R, G, B (stored as is, or as YCbCr).
COLOUR = (PHOTOMETRIC.RGB, PHOTOMETRIC.YCBCR)
#: Bits per sample that fill whole bytes. tifffile unpacks other depths (a 12-bit image is
#: valid), and decodes what a damaged one says: an LZW level's 8 -> 3 (as in fuzz seed
#: 424242: qptiff-vectra/tag_value/424242.1471) gave 3-bit pixels from 8-bit data, 124 levels
#: off, silently; so a level of another depth has its first stored tile decoded at open
#: (:meth:`TifffileSource._check_packed_depth`), under the compressions whose output length
#: is the declared one.
WHOLE_BYTE_BITS = (8, 16, 32, 64)
#: JPEGTables: the tables new-style JPEG (Compression 7) tiles share.
JPEG_TABLES_TAG = 347
#: Photometric interpretations of exactly one sample (and any ExtraSamples).
ONE_SAMPLE = (PHOTOMETRIC.MASK, PHOTOMETRIC.PALETTE)
#: Photometric interpretations of one grey sample (and any ExtraSamples).
GREY = (PHOTOMETRIC.MINISWHITE, PHOTOMETRIC.MINISBLACK)
#: tifffile's axes that are planes of a slide (time points, focal planes), not channels.
PLANE_AXES = "TZ"
#: ExtraSamples of a grey image whose second sample is alpha (associated or unassociated).
ALPHA = ((1,), (2,))


class TifffileSource(SlideSource):
    """A TIFF-family slide read with tifffile.

    Parameters
    ----------
    path : Path or str
        The slide file, or its URL (``s3://``, ``https://``, any fsspec protocol).
    series : int, optional
        Index of the tifffile series to use as the slide. By default the largest series
        that is not a label, macro or thumbnail (a tiled one before any stripped one).
    storage_options : mapping, optional
        For a URL: the fsspec filesystem's options (credentials, endpoint, ...).
    """

    name: ClassVar[str] = "tifffile"
    remote: ClassVar[bool] = True

    @classmethod
    @override
    def claims(cls, path: Path, header: bytes, /) -> bool:
        return header[:4] in TIFF_MAGIC

    def __init__(
        self,
        path: Path | str,
        /,
        *,
        series: int | None = None,
        storage_options: StorageOptions | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        remote = is_remote(path)
        if remote:
            options["storage_options"] = StorageOptions(storage_options)
        super().__init__(path, series=series, **options)  # type: ignore[arg-type]
        _refuse_olympus_vsi(path)
        self._store = open_store(path, storage_options)
        self.location = self._store.location
        try:
            # directories read through one file object: for a URL its blocks are cached, so
            # the chain walk and tifffile's parse share the few requests they cost
            handle = self._store.open()
            self._chain = _check_ifd_chain(
                handle, self._store.size, self.location, ndpi=_is_ndpi_name(path)
            )
            handle.seek(0)
            self._tif = tifffile.TiffFile(handle, name=Path(str(path)).name)
            # one lock over the shared handle's seek-and-read: tifffile's own lazy reads
            # (pages of later planes), tile_table's and read_associated's run in different
            # threads, and tifffile's lock is a no-op until set
            self._tif.filehandle.set_lock(True)
        except BaseException:
            self._store.close()
            raise
        self._associated_lock = threading.Lock()
        try:
            self._series = self._with_structural_levels(self._slide_series(series))
            self._check_levels_fit()
            self._check_qptiff_channels()
            # damage before "unsupported": "auto" offers an unsupported file to OpenSlide,
            # which opened an OME-XML's SizeC 3 -> 99 (33 planes of RGB over 1 page, axes
            # CYXS) as its first page, without its SubIFD levels (fuzz seed 31415926)
            self._damage: tuple[str, ...] = ()
            self._check_complete()
            self._check_axes()
            self._check_codecs()
            fill = self._fillvalue()
            self._fill = fill
            # planes (Z, T) beyond the first are read on first use: a long time series has
            # thousands, each a few pages whose offsets tifffile reads lazily
            self._tiles: dict[tuple[int, tuple[int, ...]], LevelTiles] = {}
            self._tiles_lock = threading.Lock()
            self._plane_axes = [
                (axis, size)
                for axis, size in zip(self._series.axes, self._series.shape, strict=True)
                if axis in PLANE_AXES and size > 1
            ]
            self.metadata = self._read_metadata()
        except BaseException:
            self.close()
            raise

    # -- choosing and validating the series ------------------------------------------------

    def _slide_series(self, index: int | None) -> tifffile.TiffPageSeries:
        series = self._all_series()
        if index is not None:
            if not 0 <= index < len(series):
                msg = (
                    f"reader_options={{'series': {index}}}: {self.path} holds {len(series)} "
                    f"series (images), so 'series' must be 0 to {len(series) - 1}"
                )
                raise OptionError(msg)
            return series[index]
        candidates = [s for s in series if s.name.lower() not in ASSOCIATED_SERIES] or list(series)
        if not candidates:
            msg = f"{self.path}: tifffile finds no image in this TIFF file"
            raise UnsupportedFormatError(msg)
        # a tiled image before a larger stripped one: with its ImageDescription lost, an
        # Aperio slide is tifffile's generic series, and the (stripped) thumbnail may be the
        # largest image (fuzz F4: a 480 px slide opened as its 1024 px thumbnail)
        return max(candidates, key=lambda s: (s.keyframe.is_tiled, _plane_size(s.levels[0])))

    def _all_series(self) -> list[tifffile.TiffPageSeries]:
        """tifffile's series; an OME-XML tifffile cannot make images of is damage, named.

        tifffile raises for an OME-XML that parses with a damaged value (``SizeC="abc"``, a
        level 0 pixels wide), and logs a malformed one and falls back to its structure-only
        series: either way the file's own description of its images is lost (its channels
        and pixel size too), and "auto" would offer it to OpenSlide, which opened its first
        page alone as the slide (fuzz F4: 1 of 3 levels).
        """
        if self._tif.is_ome:
            # tifffile's OME series lists every declared plane, present or not: a SizeZ of
            # 10**8 over 1 page took 64 s and 1.6 GB in it before any check could run
            planes = _vendor.ome_declared_planes(self._tif.ome_metadata or "")
            if planes > MAX_DIRECTORIES:
                msg = (
                    f"{self.path}: its OME-XML declares {planes:,} planes (SizeZ x SizeC x SizeT "
                    f"of its images), more than the {MAX_DIRECTORIES:,} image directories a "
                    "TIFF file is read with; the file (or its OME-XML) is damaged"
                )
                raise DamagedFileError(msg)
        try:
            series = list(self._tif.series)
        except Exception as exc:
            if not self._tif.is_ome:
                raise
            msg = (
                f"{self.path}: tifffile cannot make the images its OME-XML describes out of "
                f"its pages ({type(exc).__name__}: {exc}); the file is damaged"
            )
            raise DamagedFileError(msg) from exc
        if self._tif.is_ome and series and all(s.kind == "generic" for s in series):
            try:  # the fallback: a malformed OME-XML is damage, other reasons tifffile's
                ET.fromstring(self._tif.ome_metadata or "")
            except ET.ParseError as exc:
                msg = (
                    f"{self.path}: its OME-XML (the first page's ImageDescription) is not "
                    f"well-formed XML ({exc}), so the file's images, levels and pixel size "
                    "are unknown; the file is damaged"
                )
                raise DamagedFileError(msg) from exc
        return series

    def _with_structural_levels(self, series: tifffile.TiffPageSeries) -> tifffile.TiffPageSeries:
        """Return ``series`` with every level the file's pages hold, whatever its vendor string says.

        tifffile chooses a format's parser by its vendor string, and tools that re-save a slide
        copy that string: libvips' pyramid of an Aperio SVS keeps Aperio's ImageDescription,
        and tifffile's SVS parser, expecting Aperio's page order (level 0, thumbnail, levels,
        label, macro), named two of libvips' reduced pages "Thumbnail" and "Label", dropped
        the others and never looked in SubIFDs; an OME-XML naming one image hides the rest of
        the IFD chain the same way. As in OpenSlide, a level is a tiled page: here a tiled page
        in the IFD chain or in level 0's SubIFDs that is a reduced copy of level 0 (see
        :func:`_is_reduced_copy`) and that the vendor reading does not give to another image.
        The vendor string still names the associated images (see :meth:`_associated_series`).
        """
        levels = series.levels
        if any(len(level.pages) != 1 for level in levels):
            return series  # levels of several pages (channels, planes): the format's own layout
        base = levels[0].keyframe
        # pages of the other images (OME images, not a label or macro) and of the levels; but
        # an NDPI level by its Magnification and size is a level wherever tifffile put it (it
        # takes levels one sampling step apart only: x40, x10, x5 left x5 a series of its own)
        taken = [
            page
            for other in self._tif.series
            if other is series or other.name.lower() not in ASSOCIATED_SERIES
            for level in other.levels
            for page in level.pages
            if page is not None and (other is series or not _ndpi_level_of(page, base))
        ]
        # a page of the IFD chain has an int index, one in SubIFDs a tuple: taken pages of
        # the chain are not even read
        indices, offsets = {page.index for page in taken}, {page.offset for page in taken}
        pages = self._tif.pages
        chain = (pages.get(i) for i in range(len(pages)) if i not in indices)
        subifds = tifffile.TiffPages(base) if base.subifds else ()
        found = [
            page
            for page in (*chain, *subifds)
            if page.offset not in offsets and _is_reduced_copy(page, base)
        ]
        if not found:
            return series
        by_shape: dict[tuple[int, ...], tifffile.TiffPage] = {}
        for page in (*(level.keyframe for level in levels), *found):
            by_shape.setdefault(page.shape, page)
        rebuilt = [
            tifffile.TiffPageSeries(
                [page], page.shape, page.dtype, page.axes, name=series.name, kind="structure"
            )
            for page in sorted(by_shape.values(), key=lambda p: -p.imagewidth * p.imagelength)
        ]
        rebuilt[0].levels = rebuilt
        return rebuilt[0]

    def _check_levels_fit(self) -> None:
        """Refuse a page in a level's place that is not a reduced copy of level 0.

        tifffile moves a level whose directory is damaged (BitsPerSample's type, or
        SamplesPerPixel, changed; a side cut to 1 px) out of the pyramid into a series of its
        own, or leaves a damaged SubIFD in the pyramid: a quietly smaller pyramid, or a level
        of another shape (fuzz F3: NDPIs opened with 2 of 4 levels). A level's place is:
        a level of the series; a SubIFD of level 0 (OME-TIFF's and libvips' pyramids hold
        levels there and nothing else); an NDPI page whose Magnification tag is positive
        (NDPI's macro and map say -1 and -2).

        Raises
        ------
        DamagedFileError
            Such a page is not a reduced copy of level 0 (see :func:`_is_reduced_copy`).
        """
        levels = self._series.levels
        base = levels[0].keyframe
        # a level of tifffile's own series may be padded to whole tiles (Philips TIFF stores
        # each level's size rounded up to its tiles): its sides may be off by a tile
        places = [
            (f"level {i}", level.keyframe, "level 0", base, _tile_side(level.keyframe))
            for i, level in enumerate(levels[1:], 1)
        ]
        # a level 0 that is itself a SubIFD (tifffile's generic series when its OME series
        # failed) is measured against the page holding it: level 0's ImageLength 600 -> 2
        # opened the OME pyramid as its SubIFD level 1 alone
        index = self._chain.subifd_owners.get(base.offset)
        owner, name = (
            (base, "level 0") if index is None else (self._tif.pages[index], f"page {index}")
        )
        if owner.subifds:
            places += [
                (f"SubIFD {i} of {name}", page, name, owner, 1)
                for i, page in enumerate(tifffile.TiffPages(owner))
            ]
        left_out = []
        if self._tif.is_ndpi:
            used = {page.offset for level in levels for page in level.pages if page is not None}
            left_out = [
                (
                    f"page {page.index} (NDPI magnification {page.tags.valueof(NDPI_MAGNIFICATION)})",
                    page,
                    "level 0",
                    base,
                    1,
                )
                for page in self._tif.pages
                if page.offset not in used and _ndpi_level(page)
            ]
        for where, page, name, reference, slack in (*places, *left_out):
            if not _is_reduced_copy(page, reference, tiled=False, slack=slack):
                msg = (
                    f"{self.path}: {where} is {_describe(page)}, not a reduced copy of {name} "
                    f"({_describe(reference)}), so it cannot be a level of the pyramid; the "
                    "file is damaged"
                )
                raise DamagedFileError(msg)
        if left_out:
            # a reduced copy all the same: tifffile takes a level only at a sampling factor
            # of the level above, exactly (fuzz seed 31337: ndpi-tritc/tag_value/31337.695,
            # level 3's ImageLength 608 -> 607 left it out, and the NDPI opened with 3 of 4)
            where, page = left_out[0][:2]
            msg = (
                f"{self.path}: {where} is {_describe(page)}, a level by its Magnification, but "
                "not the level above it divided by a sampling factor, so tifffile leaves it "
                f"out of the pyramid ({len(levels)} of {len(levels) + len(left_out)} levels); "
                "the file is damaged"
            )
            raise DamagedFileError(msg)

    def _check_qptiff_channels(self) -> None:
        """Refuse a QPTIFF whose full-resolution channel pages are not all in level 0.

        tifffile groups a QPTIFF's channel pages by size: one whose width or length is
        damaged (1,920 -> 1,919) became a series of its own, and the slide opened with 2 of
        its 3 channels, silently. The pages' descriptions say which are channels.
        """
        if not self._tif.is_qpi or self._series.name != "Baseline":
            return
        held = [page for page in self._series.levels[0].pages if page is not None]
        indices = {page.index for page in held}
        stray = [
            page
            for page in self._tif.pages
            if page.index not in indices
            and _vendor.qptiff_image_type(getattr(page, "description", "")) == "FullResolution"
        ]
        if stray:
            msg = (
                f"{self.path}: tifffile's level 0 is page(s) "
                f"{', '.join(str(p.index) for p in held)} ({_describe(held[0])}) and leaves "
                f"out page(s) {', '.join(str(p.index) for p in stray)} ({_describe(stray[0])}), "
                "though all describe themselves as full-resolution channels: a channel's "
                "size is damaged"
            )
            raise DamagedFileError(msg)

    def _check_axes(self) -> None:
        axes, shape = self._series.axes, self._series.shape
        extra = [
            f"{a}={n}"
            for a, n in zip(axes, shape, strict=True)
            if a not in "YXSC" + PLANE_AXES and n > 1
        ]
        if extra or "Y" not in axes or "X" not in axes or ("S" in axes and "C" in axes):
            msg = (
                f"{self.path}: the image has axes {axes!r} with shape {shape}; wsiarray reads "
                "images with samples or channels, focal planes and time points (YX, YXS, CYX, "
                "with Z and T), not "
                f"{', '.join(extra) or 'this layout'}. Open another series with "
                "reader_options={'series': N}."
            )
            raise UnsupportedFormatError(msg)

    def _check_codecs(self) -> None:
        """Refuse at open a level no installed codec decodes (not at every read, as damage).

        A level compressed otherwise than a level 0 that decodes is damage: a SubIFD level's
        Compression 8 -> 9 was "no installed codec", and "auto" opened the file with
        OpenSlide, which does not see SubIFDs, as its level 0 alone.
        """
        base = self._series.levels[0].keyframe
        for level, series in enumerate(self._series.levels):
            page = series.keyframe
            if not can_decode(page):
                code = int(page.compression)
                name = COMPRESSION(code).name if code in set(COMPRESSION) else "an unknown one"
                if level and can_decode(base):
                    msg = (
                        f"{self.path}: level {level} declares compression {name} (TIFF "
                        f"compression {code}), which no installed codec decodes, where level 0 "
                        f"is {COMPRESSION(base.compression).name}; the file is damaged"
                    )
                    raise DamagedFileError(msg)
                msg = (
                    f"{self.path}: level {level} is compressed with {name} (TIFF compression "
                    f"{code}), which no installed codec decodes (tifffile with imagecodecs "
                    f"{tifffile.__version__}); the file may need its vendor's software"
                )
                raise UnsupportedFormatError(msg)

    def _check_complete(self) -> None:
        """Refuse at open a level whose declared geometry its directory does not back up.

        A damaged size, tile size or SamplesPerPixel would otherwise reach the arrays: a tile
        grid larger than the offsets listed (an IndexError at the first read), an output
        array allocated for billions of samples, a float or 0 shape. Everything here is
        checked against the directories and the file size, before anything is allocated in
        proportion to a declared size.
        """
        size = self._store.size
        end = self._chain.end
        for index, level in enumerate(self._series.levels):
            _check_geometry(level.keyframe, f"{self.path}: level {index}")
            missing = 0
            tables: dict[bytes, tifffile.TiffPage | tifffile.TiffFrame] = {}
            for page in level.pages:
                if page is None:
                    missing += 1
                    continue
                where = f"{self.path}: level {index}"
                _check_like_keyframe(page, level.keyframe, where)
                offsets, counts = tile_table(page)
                end = max(end, _check_data(offsets, counts, level.keyframe, where, size))
                # the whole table: writers may store one blank tile once for several pages
                key = offsets.tobytes()
                if key in tables and offsets.any():
                    # a directory linked into the chain twice (fuzz seed 65537: qptiff-vectra/
                    # duplicate_ifd/65537.994): channels DAPI, DAPI, FITC, Cy3, silently
                    msg = (
                        f"{where}: its pages {tables[key].index} and {page.index} are one "
                        "image (they list the same tiles at the same bytes), so a directory is "
                        "in the chain twice; the file is damaged"
                    )
                    raise DamagedFileError(msg)
                tables[key] = page
            self._check_packed_depth(level.keyframe, f"{self.path}: level {index}")
            if missing:
                # tifffile zeroes pages an OME-XML declares and the file lacks: a SizeZ of
                # 10**6 over 1 page made 10**6 planes of zeros (fuzz A6: a hang building them)
                axes = ", ".join(f"{a}={n}" for a, n in zip(level.axes, level.shape, strict=True))
                msg = (
                    f"{self.path}: level {index} is declared as {len(level.pages):,} pages "
                    f"({axes}) but the file holds {len(level.pages) - missing:,} of them; the "
                    "file (or its OME-XML) is damaged"
                )
                raise DamagedFileError(msg)
        for name, series in self._associated_series().items():
            for page in series.pages:
                if page is not None:
                    where = f"{self.path}: the {name} image"
                    end = max(end, _check_data(*tile_table(page), page, where, size))
        self._damage = self._check_tail(end)

    def _check_packed_depth(self, keyframe: tifffile.TiffPage, where: str) -> None:
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
            fh = self._tif.filehandle
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

    def _check_tail(self, end: int) -> tuple[str, ...]:
        """Warn of a file whose last bytes no directory, value or image of the chain uses.

        A chain of directories cut by a next-directory offset of 0 is a well-formed TIFF with
        fewer pages: tifffile and OpenSlide open the pages before the cut, without a word
        (fuzz F1: an NDPI with 3 of its 4 levels and no macro, an SVS without its level 1).
        What the cut leaves is the pages after it: in the file, reached by nothing. (So does
        a last tile whose offset and byte count were zeroed, read as absent otherwise.)
        Measured on good files (the 7 real TIFF slides of the test data; 24 libvips pyramids
        of CMU-1, the DAPI NDPI and OS-2: JPEG, deflate, LZW, WebP, BigTIFF, SubIFDs, 256 px
        tiles; the fuzzer's 3 synthetic SVSs and OME-TIFF): at most 96 bytes follow the last
        byte used (the NDPIs), at most 660 are unused anywhere; the two cut mutants leave
        307,826 and 36,584. A tail of zeros is no evidence (padding; an image an anonymiser
        wiped and unlinked). Pages of images the reader does not open count as used.

        A warning, not an error: a de-identified slide looks the same (its label and macro
        unlinked, their tables partly zeroed: CMU-1-Small-Region so treated left 463,142
        bytes), and refusing it would make a good file unreadable. Returns the message, also
        given as a :class:`~wsiarray.DamagedFileWarning`, when more than
        :data:`UNUSED_TAIL_BYTES` bytes, not all zero, follow the last byte used.
        """
        size = self._store.size
        if size - end <= UNUSED_TAIL_BYTES:
            return ()
        # only now every other page: of the chain (QPTIFF's overview and label are in no
        # series: 10,402 bytes of small_vectra.qptiff) and of other images' SubIFDs. A long
        # time series has thousands of pages
        taken = {id(page) for level in self._series.levels for page in level.pages}
        pages = self._tif.pages
        others = (
            *(pages.get(i) for i in range(len(pages))),
            *(page for series in self._tif.series for lv in series.levels for page in lv.pages),
        )
        for page in others:
            if page is not None and id(page) not in taken and page.dataoffsets:
                offsets, counts = tile_table(page)
                end = max(end, int((offsets + counts).max()))
        if size - end <= UNUSED_TAIL_BYTES:
            return ()
        window = 1 << 16
        head, last = (
            self._store.read(end, window),
            self._store.read(max(end, size - window), window),
        )
        if not any(head) and not any(last):
            return ()
        msg = (
            f"{self.path}: its last {size - end:,} bytes (from byte {end:,} of {size:,}) belong "
            "to no image directory, tag value or tile the chain of directories reaches: the "
            "chain was cut short (a next-directory offset set to 0), losing the images after "
            "the cut (levels or associated images), or tiles were cut from their tables, or "
            "images were unlinked on purpose (a de-identified label and macro). If levels are "
            "missing, the file is damaged: copy it again from the scanner or archive"
        )
        warnings.warn(msg, DamagedFileWarning, stacklevel=2)
        return (msg,)

    # -- metadata ---------------------------------------------------------------------------

    def _read_metadata(self) -> SlideMetadata:
        page = self._tif.pages.first
        fmt = next(
            (name for flag, name in FORMATS if getattr(self._tif, f"is_{flag}")), "generic-tiff"
        )
        properties = {
            f"tiff.{tag}": str(page.tags[tag].value) for tag in TEXT_TAGS if tag in page.tags
        }
        mm_x = mm_y = objective = None
        channels: tuple[str, ...] = ()
        if fmt == "aperio":
            fields = _vendor.aperio_fields(page.description)
            properties |= {f"aperio.{k}": v for k, v in fields.items()}
            mm_x, mm_y = _vendor.mm_from_mpp(fields.get("MPP"))
            objective = fields.get("AppMag")
        elif fmt == "hamamatsu":
            tags = page.ndpi_tags or {}
            properties |= {f"hamamatsu.{k}": str(v) for k, v in tags.items()}
            objective = tags.get("Magnification")
        elif fmt == "ome-tiff" and self._tif.ome_metadata:
            mm_x, mm_y, objective, channels = _vendor.ome_pixel_metadata(self._tif.ome_metadata)
        elif fmt == "philips" and self._tif.philips_metadata:
            mm_x, mm_y = _vendor.philips_mm(self._tif.philips_metadata)
        elif fmt == "qptiff":
            channels = tuple(
                _vendor.qptiff_channel_name(p.description) or "" for p in self._series.pages if p
            )
        elif fmt == "leica" and page.tags.get("ImageDescription"):
            objective = _scn_objective(page.description)
        if mm_x is None:
            mm_x, mm_y = self._resolution_tags()
        magnification, derived = _vendor.magnification_or_derived(objective, mm_x)
        orientation = self._orientation()
        if orientation != 1:
            properties["tiff.Orientation"] = str(orientation)
        return SlideMetadata(
            planes=self._planes(fmt),
            format=fmt,
            reader=self.name,
            levels=tuple(self._level_info(i) for i in range(len(self._series.levels))),
            dtype=self._series.dtype.name,
            channels=self._channel_names(channels),
            mm_x=mm_x,
            mm_y=mm_y,
            magnification=magnification,
            magnification_derived=derived,
            properties=properties,
            associated=tuple(self._associated_info()),
            orientation=orientation,
            icc_profile=self._icc_profile(),
            warnings=self._damage,
        )

    def _planes(self, fmt: str) -> tuple[PlaneAxis, ...]:
        """The Z and T axes with their coordinates (OME-XML's steps, else plane indices)."""
        steps = (
            _vendor.ome_plane_steps(self._tif.ome_metadata)
            if fmt == "ome-tiff" and self._tif.ome_metadata
            else {}
        )
        planes = []
        for axis, size in self._plane_axes:
            name = axis.lower()
            step, units = steps.get(name, (1.0, "index"))
            planes.append(PlaneAxis(name, tuple(i * step for i in range(size)), units))
        return tuple(planes)

    def _level_tiles(self, level: int, plane: tuple[int, ...]) -> LevelTiles:
        """The tiles of one plane of a level (its pages: one per channel, or one YXS page)."""
        key = (level, plane)
        tiles = self._tiles.get(key)
        if tiles is None:
            series = self._series.levels[level]
            with self._tiles_lock:
                tiles = self._tiles.get(key)
                if tiles is None:
                    tiles = LevelTiles(
                        self.location,
                        self._store,
                        level,
                        series,
                        self._fill,
                        self._plane_pages(series, plane),
                    )
                    self._tiles[key] = tiles
        return tiles

    def _plane_pages(
        self, series: tifffile.TiffPageSeries, plane: tuple[int, ...]
    ) -> list[tifffile.TiffPage]:
        """The pages of ``plane`` in a level: tifffile lists a level's pages in the order of
        its axes before ``YX(S)`` (``ZCYX``: z-major, then channel)."""
        if not self._plane_axes:
            return list(series.pages)
        lead = [(a, n) for a, n in zip(series.axes, series.shape, strict=True) if a not in "YXS"]
        chosen = dict(zip((a for a, _ in self._plane_axes), plane, strict=True))
        ranges = [[chosen[a]] if a in chosen else range(n) for a, n in lead]
        shape = [n for _, n in lead]
        return [
            series.pages[int(np.ravel_multi_index(index, shape))]
            for index in itertools.product(*ranges)
        ]

    def _icc_profile(self) -> bytes | None:
        tag = self._series.levels[0].keyframe.tags.get("InterColorProfile")
        return bytes(tag.value) if tag is not None and tag.value else None

    def _orientation(self) -> int:
        """Level 0's TIFF Orientation; a value outside 1-8 is read as 1, as libtiff does."""
        tag = self._series.levels[0].keyframe.tags.get("Orientation")
        value = int(tag.value) if tag is not None else 1
        return value if 1 <= value <= 8 else 1

    def _resolution_tags(self) -> tuple[float | None, float | None]:
        tags = self._series.levels[0].keyframe.tags
        unit = tags.get("ResolutionUnit")
        xres, yres = tags.get("XResolution"), tags.get("YResolution")
        return _vendor.mm_from_resolution(
            RESOLUTION_UNITS.get(int(unit.value)) if unit else None,
            _rational(xres.value) if xres else None,
            _rational(yres.value) if yres else None,
        )

    def _level_info(self, level: int) -> LevelInfo:
        tiles = self._level_tiles(level, (0,) * len(self._plane_axes))
        return LevelInfo(shape=tiles.shape, tile=tiles.tile)

    @override
    def read_block(
        self, level: int, y0: int, y1: int, x0: int, x1: int, /, plane: tuple[int, ...] = ()
    ) -> np.ndarray:
        return self._level_tiles(level, plane or (0,) * len(self._plane_axes)).read(y0, y1, x0, x1)

    def _channel_names(self, named: tuple[str, ...]) -> tuple[str, ...]:
        axes, shape = self._series.axes, self._series.shape
        bands = (
            shape[axes.index("S")] if "S" in axes else shape[axes.index("C")] if "C" in axes else 1
        )
        photometric = self._series.keyframe.photometric
        if "S" in axes and bands in RGB_BANDS and photometric in COLOUR:
            return RGB_BANDS[bands]
        if len(named) == bands and all(named) and len(set(named)) == bands:
            return named
        if bands == 2 and "S" in axes and tuple(self._series.keyframe.extrasamples) in ALPHA:
            return ("L", "A")
        return ("L",) if bands == 1 else tuple(f"C{i}" for i in range(bands))

    def _associated_info(self) -> list[AssociatedInfo]:
        infos = []
        for series in self._associated_series().values():
            axes, shape = series.axes, series.shape
            bands = shape[axes.index("S")] if "S" in axes else 1
            infos.append(
                AssociatedInfo(
                    series.name.lower(), (shape[axes.index("Y")], shape[axes.index("X")], bands)
                )
            )
        return infos

    def _associated_series(self) -> dict[str, tifffile.TiffPageSeries]:
        levels = {level.keyframe.offset for level in self._series.levels}
        return {
            s.name.lower(): s
            for s in self._tif.series
            if s.name.lower() in ASSOCIATED_SERIES
            and s.keyframe.offset not in levels
            and set(s.axes) <= set("YXS")
        }

    def _fillvalue(self) -> int:
        """White for missing tiles of brightfield RGB slides, else zero."""
        rgb = self._series.keyframe.photometric in COLOUR
        return 255 if rgb and self._series.dtype == np.uint8 else 0

    # -- SlideSource interface --------------------------------------------------------------

    @override
    def read_associated(self, name: str, /) -> np.ndarray:
        series = self._associated_series()[name]
        try:
            # tifffile reads associated images through the one shared file handle (seek,
            # then read): without the lock concurrent reads get each other's bytes
            with self._associated_lock:
                image = series.asarray()
        except Exception as exc:
            msg = f"{self.path}: the associated image {name!r} cannot be decoded ({exc})"
            raise CorruptTileError(msg) from exc
        return image if image.ndim == 3 else image[..., np.newaxis]

    @override
    def close(self) -> None:
        self._tif.close()
        self._store.close()

    @override
    def stamp(self) -> tuple[Any, ...] | None:
        return self._store.stamp() if is_remote(self.path) else None


def _check_geometry(page: tifffile.TiffPage, where: str) -> None:
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


def _check_like_keyframe(
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


def _check_data(
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


class _Chain(NamedTuple):
    """What the walk of the chain of directories found."""

    #: The byte where the last of the directories (SubIFDs too) and of their values stored
    #: apart ends.
    end: int
    #: Each SubIFD's offset → the index of the directory in the chain that lists it.
    subifd_owners: dict[int, int]


def _check_ifd_chain(fh: BinaryIO, size: int, path: str, *, ndpi: bool = False) -> _Chain:
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
    return _Chain(last, owners)


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


def _is_ndpi_name(location: Path | str) -> bool:
    """Whether tifffile reads the file as NDPI: it decides by the name's suffix."""
    path = PurePosixPath(urlsplit(str(location)).path) if is_remote(location) else Path(location)
    return path.suffix.lower() == ".ndpi"


def _is_reduced_copy(
    page: tifffile.TiffPage, base: tifffile.TiffPage, *, tiled: bool = True, slack: int = 1
) -> bool:
    """Whether ``page`` is a pyramid level of ``base``: smaller, same aspect and samples.

    A level's sides are level 0's divided by one downsample and rounded either way, so
    ``h = H/d + e1`` and ``w = W/d + e2`` with ``|e1|, |e2| < 1``: then ``|H*w - h*W|`` is
    below ``H + W``; sides padded by up to ``slack`` pixels (both levels') keep it below
    ``2 * slack * (H + W)``. ``tiled``: the page must be tiled too, as levels found among
    other pages are: Aperio's thumbnail, label and macro are stripped, never tiled.
    """
    h, w, big_h, big_w = page.imagelength, page.imagewidth, base.imagelength, base.imagewidth
    same_samples = (page.dtype, page.samplesperpixel, page.photometric, page.planarconfig) == (
        base.dtype,
        base.samplesperpixel,
        base.photometric,
        base.planarconfig,
    )
    return (
        (page.is_tiled or not tiled)
        and same_samples
        and 0 < h < big_h
        and 0 < w < big_w
        and abs(big_h * w - h * big_w) < (2 * slack if slack > 1 else 1) * (big_h + big_w)
    )


def _tile_side(page: tifffile.TiffPage) -> int:
    """The longer side of a page's tiles (1 for strips): what a writer may pad a level by."""
    return max(page.tilelength, page.tilewidth, 1)


def _ndpi_level(page: tifffile.TiffPage) -> bool:
    """Whether an NDPI page is a level of the scan: its Magnification is positive (the macro
    says -1, the map -2)."""
    magnification = page.tags.valueof(NDPI_MAGNIFICATION)
    return isinstance(magnification, int | float) and magnification > 0


def _ndpi_level_of(page: tifffile.TiffPage, base: tifffile.TiffPage) -> bool:
    """Whether an NDPI page is a level of ``base`` by its Magnification: its sides are
    ``base``'s scaled by the ratio of their Magnifications, within a pixel."""
    magnification = page.tags.valueof(NDPI_MAGNIFICATION)
    base_magnification = base.tags.valueof(NDPI_MAGNIFICATION)
    if not (_ndpi_level(page) and _ndpi_level(base)) or magnification >= base_magnification:
        return False
    scale = magnification / base_magnification
    return (
        abs(page.imagelength - base.imagelength * scale) < 1
        and abs(page.imagewidth - base.imagewidth * scale) < 1
    )


def _describe(page: tifffile.TiffPage) -> str:
    """A page's size and samples, for messages: ``'a 992 x 1216 image of 3 uint8 samples
    (RGB, tiled)'``."""
    photometric = getattr(page.photometric, "name", page.photometric)
    layout = "tiled" if page.is_tiled else "stripped"
    return (
        f"a {page.imagewidth} x {page.imagelength} image of {page.samplesperpixel} "
        f"{page.dtype} sample(s) ({photometric}, {layout})"
    )


def _refuse_olympus_vsi(location: Path | str) -> None:
    """Raise :class:`UnsupportedFormatError` for an Olympus (Evident) VSI file.

    A ``.vsi`` file is a TIFF holding only a preview of the slide: the pyramid is in the
    ``.ets`` files of the folder ``_<name>_`` beside it, in Olympus' own container. Read as a
    TIFF, the preview would pass for the slide.
    """
    remote = is_remote(location)
    path = PurePosixPath(urlsplit(str(location)).path) if remote else Path(location)
    if path.suffix.lower() != ".vsi":
        return
    folder = path.with_name(f"_{path.stem}_")
    ets = sorted(Path(folder).glob("stack*/*.ets")) if not remote and Path(folder).is_dir() else []
    found = (
        f"{len(ets)} .ets file{'s' if len(ets) != 1 else ''} there"
        if ets
        else "it is not beside the .vsi file: copy it with the .vsi"
    )
    msg = (
        f"{path} is an Olympus VSI file: its TIFF is only a preview, and its pixels are in the "
        f"_{path.stem}_/stack*/*.ets files ({found}), which wsiarray does not read. Convert the "
        "slide to OME-TIFF with Bio-Formats (bfconvert -noflat -tilex 512 -tiley 512 "
        f"{path.name} {path.stem}.ome.tif) or QuPath, and open that"
    )
    raise UnsupportedFormatError(msg)


def _plane_size(series: tifffile.TiffPageSeries) -> int:
    axes, shape = series.axes, series.shape
    return shape[axes.index("Y")] * shape[axes.index("X")] if "Y" in axes and "X" in axes else 0


def _rational(value: Any) -> float | None:
    if isinstance(value, tuple) and len(value) == 2:
        return value[0] / value[1] if value[1] else None
    return float(value) if value is not None else None


def _scn_objective(description: str) -> str | None:
    import re

    match = re.search(r"<objective>([^<]+)</objective>", description)
    return match.group(1) if match else None
