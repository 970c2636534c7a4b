"""Decode the native tiles (or strips) of one TIFF pyramid level into blocks.

wsiarray serves TIFF levels through its :class:`~wsiarray.sources._store.ChunkStore` with
chunks of many native tiles (about 1024 px a side) rather than through tifffile's zarr store
with one chunk per tile: zarr 3 spends roughly as long on each chunk's bookkeeping as
libjpeg-turbo spends decoding a 240-px tile, so tile-sized chunks ran at a quarter of the
decoder's speed. Raw bytes are read with ``os.pread`` (thread-safe, releases the GIL).
Tiled 8-bit JPEG is decoded here into per-thread buffers, RGB tiles as RGBX with simplejpeg,
others with imagecodecs, both with the colour spaces tifffile would use; every other
compression tifffile reads is decoded by tifffile.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
import tifffile

from wsiarray.errors import CorruptTileError

__all__ = ["SUPER_TILE", "LevelTiles"]

#: Target side, in pixels, of one zarr chunk: whole native tiles adding up to about this.
SUPER_TILE = 1024

JPEG = 7
JCS_RGB = 2  # libjpeg's J_COLOR_SPACE value, as tifffile's jpeg_decode_colorspace gives it
SOI = b"\xff\xd8"
#: APP14 "Adobe" segment, version 100, no flags, transform 0: the components are RGB
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
#: Markers that tell libjpeg the colour space (JFIF APP0, Adobe APP14), and start of scan
COLOUR_MARKERS = (b"\xff\xe0", b"\xff\xee")
SOS = b"\xff\xda"
EOI = b"\xff\xd9"
#: libjpeg warnings that mean damaged entropy data (the pixels would be wrong); others, such
#: as "Invalid SOS parameters for sequential JPEG" from some encoders, leave them right
CORRUPTION_WARNINGS = (
    "premature end",
    "bad huffman code",
    "bad arithmetic code",
    "instead of rst",
)


@dataclass(frozen=True, slots=True)
class _Plane:
    """One page of the level (a channel of a CYX image, or the whole YXS image)."""

    page: tifffile.TiffPage
    offsets: np.ndarray
    counts: np.ndarray
    jpegtables: bytes | None
    #: start of a complete JPEG stream for the strict decode (see LevelTiles._stream_header)
    stream_header: bytes | None


class LevelTiles:
    """Read blocks of one level from its native tiles.

    Parameters
    ----------
    path : Path
        The file (reopened here for ``pread``).
    level : int
        Level index, for error messages.
    series : tifffile.TiffPageSeries
        The level, as tifffile sees it: axes ``YX``, ``YXS`` or ``CYX`` (one page per channel).
    fill : int
        Value of tiles the file does not store (sparse tiles).
    """

    def __init__(self, path: Path, level: int, series: tifffile.TiffPageSeries, fill: int) -> None:
        self.path, self.level, self.fill = path, level, fill
        keyframe = series.keyframe
        self._keyframe = keyframe
        self.dtype = keyframe.dtype
        contiguous_samples = keyframe.samplesperpixel > 1 and keyframe.planarconfig == 1
        tile_dims = keyframe.chunks[:-1] if contiguous_samples else keyframe.chunks
        self.tile: tuple[int, int] = (tile_dims[-2], tile_dims[-1])
        self.shape = (keyframe.imagelength, keyframe.imagewidth)
        self.grid = (
            math.ceil(self.shape[0] / self.tile[0]),
            math.ceil(self.shape[1] / self.tile[1]),
        )
        self.separate_samples = keyframe.planarconfig == 2 and keyframe.samplesperpixel > 1
        self.samples = keyframe.samplesperpixel
        # libjpeg decodes a tile whose end is missing (zeroed or cut off) with only a warning,
        # filling it with grey: such tiles must end with the EOI marker. NDPI's "tiles" are
        # restart intervals of one big JPEG: each ends with a restart marker (RST0-7), the
        # last with EOI, as OpenSlide checks too.
        self._end_markers: tuple[bytes, ...] = ()
        if keyframe.compression == JPEG:
            self._end_markers = (
                (*(bytes((0xFF, m)) for m in range(0xD0, 0xD8)), b"\xff\xd9")
                if keyframe.parent.is_ndpi
                else (b"\xff\xd9",)
            )
        self._jpeg = self._direct_jpeg(keyframe)
        self._planes = []
        for page in series.pages:
            tables = getattr(page, "jpegtables", None) or keyframe.jpegtables
            self._planes.append(
                _Plane(
                    page,
                    np.asarray(page.dataoffsets, dtype=np.int64),
                    np.asarray(page.databytecounts, dtype=np.int64),
                    tables,
                    self._stream_header(tables),
                )
            )
        self.bands = len(self._planes) * self.samples
        self._buffers = threading.local()
        self._fd = os.open(path, os.O_RDONLY)

    def chunk_shape(self, target: int = SUPER_TILE) -> tuple[int, int]:
        """Zarr chunk shape: whole tiles adding up to about ``target`` px, capped at the level."""
        return tuple(  # type: ignore[return-value]
            min(t * max(1, round(target / t)), s)
            for t, s in zip(self.tile, self.shape, strict=True)
        )

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Return pixels ``[y0:y1, x0:x1]`` as a ``(h, w, bands)`` array."""
        # band-planar memory (see wsiarray.tree.band_planar): tiles are transposed as they are pasted
        out = np.empty((self.bands, y1 - y0, x1 - x0), dtype=self.dtype).transpose(1, 2, 0)
        th, tw = self.tile
        for ty in range(y0 // th, (y1 - 1) // th + 1):
            for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                top, left = ty * th, tx * tw
                ys = slice(max(y0, top) - top, min(y1, top + th) - top)
                xs = slice(max(x0, left) - left, min(x1, left + tw) - left)
                target = out[
                    max(y0, top) - y0 : min(y1, top + th) - y0,
                    max(x0, left) - x0 : min(x1, left + tw) - x0,
                ]
                self._paste(ty, tx, ys, xs, target)
        return out

    def _paste(self, ty: int, tx: int, ys: slice, xs: slice, target: np.ndarray) -> None:
        band = 0
        for plane in self._planes:
            for sample in range(self.samples if self.separate_samples else 1):
                index = (sample * self.grid[0] + ty) * self.grid[1] + tx
                # band by band: numpy copies an interleaved tile into band-planar memory ~9x
                # faster this way than as one (h, w, 3) assignment (43 vs 400 µs per 240² tile)
                for pixels in self._decode(plane, index, ty, tx):
                    np.copyto(target[..., band], pixels[ys, xs], casting="unsafe")
                    band += 1

    def _direct_jpeg(self, keyframe: tifffile.TiffPage) -> tuple[object, object] | None:
        """Colour spaces for decoding JPEG tiles straight into a reused buffer, or ``None``.

        For tiled, 8-bit, interleaved JPEG (not NDPI's restart intervals), wsiarray calls a
        JPEG decoder itself, with the colour spaces tifffile would use, and decodes into one
        buffer per thread: no fresh 170 KB allocation per tile. That matters most in
        ``dask.distributed`` workers, whose ``MALLOC_TRIM_THRESHOLD_`` setting makes glibc map
        and unmap every such allocation (measured: 111 vs 78 ms per 4080-px chunk).
        """
        if (
            keyframe.compression != JPEG
            or not keyframe.is_tiled  # a last strip may be stored shorter
            or keyframe.parent.is_ndpi
            or self.separate_samples
            or keyframe.bitspersample != 8
            or self.samples not in (1, 3)
        ):
            return None
        from tifffile.tifffile import jpeg_decode_colorspace

        return jpeg_decode_colorspace(
            keyframe.photometric, keyframe.planarconfig, keyframe.extrasamples, keyframe.is_jfif
        )

    def _stream_header(self, jpegtables: bytes | None) -> bytes | None:
        """Start of a complete JPEG stream for :meth:`_decode_strict`, or ``None`` if it cannot.

        For tiles that tifffile decodes to RGB (3 samples) or leaves grey (1 sample). RGB is
        either YCbCr told by libjpeg itself, or components declared RGB (Aperio): then an
        Adobe APP14 marker with transform 0 tells libjpeg the same. The tables' segments are
        spliced in without their APPn and COM segments: read as a separate stream (as tifffile
        does), a JFIF marker among the tables does not decide the image's colour space.
        """
        if self._jpeg is None:
            return None
        colorspace, outcolorspace = self._jpeg  # type: ignore[misc]
        grey = self.samples == 1 and (colorspace, outcolorspace) == (None, None)
        rgb = self.samples == 3 and outcolorspace == JCS_RGB and colorspace in (None, JCS_RGB)
        if not (grey or rgb):
            return None
        tables = b"".join(_table_segments(jpegtables)) if jpegtables else b""
        return SOI + (ADOBE_RGB if colorspace == JCS_RGB else b"") + tables

    def _strict_buffers(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """This thread's decode buffer and its bands, each ``(tile height, tile width)``.

        Each band of an RGBX buffer is the low byte of the little-endian uint32 starting at
        that band's byte: numpy casts those to uint8 planes ~3x faster than it copies every
        third byte of RGB (19 vs 50 µs per 240-px tile).
        """
        if not hasattr(self._buffers, "strict"):
            pixels = self.tile[0] * self.tile[1]
            if self.samples == 1:
                buffer = np.empty(pixels, np.uint8)
                bands = [buffer.reshape(self.tile)]
            else:
                buffer = np.empty(4 * pixels + 4, np.uint8)  # + 4: the last band's last uint32
                bands = [
                    buffer[c : c + 4 * pixels].view("<u4").reshape(self.tile) for c in range(3)
                ]
            self._buffers.strict = buffer, bands
        return self._buffers.strict

    def _decode_strict(self, data: bytes, header: bytes) -> list[np.ndarray] | None:
        """Decode an RGB (as RGBX) or grey JPEG tile; its bands, valid until the next decode.

        simplejpeg (libjpeg-turbo's TurboJPEG API) reports libjpeg's warnings: those that mean
        damaged entropy data raise (libjpeg would decode it to grey), the others are decoded
        leniently, as tifffile does. libjpeg-turbo also converts YCbCr to 4-byte RGBX pixels
        faster than to 3-byte RGB (122 vs 165 µs per 240-px 4:2:0 tile). ``None`` if the tile
        is not a full-size JPEG that this path can decode.
        """
        buffer, bands = self._strict_buffers()
        if not data.startswith(SOI) or (ADOBE_RGB in header and _has_colour_markers(data)):
            return None
        stream, colorspace = header + data[2:], "GRAY" if self.samples == 1 else "RGBX"
        try:
            decoded = simplejpeg.decode_jpeg(stream, colorspace=colorspace, buffer=buffer)
        except ValueError as exc:
            if any(warning in str(exc).lower() for warning in CORRUPTION_WARNINGS):
                raise
            decoded = simplejpeg.decode_jpeg(
                stream, colorspace=colorspace, buffer=buffer, strict=False
            )
        return bands if decoded.shape[:2] == self.tile else None

    def _decode_jpeg(self, data: bytes, plane: _Plane) -> np.ndarray:
        """Decode a JPEG tile into this thread's buffer (valid until its next decode)."""
        import imagecodecs

        buffer = getattr(self._buffers, "tile", None)
        if buffer is None:
            shape = self.tile if self.samples == 1 else (*self.tile, self.samples)
            buffer = self._buffers.tile = np.empty(shape, np.uint8)
        colorspace, outcolorspace = self._jpeg  # type: ignore[misc]
        return imagecodecs.jpeg_decode(
            data,
            tables=plane.jpegtables,
            header=self._keyframe.jpegheader,
            colorspace=colorspace,
            outcolorspace=outcolorspace,
            shape=self.tile,
            out=buffer,
        )

    def _decode(self, plane: _Plane, index: int, ty: int, tx: int) -> list[np.ndarray]:
        """The bands of one stored tile, each ``(tile height, tile width)``."""
        offset, count = int(plane.offsets[index]), int(plane.counts[index])
        bands = 1 if self.separate_samples else self.samples
        if not offset or not count:
            return [np.broadcast_to(np.array(self.fill, self.dtype), self.tile)] * bands
        try:
            data = self._tile_bytes(offset, count)
            decoded = self._decode_direct(data, plane)
            if decoded is None:
                decoded = self._keyframe.decode(
                    data,
                    index,
                    jpegtables=plane.jpegtables,
                    jpegheader=self._keyframe.jpegheader,
                    _fullsize=True,
                )[0]
        except Exception as exc:
            msg = (
                f"{self.path}: the tile at row {ty}, column {tx} of level {self.level} cannot be "
                f"decoded ({type(exc).__name__}: {exc}). The file is damaged or incomplete; copy "
                "it again from the scanner or archive."
            )
            raise CorruptTileError(msg) from exc
        if isinstance(decoded, list):
            return decoded
        tile = decoded.reshape(decoded.shape[-3:])
        return [tile[..., c] for c in range(tile.shape[-1])]

    def _decode_direct(self, data: bytes, plane: _Plane) -> list[np.ndarray] | np.ndarray | None:
        """Decode with our own decoder calls, or ``None`` to leave the tile to tifffile.

        An edge tile stored at its cropped size (some writers do) is left to tifffile, which
        pads it.
        """
        if self._jpeg is None:
            return None
        if plane.stream_header is not None:
            return self._decode_strict(data, plane.stream_header)
        try:
            return self._decode_jpeg(data, plane).reshape(*self.tile, self.samples)
        except ValueError:  # imagecodecs: the tile is not the size of the buffer
            return None

    def _tile_bytes(self, offset: int, count: int) -> bytes:
        data = os.pread(self._fd, count, offset)
        if len(data) < count:
            msg = f"the file ends {count - len(data)} bytes into the tile"
            raise ValueError(msg)
        if self._end_markers and not data.rstrip(b"\x00").endswith(self._end_markers):
            msg = "the JPEG data does not end with its end-of-image or restart marker"
            raise ValueError(msg)
        return data

    def close(self) -> None:
        """Close the file descriptor."""
        os.close(self._fd)


def _segments(jpeg: bytes) -> list[bytes]:
    """The marker segments of a JPEG stream between SOI and its first scan (or EOI)."""
    segments, position = [], 2  # after SOI
    while position + 4 <= len(jpeg) and jpeg[position] == 0xFF:
        marker = jpeg[position : position + 2]
        if marker in (SOS, EOI):
            break
        end = position + 2 + int.from_bytes(jpeg[position + 2 : position + 4], "big")
        segments.append(jpeg[position:end])
        position = end
    return segments


def _table_segments(jpegtables: bytes) -> list[bytes]:
    """The JPEGTables' segments without application data (APP0-APP15) and comments."""
    return [s for s in _segments(jpegtables) if not (0xE0 <= s[1] <= 0xEF or s[1] == 0xFE)]


def _has_colour_markers(jpeg: bytes) -> bool:
    """Whether a JPEG stream has a JFIF or Adobe segment before its first scan."""
    return any(segment[:2] in COLOUR_MARKERS for segment in _segments(jpeg))
