"""Seeded mutators over real slides: one function per mutation kind of issue 15.

Every mutator takes ``(rng, data, info)``: a ``random.Random``, the file's bytes as a
``bytearray`` to change in place (or extend), and the parsed structure of the original file;
it returns a one-line description of what it did, or raises :class:`NotApplicable` when the
file has nothing it can change (no ImageDescription, no tiles ...).

TIFF structure comes from tifffile: the IFD offsets of every page (SubIFDs too), each tag's
entry offset, type, count and value offset, and each page's data offsets and byte counts. The
mutators patch those bytes in place (or append an IFD or a value at the end and re-point the
tag), so the rest of the file stays byte-identical. DICOM mutators work on the encapsulated
pixel data's items (parsed here) and on elements (through pydicom); PNG mutators on chunks.
"""

from __future__ import annotations

import contextlib
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MUTATORS", "Mutant", "NotApplicable", "make_mutant", "parse"]


class NotApplicable(Exception):
    """The mutator has nothing to change in this file."""


# -- parsed structure ---------------------------------------------------------------------------


@dataclass
class Tag:
    code: int
    dtype: int
    count: int
    entry: int  # file offset of the tag's IFD entry
    valueoffset: int  # file offset of its value (inside the entry when inline)
    inline: bool


@dataclass
class Ifd:
    offset: int
    ntags: int
    next_at: int  # file offset of the next-IFD pointer
    subifd: bool
    tags: dict[int, Tag]
    shape: tuple[int, int]
    dataoffsets: tuple[int, ...]
    bytecounts: tuple[int, ...]
    is_level: bool  # a page of the main series' levels


@dataclass
class TiffInfo:
    byteorder: str
    offsetsize: int
    tagsize: int
    tagnosize: int
    header_size: int
    ifds: list[Ifd]
    size: int

    def pack_offset(self, value: int) -> bytes:
        return struct.pack(self.byteorder + ("Q" if self.offsetsize == 8 else "I"), value)

    @property
    def level_ifds(self) -> list[Ifd]:
        return [i for i in self.ifds if i.is_level and i.dataoffsets] or self.ifds

    def tiled_ifds(self) -> list[Ifd]:
        return [i for i in self.ifds if i.dataoffsets and any(i.bytecounts)]


@dataclass
class DicomFile:
    name: str
    size: int
    pixel_start: int  # offset of the (7FE0,0010) element
    items: list[tuple[int, int]]  # (offset of item header, value length); first is the BOT
    frames: int
    is_level: bool


@dataclass
class PngChunk:
    offset: int
    length: int
    ctype: bytes


@dataclass
class Info:
    container: str
    tiff: TiffInfo | None = None
    dicom: DicomFile | None = None
    png: list[PngChunk] = field(default_factory=list)


def parse_tiff(path: Path) -> TiffInfo:
    import tifffile

    ifds: list[Ifd] = []
    with tifffile.TiffFile(path) as tif:
        fmt = tif.tiff
        size = tif.filehandle.size
        level_pages = set()
        with contextlib.suppress(Exception):  # only a hint of which pages are levels
            for level in tif.series[0].levels:
                level_pages.update(p.offset for p in level.pages if p is not None)
        pages = list(tif.pages)
        queue = [(p, False) for p in pages]
        seen = set()
        while queue:
            page, sub = queue.pop(0)
            if page.offset in seen:
                continue
            seen.add(page.offset)
            tags = {}
            for tag in page.tags.values():
                tags[tag.code] = Tag(
                    tag.code,
                    int(tag.dtype),
                    tag.count,
                    tag.offset,
                    tag.valueoffset,
                    inline=tag.valueoffset == tag.offset + 4 + fmt.offsetsize,
                )
            ntags = len(page.tags)
            ifds.append(
                Ifd(
                    offset=page.offset,
                    ntags=ntags,
                    next_at=page.offset + fmt.tagnosize + ntags * fmt.tagsize,
                    subifd=sub,
                    tags=tags,
                    shape=tuple(page.shape[:2]) if page.shape else (0, 0),
                    dataoffsets=tuple(page.dataoffsets),
                    bytecounts=tuple(page.databytecounts),
                    is_level=page.offset in level_pages,
                )
            )
            for index, offset in enumerate(page.subifds or ()):
                try:
                    tif.filehandle.seek(offset)
                    queue.append((tifffile.TiffPage(tif, index=(page.index, index)), True))
                except Exception:  # noqa: BLE001, S112
                    continue
        return TiffInfo(
            fmt.byteorder,
            fmt.offsetsize,
            fmt.tagsize,
            fmt.tagnosize,
            16 if fmt.offsetsize == 8 else 8,
            ifds,
            size,
        )


def parse_dicom(path: Path, is_level: bool) -> DicomFile:
    import pydicom

    data = path.read_bytes()
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    tag = b"\xe0\x7f\x10\x00"
    start = data.rfind(tag + b"OB\x00\x00\xff\xff\xff\xff")
    items: list[tuple[int, int]] = []
    if start >= 0:
        pos = start + 12
        while pos + 8 <= len(data):
            group, element, length = struct.unpack_from("<HHI", data, pos)
            if (group, element) != (0xFFFE, 0xE000):
                break
            items.append((pos, length))
            pos += 8 + length
    return DicomFile(path.name, len(data), start, items, frames, is_level)


def parse_png(data: bytes) -> list[PngChunk]:
    chunks = []
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        chunks.append(PngChunk(pos, length, bytes(data[pos + 4 : pos + 8])))
        pos += 12 + length
    return chunks


def parse(container: str, path: Path, member: str | None = None) -> Info:
    """The structure the mutators need, of ``path`` (a file; for DICOM the member's file)."""
    if container == "tiff":
        return Info("tiff", tiff=parse_tiff(path))
    if container == "dicom":
        return Info("dicom", dicom=parse_dicom(path, is_level=_is_level_instance(path)))
    return Info("png", png=parse_png(path.read_bytes()))


def _is_level_instance(path: Path) -> bool:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return "VOLUME" in list(getattr(ds, "ImageType", []))


# -- helpers -------------------------------------------------------------------------------------


def _flip_bits(rng: random.Random, data: bytearray, start: int, end: int, n: int) -> list[int]:
    end = min(end, len(data))
    if end <= start:
        msg = "empty range"
        raise NotApplicable(msg)
    positions = sorted(rng.randrange(start, end) for _ in range(n))
    for pos in positions:
        data[pos] ^= 1 << rng.randrange(8)
    return positions


def _pick_tile(rng: random.Random, tiff: TiffInfo, levels_only: bool = True) -> tuple[Ifd, int]:
    candidates = [i for i in (tiff.level_ifds if levels_only else tiff.ifds) if any(i.bytecounts)]
    if not candidates:
        msg = "no tiles"
        raise NotApplicable(msg)
    ifd = rng.choice(candidates)
    tiles = [k for k, n in enumerate(ifd.bytecounts) if n > 0]
    return ifd, rng.choice(tiles)


def _write_uint(tiff: TiffInfo, data: bytearray, tag: Tag, index: int, value: int) -> None:
    """Write element ``index`` of an integer tag's value (its own width)."""
    width = {1: 1, 3: 2, 4: 4, 8: 2, 9: 4, 16: 8, 17: 8, 13: 4, 18: 8}.get(tag.dtype, 4)
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
    value &= (1 << (8 * width)) - 1
    struct.pack_into(tiff.byteorder + fmt, data, tag.valueoffset + index * width, value)


def _entry_layout(tiff: TiffInfo) -> str:
    return tiff.byteorder + ("HHQ" if tiff.offsetsize == 8 else "HHI")


def _set_count(tiff: TiffInfo, data: bytearray, tag: Tag, count: int) -> None:
    fmt = tiff.byteorder + ("Q" if tiff.offsetsize == 8 else "I")
    count &= (1 << (8 * tiff.offsetsize)) - 1
    struct.pack_into(fmt, data, tag.entry + 4, count)


def _append(data: bytearray, payload: bytes) -> int:
    if len(data) % 2:
        data.append(0)
    where = len(data)
    data.extend(payload)
    return where


def _geometry_ifd(rng: random.Random, tiff: TiffInfo) -> Ifd:
    ifds = tiff.level_ifds
    if not ifds:
        msg = "no IFDs"
        raise NotApplicable(msg)
    return rng.choice(ifds)


# -- TIFF mutators -------------------------------------------------------------------------------


def header_flip(rng: random.Random, data: bytearray, info: Info) -> str:
    """Flip 1-3 bits in the file header (byte order, magic, first IFD offset)."""
    tiff = _need(info.tiff)
    positions = _flip_bits(rng, data, 0, tiff.header_size, rng.randint(1, 3))
    return f"flipped a bit at header bytes {positions}"


def ifd_flip(rng: random.Random, data: bytearray, info: Info) -> str:
    """Flip 1-4 bits anywhere in one IFD (entry count, entries, next pointer)."""
    tiff = _need(info.tiff)
    ifd = rng.choice(tiff.ifds)
    positions = _flip_bits(rng, data, ifd.offset, ifd.next_at + tiff.offsetsize, rng.randint(1, 4))
    return f"flipped bits in IFD@{ifd.offset} at bytes {[p - ifd.offset for p in positions]}"


def tile_flip(rng: random.Random, data: bytearray, info: Info) -> str:
    """Flip 1-8 bits inside one tile's (or strip's) compressed data."""
    tiff = _need(info.tiff)
    ifd, k = _pick_tile(rng, tiff)
    start = ifd.dataoffsets[k]
    positions = _flip_bits(rng, data, start, start + ifd.bytecounts[k], rng.randint(1, 8))
    return f"flipped {len(positions)} bits in tile {k} of IFD@{ifd.offset} {ifd.shape}"


def tile_zero(rng: random.Random, data: bytearray, info: Info) -> str:
    """Zero a run of one tile's data (sometimes all of it)."""
    tiff = _need(info.tiff)
    ifd, k = _pick_tile(rng, tiff)
    start, n = ifd.dataoffsets[k], ifd.bytecounts[k]
    if rng.random() < 0.3:
        a, b = start, start + n
    else:
        a = rng.randrange(start, start + n)
        b = min(start + n, a + rng.randint(1, max(1, n // 2)))
    b = min(b, len(data))
    data[a:b] = bytes(b - a)
    return f"zeroed bytes {a - start}..{b - start} of tile {k} ({n} bytes) of IFD@{ifd.offset}"


def tile_random(rng: random.Random, data: bytearray, info: Info) -> str:
    """Overwrite up to 512 bytes inside one tile with random bytes."""
    tiff = _need(info.tiff)
    ifd, k = _pick_tile(rng, tiff)
    start, n = ifd.dataoffsets[k], ifd.bytecounts[k]
    length = min(n, rng.choice((16, 64, 512)))
    a = rng.randrange(start, start + n - length + 1)
    b = min(a + length, len(data))
    data[a:b] = bytes(rng.randrange(256) for _ in range(b - a))
    return f"{b - a} random bytes at {a - start} of tile {k} ({n} bytes) of IFD@{ifd.offset}"


def truncate(rng: random.Random, data: bytearray, info: Info) -> str:
    """Cut the file short: at a random point, inside a level's tiles, or just after an IFD."""
    size = len(data)
    choice = rng.random()
    tiff = info.tiff
    if tiff is not None and choice < 0.4:
        ifd, k = _pick_tile(rng, tiff)
        cut = ifd.dataoffsets[k] + rng.randrange(max(1, ifd.bytecounts[k]))
        how = f"inside tile {k} of IFD@{ifd.offset}"
    elif tiff is not None and choice < 0.55:
        ifd = rng.choice(tiff.ifds)
        cut = ifd.next_at + tiff.offsetsize
        how = f"just after IFD@{ifd.offset}"
    else:
        cut = int(size * rng.uniform(0.02, 0.999))
        how = "at a random point"
    cut = max(1, min(cut, size - 1))
    del data[cut:]
    return f"truncated to {cut} of {size} bytes ({cut / size:.1%}) {how}"


def ifd_loop(rng: random.Random, data: bytearray, info: Info) -> str:
    """Point an IFD's next pointer at itself or at an earlier IFD of its chain."""
    tiff = _need(info.tiff)
    chain = [i for i in tiff.ifds if not i.subifd]
    if rng.random() < 0.3 and any(i.subifd for i in tiff.ifds):
        chain = [i for i in tiff.ifds if i.subifd]
    k = rng.randrange(len(chain))
    j = rng.randrange(k + 1)
    data[chain[k].next_at : chain[k].next_at + tiff.offsetsize] = tiff.pack_offset(chain[j].offset)
    return f"next pointer of IFD#{k}@{chain[k].offset} -> IFD#{j}@{chain[j].offset} (loop)"


def ifd_next(rng: random.Random, data: bytearray, info: Info) -> str:
    """Tamper an IFD's next pointer: beyond the end, odd, into tile data, near the end, 0."""
    tiff = _need(info.tiff)
    ifd = rng.choice(tiff.ifds)
    size = len(data)
    options = {
        "beyond EOF": size + rng.randint(1, 1 << 20),
        "far beyond EOF": (1 << (8 * tiff.offsetsize)) - rng.randint(1, 64),
        "odd": ifd.offset + 1,
        "into data": rng.randrange(tiff.header_size, size),
        "near EOF": size - rng.randint(1, 12),
        "0 (chain cut)": 0,
    }
    how = rng.choice(sorted(options))
    data[ifd.next_at : ifd.next_at + tiff.offsetsize] = tiff.pack_offset(options[how])
    return f"next pointer of IFD@{ifd.offset} -> {options[how]} ({how})"


IMPORTANT_TAGS = (
    256,
    257,
    258,
    259,
    262,
    273,
    277,
    278,
    279,
    284,
    322,
    323,
    324,
    325,
    330,
    347,
    270,
    530,
    65420,
    65426,
)


def _pick_tag(rng: random.Random, tiff: TiffInfo) -> tuple[Ifd, Tag]:
    ifd = rng.choice(tiff.ifds)
    codes = [c for c in ifd.tags if c in IMPORTANT_TAGS] if rng.random() < 0.8 else []
    codes = codes or list(ifd.tags)
    if not codes:
        msg = "no tags"
        raise NotApplicable(msg)
    return ifd, ifd.tags[rng.choice(codes)]


def tag_count(rng: random.Random, data: bytearray, info: Info) -> str:
    """Change a tag's count (0, 1, +-1, x2, 2**31, all ones)."""
    tiff = _need(info.tiff)
    ifd, tag = _pick_tag(rng, tiff)
    count = rng.choice(
        [
            0,
            1,
            max(0, tag.count - 1),
            tag.count + 1,
            tag.count * 2,
            1 << 31,
            (1 << (8 * tiff.offsetsize)) - 1,
        ]
    )
    _set_count(tiff, data, tag, count)
    return f"count of tag {tag.code} in IFD@{ifd.offset}: {tag.count} -> {count}"


def tag_type(rng: random.Random, data: bytearray, info: Info) -> str:
    """Change a tag's type field (to another valid type, 0, or an unknown one)."""
    tiff = _need(info.tiff)
    ifd, tag = _pick_tag(rng, tiff)
    dtype = rng.choice([0, 1, 2, 3, 4, 5, 7, 11, 12, 13, 16, 17, 18, 99, 0xFFFF])
    struct.pack_into(tiff.byteorder + "H", data, tag.entry + 2, dtype)
    return f"type of tag {tag.code} in IFD@{ifd.offset}: {tag.dtype} -> {dtype}"


GEOMETRY_TAGS = (256, 257, 258, 259, 262, 277, 278, 284, 322, 323, 254)


def tag_value(rng: random.Random, data: bytearray, info: Info) -> str:
    """Change the value of an image-format tag (sizes, tile sizes, bits, samples, compression,
    photometric, planar configuration, rows per strip, subfile type)."""
    tiff = _need(info.tiff)
    ifd = _geometry_ifd(rng, tiff)
    codes = [c for c in GEOMETRY_TAGS if c in ifd.tags]
    if not codes:
        msg = "no format tags"
        raise NotApplicable(msg)
    tag = ifd.tags[rng.choice(codes)]
    old = _read_uint(tiff, data, tag)
    value = rng.choice(
        [
            0,
            1,
            2,
            3,
            max(0, old - 1),
            old + 1,
            old * 2,
            old // 2 + 1,
            7,
            16,
            255,
            65535,
            1 << 31,
            rng.randrange(1 << 16),
        ]
    )
    _write_uint(tiff, data, tag, 0, value)
    return f"tag {tag.code} of IFD@{ifd.offset} {ifd.shape}: {old} -> {value}"


def _read_uint(tiff: TiffInfo, data: bytearray, tag: Tag, index: int = 0) -> int:
    width = {1: 1, 3: 2, 4: 4, 8: 2, 9: 4, 16: 8, 17: 8, 13: 4, 18: 8}.get(tag.dtype, 4)
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
    return struct.unpack_from(tiff.byteorder + fmt, data, tag.valueoffset + index * width)[0]


def _offsets_tag(ifd: Ifd, which: str) -> Tag:
    codes = (324, 273) if which == "offsets" else (325, 279)
    for code in codes:
        if code in ifd.tags:
            return ifd.tags[code]
    msg = f"no {which} tag"
    raise NotApplicable(msg)


def tile_offset(rng: random.Random, data: bytearray, info: Info) -> str:
    """Tamper one tile's offset: 0, beyond the end, another tile's, off by a few, random."""
    tiff = _need(info.tiff)
    ifd, k = _pick_tile(rng, tiff)
    tag = _offsets_tag(ifd, "offsets")
    if tag.count != len(ifd.dataoffsets):
        msg = "offsets not one per tile (NDPI McuStarts)"
        raise NotApplicable(msg)
    old = ifd.dataoffsets[k]
    options = {
        "0": 0,
        "beyond EOF": len(data) + rng.randint(0, 1 << 16),
        "another tile's": rng.choice(ifd.dataoffsets),
        "off by a few": max(0, old + rng.choice([-16, -3, -1, 1, 2, 7])),
        "random": rng.randrange(len(data)),
        "inside the header": rng.randrange(8),
    }
    how = rng.choice(sorted(options))
    _write_uint(tiff, data, tag, k, options[how])
    return f"offset of tile {k} of IFD@{ifd.offset}: {old} -> {options[how]} ({how})"


def tile_bytecount(rng: random.Random, data: bytearray, info: Info) -> str:
    """Tamper one tile's byte count: 1, half, +1000, beyond the end, 2**31, all ones."""
    tiff = _need(info.tiff)
    ifd, k = _pick_tile(rng, tiff)
    tag = _offsets_tag(ifd, "bytecounts")
    if tag.count != len(ifd.bytecounts):
        msg = "byte counts not one per tile"
        raise NotApplicable(msg)
    old = ifd.bytecounts[k]
    value = rng.choice([1, old // 2, old + 1000, len(data), 1 << 31, 0xFFFFFFFF, old * 64])
    _write_uint(tiff, data, tag, k, value)
    return f"byte count of tile {k} of IFD@{ifd.offset}: {old} -> {value}"


def huge_size(rng: random.Random, data: bytearray, info: Info) -> str:
    """Declare a huge image: width and/or height 10**6 (or 2**31 - 1, 2**32 - 1)."""
    tiff = _need(info.tiff)
    ifd = _geometry_ifd(rng, tiff)
    value = rng.choice([10**6, 10**6, 10**6, 2**31 - 1, 2**32 - 1, 10**5])
    which = rng.choice(["both", "width", "height"])
    codes = {"both": (256, 257), "width": (256,), "height": (257,)}[which]
    for code in codes:
        if code not in ifd.tags:
            msg = "no size tags"
            raise NotApplicable(msg)
        tag = ifd.tags[code]
        if tag.dtype == 3 and value > 65535:  # widen SHORT to LONG, in place
            struct.pack_into(tiff.byteorder + "H", data, tag.entry + 2, 4)
            tag = Tag(tag.code, 4, tag.count, tag.entry, tag.valueoffset, tag.inline)
        _write_uint(tiff, data, tag, 0, value)
    return f"{which} of IFD@{ifd.offset} {ifd.shape} -> {value}"


def zero_length_tile(rng: random.Random, data: bytearray, info: Info) -> str:
    """Set one or a few tiles' byte counts to 0 (a tile the file marks as absent)."""
    tiff = _need(info.tiff)
    ifd, k = _pick_tile(rng, tiff)
    tag = _offsets_tag(ifd, "bytecounts")
    if tag.count != len(ifd.bytecounts):
        msg = "byte counts not one per tile"
        raise NotApplicable(msg)
    tiles = sorted({k, *(rng.randrange(len(ifd.bytecounts)) for _ in range(rng.choice((0, 0, 3))))})
    also_offset = rng.random() < 0.3
    for t in tiles:
        _write_uint(tiff, data, tag, t, 0)
        if also_offset:
            _write_uint(tiff, data, _offsets_tag(ifd, "offsets"), t, 0)
    return (
        f"byte count{' and offset' if also_offset else ''} 0 for tiles {tiles} of IFD@{ifd.offset}"
    )


def duplicate_ifd(rng: random.Random, data: bytearray, info: Info) -> str:
    """Copy an IFD to the end of the file and link the copy in right after the original."""
    tiff = _need(info.tiff)
    ifd = rng.choice(tiff.ifds)
    raw = bytes(data[ifd.offset : ifd.next_at + tiff.offsetsize])
    where = _append(data, raw)
    data[ifd.next_at : ifd.next_at + tiff.offsetsize] = tiff.pack_offset(where)
    return f"IFD@{ifd.offset} {ifd.shape} duplicated at {where}, linked after the original"


def _description_variants(rng: random.Random, text: str) -> tuple[str, str]:
    import re

    numbers = list(re.finditer(r"\d+(\.\d+)?", text))
    choices = ["garbage", "empty", "cut", "not utf-8"]
    if numbers:
        choices += ["number", "number", "number"]
    if "<" in text:
        choices += ["xml attr", "xml attr", "xml broken", "xml element removed"]
    how = rng.choice(choices)
    if how == "number":
        m = rng.choice(numbers)
        new = rng.choice(["0", "-1", "1e308", "nan", "1000000", "99999999999999999999", "", "0.0"])
        return how, text[: m.start()] + new + text[m.end() :]
    if how == "garbage":
        return how, "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randint(1, 200)))
    if how == "empty":
        return how, ""
    if how == "cut":
        return how, text[: rng.randrange(max(1, len(text)))]
    if how == "not utf-8":
        return how, text.replace("|", "\udcff|", 1) if "|" in text else "\udcff" + text
    if how == "xml attr":
        attrs = list(
            re.finditer(
                r"(Size[XYZCT]|IFD|PlaneCount|Type|DimensionOrder|SamplesPerPixel|"
                r'PhysicalSize[XY])="([^"]*)"',
                text,
            )
        )
        if not attrs:
            return "garbage", "<" + text[1:]
        m = rng.choice(attrs)
        new = rng.choice(["0", "-1", "1000000", "99", "uint16", "float", "XYZTC", "abc", ""])
        return f"xml {m.group(1)}", text[: m.start(2)] + new + text[m.end(2) :]
    if how == "xml broken":
        cut = text.rfind("</")
        return how, text[:cut] if cut > 0 else text[:-5]
    element = re.search(r"<(TiffData|Channel|Pixels|Plane)\b[^>]*?/?>", text)
    if element is None:
        return "garbage", text[::-1]
    return f"xml {element.group(1)} removed", text[: element.start()] + text[element.end() :]


def description_edit(rng: random.Random, data: bytearray, info: Info) -> str:
    """Edit an ImageDescription (Aperio header numbers, OME-XML attributes and elements,
    garbage, empty, cut, not UTF-8): the new text is appended and the tag re-pointed."""
    tiff = _need(info.tiff)
    candidates = [(i, i.tags[270]) for i in tiff.ifds if 270 in i.tags]
    if not candidates:
        msg = "no ImageDescription"
        raise NotApplicable(msg)
    ifd, tag = rng.choice(candidates)
    old = bytes(data[tag.valueoffset : tag.valueoffset + tag.count]).rstrip(b"\0")
    text = old.decode("utf-8", "replace")
    how, new_text = _description_variants(rng, text)
    payload = new_text.encode("utf-8", "surrogateescape") + b"\0"
    payload = payload.ljust(tiff.offsetsize + 1, b"\0")
    where = _append(data, payload)
    _set_count(tiff, data, tag, len(payload))
    data[tag.entry + 4 + tiff.offsetsize : tag.entry + 4 + 2 * tiff.offsetsize] = tiff.pack_offset(
        where
    )
    return (
        f"ImageDescription of IFD@{ifd.offset} edited ({how}), {len(old)} -> {len(payload)} bytes"
    )


# -- DICOM mutators ------------------------------------------------------------------------------


def _frame_item(rng: random.Random, dcm: DicomFile) -> tuple[int, int, int]:
    frames = [(k, off, n) for k, (off, n) in enumerate(dcm.items[1:]) if n > 0]
    if not frames:
        msg = "no encapsulated frames"
        raise NotApplicable(msg)
    k, off, n = rng.choice(frames)
    return k, off + 8, n


def dicom_header_flip(rng: random.Random, data: bytearray, info: Info) -> str:
    """Flip 1-4 bits among the elements before the pixel data (file meta and dataset)."""
    dcm = _need(info.dicom)
    end = dcm.pixel_start + 12 if dcm.pixel_start > 0 else len(data)
    positions = _flip_bits(rng, data, 128, end, rng.randint(1, 4))
    return f"flipped bits at bytes {positions} of {dcm.name} (header)"


def dicom_frame_flip(rng: random.Random, data: bytearray, info: Info) -> str:
    """Flip 1-8 bits inside one frame's JPEG data."""
    dcm = _need(info.dicom)
    k, start, n = _frame_item(rng, dcm)
    _flip_bits(rng, data, start, start + n, rng.randint(1, 8))
    return f"flipped bits in frame {k} ({n} bytes) of {dcm.name}"


def dicom_frame_zero(rng: random.Random, data: bytearray, info: Info) -> str:
    """Zero a run (or all) of one frame's data."""
    dcm = _need(info.dicom)
    k, start, n = _frame_item(rng, dcm)
    a = start if rng.random() < 0.3 else rng.randrange(start, start + n)
    b = start + n if a == start else min(start + n, a + rng.randint(1, max(1, n // 2)))
    data[a:b] = bytes(b - a)
    return f"zeroed bytes {a - start}..{b - start} of frame {k} ({n} bytes) of {dcm.name}"


def dicom_frame_random(rng: random.Random, data: bytearray, info: Info) -> str:
    """Overwrite up to 512 bytes of one frame with random bytes."""
    dcm = _need(info.dicom)
    k, start, n = _frame_item(rng, dcm)
    length = min(n, rng.choice((16, 64, 512)))
    a = rng.randrange(start, start + n - length + 1)
    data[a : a + length] = bytes(rng.randrange(256) for _ in range(length))
    return f"{length} random bytes at {a - start} of frame {k} ({n} bytes) of {dcm.name}"


def dicom_truncate(rng: random.Random, data: bytearray, info: Info) -> str:
    """Cut an instance short: inside a frame, inside the header, or at a random point."""
    dcm = _need(info.dicom)
    size = len(data)
    choice = rng.random()
    if choice < 0.5 and len(dcm.items) > 1:
        k, start, n = _frame_item(rng, dcm)
        cut, how = start + rng.randrange(n), f"inside frame {k}"
    elif choice < 0.7 and dcm.pixel_start > 0:
        cut, how = rng.randrange(132, dcm.pixel_start), "inside the header"
    else:
        cut, how = int(size * rng.uniform(0.05, 0.999)), "at a random point"
    del data[max(1, cut) :]
    return f"{dcm.name} truncated to {len(data)} of {size} bytes ({how})"


def _dicom_rewrite(data: bytearray, edit: Callable) -> str:
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(bytes(data)))
    what = edit(ds)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    data[:] = out.getvalue()
    return what


DICOM_VALUES = {
    "Rows": [0, 1, 255, 1025, 65535],
    "Columns": [0, 1, 255, 1025, 65535],
    "NumberOfFrames": ["0", "1", "2", "100000", "-1"],
    "SamplesPerPixel": [0, 2, 4, 255],
    "BitsAllocated": [0, 1, 12, 16, 32],
    "BitsStored": [0, 16, 7],
    "PhotometricInterpretation": ["RGB", "MONOCHROME1", "PALETTE COLOR", "YBR_FULL", "XYZ"],
    "PlanarConfiguration": [1, 2],
    "TotalPixelMatrixColumns": [0, 1, 1023, 4096, 100000],
    "TotalPixelMatrixRows": [0, 1, 1023, 4096, 100000],
    "ImageType": [["ORIGINAL", "PRIMARY", "LABEL"], ["DERIVED", "PRIMARY", "OVERVIEW"], ["X"]],
    "DimensionOrganizationType": ["TILED_SPARSE", "3D", "X"],
    "PixelSpacing": [[0, 0], [-1, -1], [1e300, 1e300]],
    "SeriesInstanceUID": ["1.2.3.4"],
    "TransferSyntaxUID": ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.90", "1.2.3"],
}


def dicom_tag_value(rng: random.Random, data: bytearray, info: Info) -> str:
    """Change an element's value (Rows, Columns, NumberOfFrames, bits, photometric, total
    matrix size, ImageType, DimensionOrganizationType, PixelSpacing, series UID, transfer
    syntax) and rewrite the instance with pydicom (pixel data bytes unchanged)."""
    _need(info.dicom)
    name = rng.choice(sorted(DICOM_VALUES))
    value = rng.choice(DICOM_VALUES[name])

    def edit(ds):
        if name == "TransferSyntaxUID":
            old = ds.file_meta.TransferSyntaxUID
            ds.file_meta.TransferSyntaxUID = value
        elif name == "PixelSpacing":
            if "SharedFunctionalGroupsSequence" not in ds:
                msg = "no shared functional groups"
                raise NotApplicable(msg)
            measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
            old, measures.PixelSpacing = measures.PixelSpacing, value
        else:
            old = getattr(ds, name, None)
            setattr(ds, name, value)
        return f"{name}: {old!r} -> {value!r}"

    return f"{_dicom_rewrite(data, edit)} in {info.dicom.name}"


def dicom_huge_size(rng: random.Random, data: bytearray, info: Info) -> str:
    """Declare a huge total pixel matrix (10**6 x 10**6, or 2**32 - 1) or frame size."""
    _need(info.dicom)
    value = rng.choice([10**6, 10**6, 2**32 - 1])
    which = rng.choice(["total both", "total columns", "total rows", "frame"])

    def edit(ds):
        if which == "frame":
            ds.Rows = ds.Columns = 65535
            return "Rows, Columns -> 65535"
        if which in ("total both", "total columns"):
            ds.TotalPixelMatrixColumns = value
        if which in ("total both", "total rows"):
            ds.TotalPixelMatrixRows = value
        return f"{which} pixel matrix -> {value}"

    return f"{_dicom_rewrite(data, edit)} in {info.dicom.name}"


def dicom_item_length(rng: random.Random, data: bytearray, info: Info) -> str:
    """Tamper an encapsulated item's length or a Basic Offset Table entry (the DICOM analogue
    of tile offsets and byte counts)."""
    dcm = _need(info.dicom)
    if not dcm.items:
        msg = "no encapsulated items"
        raise NotApplicable(msg)
    bot_off, bot_len = dcm.items[0]
    if bot_len >= 4 and rng.random() < 0.4:
        entry = rng.randrange(bot_len // 4)
        value = rng.choice([0, 1, 0xFFFFFFFF, len(data), rng.randrange(len(data))])
        struct.pack_into("<I", data, bot_off + 8 + 4 * entry, value)
        return f"Basic Offset Table entry {entry} -> {value} in {dcm.name}"
    k = rng.randrange(1, len(dcm.items))
    off, n = dcm.items[k]
    value = rng.choice([0, 1, n - 1, n + 1, n * 2, 0xFFFFFFFF, 0xFFFFFFFE, len(data)])
    struct.pack_into("<I", data, off + 4, value & 0xFFFFFFFF)
    return f"length of item {k} (frame {k - 1}): {n} -> {value} in {dcm.name}"


def _rebuild_items(data: bytearray, dcm: DicomFile, frames: list[bytes]) -> None:
    """Re-encapsulate ``frames`` (one fragment each) with a fresh Basic Offset Table."""
    bot_off = dcm.items[0][0]
    last_off, last_len = dcm.items[-1]
    tail = bytes(data[last_off + 8 + last_len :])
    offsets, pos = [], 0
    for frame in frames:
        offsets.append(pos)
        pos += 8 + len(frame) + len(frame) % 2
    body = bytearray(struct.pack("<HHI", 0xFFFE, 0xE000, 4 * len(frames)))
    body += struct.pack(f"<{len(frames)}I", *offsets)
    for frame in frames:
        padded = frame + b"\0" * (len(frame) % 2)
        body += struct.pack("<HHI", 0xFFFE, 0xE000, len(padded)) + padded
    data[bot_off:] = bytes(body) + tail


def _frames(data: bytearray, dcm: DicomFile) -> list[bytes]:
    if len(dcm.items) - 1 != dcm.frames:
        msg = "not one fragment per frame"
        raise NotApplicable(msg)
    return [bytes(data[o + 8 : o + 8 + n]) for o, n in dcm.items[1:]]


def dicom_zero_length_frame(rng: random.Random, data: bytearray, info: Info) -> str:
    """Make one frame empty (a zero-length item), offsets table rewritten to match."""
    dcm = _need(info.dicom)
    frames = _frames(data, dcm)
    k = rng.randrange(len(frames))
    frames[k] = b""
    _rebuild_items(data, dcm, frames)
    return f"frame {k} of {dcm.name} made empty"


def dicom_duplicate_frame(rng: random.Random, data: bytearray, info: Info) -> str:
    """Duplicate or drop a frame (NumberOfFrames no longer matches the items)."""
    dcm = _need(info.dicom)
    frames = _frames(data, dcm)
    k = rng.randrange(len(frames))
    if rng.random() < 0.5:
        frames.insert(k, frames[k])
        how = "duplicated"
    else:
        del frames[k]
        how = "dropped"
    _rebuild_items(data, dcm, frames)
    return f"frame {k} of {dcm.name} {how}"


# -- PNG mutators --------------------------------------------------------------------------------


def _chunk(rng: random.Random, info: Info, types: tuple[bytes, ...] = ()) -> PngChunk:
    chunks = [c for c in info.png if not types or c.ctype in types]
    if not chunks:
        msg = "no such chunk"
        raise NotApplicable(msg)
    return rng.choice(chunks)


def _fix_crc(data: bytearray, chunk: PngChunk) -> None:
    body = bytes(data[chunk.offset + 4 : chunk.offset + 8 + chunk.length])
    struct.pack_into(">I", data, chunk.offset + 8 + chunk.length, zlib.crc32(body))


def png_chunk_length(rng: random.Random, data: bytearray, info: Info) -> str:
    """Tamper a chunk's length field."""
    chunk = _chunk(rng, info)
    value = rng.choice(
        [0, 1, chunk.length + 1, max(0, chunk.length - 1), 0x7FFFFFFF, 0xFFFFFFFF, len(data)]
    )
    struct.pack_into(">I", data, chunk.offset, value)
    return f"length of {chunk.ctype.decode()} chunk @{chunk.offset}: {chunk.length} -> {value}"


def png_crc(rng: random.Random, data: bytearray, info: Info) -> str:
    """Flip a bit of a chunk's CRC."""
    chunk = _chunk(rng, info)
    at = chunk.offset + 8 + chunk.length + rng.randrange(4)
    data[at] ^= 1 << rng.randrange(8)
    return f"CRC of {chunk.ctype.decode()} chunk @{chunk.offset} flipped"


def png_ihdr(rng: random.Random, data: bytearray, info: Info) -> str:
    """Change an IHDR field (bit depth, colour type, compression, filter, interlace), with
    the CRC fixed or not."""
    chunk = _chunk(rng, info, (b"IHDR",))
    field_, at = rng.choice(
        [
            ("bit depth", 16),
            ("colour type", 17),
            ("compression", 18),
            ("filter", 19),
            ("interlace", 20),
            ("width", 8),
            ("height", 12),
        ]
    )
    at += chunk.offset
    if field_ in ("width", "height"):
        value = rng.choice([0, 1, 2**31 - 1, 2**32 - 1, 301, 299])
        struct.pack_into(">I", data, at, value & 0xFFFFFFFF)
    else:
        value = rng.choice([0, 1, 2, 3, 4, 6, 7, 16, 255])
        data[at] = value
    fixed = rng.random() < 0.8
    if fixed:
        _fix_crc(data, chunk)
    return f"IHDR {field_} -> {value} (CRC {'fixed' if fixed else 'stale'})"


def png_huge_size(rng: random.Random, data: bytearray, info: Info) -> str:
    """Declare a 10**6 x 10**6 (or 2**31 - 1 wide) image in IHDR, CRC fixed."""
    chunk = _chunk(rng, info, (b"IHDR",))
    width, height = rng.choice([(10**6, 10**6), (2**31 - 1, 1), (1, 2**31 - 1), (10**5, 10**5)])
    struct.pack_into(">II", data, chunk.offset + 8, width, height)
    _fix_crc(data, chunk)
    return f"IHDR size -> {width} x {height} (CRC fixed)"


def _idat_range(rng: random.Random, info: Info) -> tuple[PngChunk, int, int]:
    chunk = _chunk(rng, info, (b"IDAT",))
    return chunk, chunk.offset + 8, chunk.offset + 8 + chunk.length


def png_idat_flip(rng: random.Random, data: bytearray, info: Info) -> str:
    """Flip bits in IDAT data, the CRC fixed (so only zlib or the filters can notice) or not."""
    chunk, a, b = _idat_range(rng, info)
    positions = _flip_bits(rng, data, a, b, rng.randint(1, 8))
    fixed = rng.random() < 0.7
    if fixed:
        _fix_crc(data, chunk)
    return f"flipped {len(positions)} bits in IDAT @{chunk.offset} (CRC {'fixed' if fixed else 'stale'})"


def png_idat_zero(rng: random.Random, data: bytearray, info: Info) -> str:
    """Zero a run of IDAT data, CRC fixed."""
    chunk, a, b = _idat_range(rng, info)
    start = rng.randrange(a, b)
    end = min(b, start + rng.randint(1, 2048))
    data[start:end] = bytes(end - start)
    _fix_crc(data, chunk)
    return f"zeroed {end - start} bytes of IDAT @{chunk.offset} (CRC fixed)"


def png_truncate(rng: random.Random, data: bytearray, info: Info) -> str:
    """Cut the PNG short (inside IDAT, before IEND, or anywhere)."""
    size = len(data)
    if rng.random() < 0.5:
        _, a, b = _idat_range(rng, info)
        cut = rng.randrange(a, b)
    else:
        cut = int(size * rng.uniform(0.01, 0.999))
    del data[max(1, cut) :]
    return f"truncated to {len(data)} of {size} bytes"


def png_duplicate_chunk(rng: random.Random, data: bytearray, info: Info) -> str:
    """Insert a second copy of a chunk (IHDR, IDAT or IEND) right after it, or drop IEND."""
    chunk = _chunk(rng, info, (b"IHDR", b"IDAT", b"IEND"))
    raw = bytes(data[chunk.offset : chunk.offset + 12 + chunk.length])
    if chunk.ctype == b"IEND" and rng.random() < 0.5:
        del data[chunk.offset :]
        return "IEND removed"
    data[chunk.offset + len(raw) : chunk.offset + len(raw)] = raw
    return f"{chunk.ctype.decode()} chunk duplicated"


def png_text(rng: random.Random, data: bytearray, info: Info) -> str:
    """Insert a text chunk before IDAT: huge zTXt (a decompression bomb), bad iTXt, garbage."""
    chunk = _chunk(rng, info, (b"IDAT",))
    how = rng.choice(["ztxt bomb", "itxt bad", "unknown critical", "garbage text"])
    if how == "ztxt bomb":
        body = b"Comment\0\0" + zlib.compress(b"A" * (64 << 20), 9)
        ctype = b"zTXt"
    elif how == "itxt bad":
        body, ctype = b"Key\0\1\0en\0\0" + bytes(rng.randrange(256) for _ in range(64)), b"iTXt"
    elif how == "unknown critical":
        body, ctype = b"xxxx", b"ABCD"
    else:
        body, ctype = bytes(rng.randrange(256) for _ in range(100)), b"tEXt"
    raw = struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))
    data[chunk.offset : chunk.offset] = raw
    return f"{how} chunk inserted before IDAT"


# -- registry ------------------------------------------------------------------------------------

TIFF_MUTATORS = [
    header_flip,
    ifd_flip,
    tile_flip,
    tile_zero,
    tile_random,
    truncate,
    ifd_loop,
    ifd_next,
    tag_count,
    tag_type,
    tag_value,
    tile_offset,
    tile_bytecount,
    huge_size,
    zero_length_tile,
    duplicate_ifd,
    description_edit,
]
DICOM_MUTATORS = [
    dicom_header_flip,
    dicom_frame_flip,
    dicom_frame_zero,
    dicom_frame_random,
    dicom_truncate,
    dicom_tag_value,
    dicom_huge_size,
    dicom_item_length,
    dicom_zero_length_frame,
    dicom_duplicate_frame,
]
PNG_MUTATORS = [
    png_chunk_length,
    png_crc,
    png_ihdr,
    png_huge_size,
    png_idat_flip,
    png_idat_zero,
    png_truncate,
    png_duplicate_chunk,
    png_text,
]
#: container -> {kind name: mutator}
MUTATORS: dict[str, dict[str, Callable[[random.Random, bytearray, Info], str]]] = {
    "tiff": {f.__name__: f for f in TIFF_MUTATORS},
    "dicom": {f.__name__: f for f in DICOM_MUTATORS},
    "png": {f.__name__: f for f in PNG_MUTATORS},
}


def _need(value):
    if value is None:
        msg = "wrong container"
        raise NotApplicable(msg)
    return value


@dataclass
class Mutant:
    """One mutated slide: where it is, what was done, and which bytes changed."""

    id: str
    entry: str
    kind: str
    member: str  # the file of the entry that was changed
    detail: str
    path: Path  # what wa.open gets
    file: Path  # the mutated file
    changed: list[tuple[int, int]]  # byte ranges that differ from the original (original coords)
    original_size: int
    size: int


def changed_ranges(old: bytes, new: bytes) -> list[tuple[int, int]]:
    import numpy as np

    n = min(len(old), len(new))
    diff = np.frombuffer(old[:n], np.uint8) != np.frombuffer(new[:n], np.uint8)
    ranges: list[tuple[int, int]] = []
    if diff.any():
        idx = np.flatnonzero(np.diff(np.concatenate(([0], diff.view(np.int8), [0]))))
        ranges = [(int(a), int(b)) for a, b in zip(idx[::2], idx[1::2], strict=True)]
    if len(old) != len(new):
        ranges.append((n, max(len(old), len(new))))
    return ranges[:64]


def make_mutant(entry, kind: str, seed: int, index: int, workdir: Path) -> Mutant:
    """Write mutant ``(seed, index)`` of ``entry`` by ``kind`` under ``workdir``.

    Deterministic: the same arguments give the same bytes (the random state is seeded from
    the seed, the index, the entry's name and the kind).
    """
    rng = random.Random(f"{seed}/{index}/{entry.name}/{kind}")
    members = list(entry.members)
    if entry.is_folder:
        # prefer the instances holding pixels of a level (more to break)
        member = rng.choice(members)
        source = entry.path / member
    else:
        member = members[0]
        source = entry.path
    original = source.read_bytes()
    info = parse(entry.container, source)
    data = bytearray(original)
    detail = MUTATORS[entry.container][kind](rng, data, info)
    out = workdir / f"m{seed}-{index}"
    out.mkdir(parents=True, exist_ok=True)
    if entry.is_folder:
        folder = out / entry.path.name
        folder.mkdir(exist_ok=True)
        for other in members:
            if other != member:
                link = folder / other
                if not link.exists():
                    link.symlink_to((entry.path / other).resolve())
        file = folder / member
        path = folder
    else:
        file = out / source.name
        path = file
    file.write_bytes(data)
    return Mutant(
        id=f"{entry.name}/{kind}/{seed}.{index}",
        entry=entry.name,
        kind=kind,
        member=member,
        detail=detail,
        path=path,
        file=file,
        changed=changed_ranges(original, bytes(data)),
        original_size=len(original),
        size=len(data),
    )


def touched_tiles(info: Info, changed: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(IFD offset, tile index)`` of the original's tiles whose bytes, offset or byte count a
    mutation changed (TIFF only; at most 64)."""
    tiff = info.tiff
    if tiff is None or not changed:
        return []

    def hit(a: int, b: int) -> bool:
        return any(a < end and start < b for start, end in changed)

    found: list[tuple[int, int]] = []
    for ifd in tiff.ifds:
        arrays = []
        for which in ("offsets", "bytecounts"):
            try:
                tag = _offsets_tag(ifd, which)
            except NotApplicable:
                continue
            width = {3: 2, 4: 4, 16: 8}.get(tag.dtype, 4)
            arrays.append((tag.valueoffset, width))
        for k, (offset, count) in enumerate(zip(ifd.dataoffsets, ifd.bytecounts, strict=True)):
            if hit(offset, offset + max(1, count)) or any(
                hit(base + k * width, base + (k + 1) * width) for base, width in arrays
            ):
                found.append((ifd.offset, k))
                if len(found) >= 64:
                    return found
    return found
