"""Decode TIFF JPEG tiles strictly and fast with simplejpeg (libjpeg-turbo's TurboJPEG API).

A TIFF JPEG tile is an abbreviated stream: its quantisation and Huffman tables are in the
page's JPEGTables tag. :class:`JpegTileDecoder` splices them in front of each tile and decodes
into one buffer per thread, with the colour spaces tifffile would use:

- RGB tiles are decoded as 4-byte RGBX pixels, which libjpeg-turbo converts from YCbCr faster
  than to 3-byte RGB (122 vs 165 µs per 240-px 4:2:0 tile), and each band is the low byte of
  the little-endian uint32 starting at that band's byte, which numpy casts into a band plane
  ~3x faster than it copies every third byte of RGB (19 vs 50 µs per tile);
- libjpeg's warnings raise (libjpeg itself would decode a damaged tile to grey or garbage),
  but for a short list known to leave the pixels right (:data:`HARMLESS_WARNINGS`), which
  decode leniently, as tifffile does.

NDPI's "tiles" are the restart intervals of one JPEG per level (tifffile lists them as tiles of
one MCU row): each is decoded as its own JPEG, the level's header (its frame resized to one
interval, as tifffile does) in front and its closing restart marker made an end-of-image
marker: the stream tifffile decodes. Reading the whole 3968 x 4864 level 0 of
test3-DAPI-2-(387).ndpi (608 intervals of 8 x 3968 px) took 178 ms of CPU this way against
199 ms through ``TiffPage.decode``, and 148 ms decoding 8 intervals at a time
(:meth:`JpegTileDecoder.decode_run`); medians of 9 interleaved reads, one thread, load ~12.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import simplejpeg
import tifffile
from tifffile import COMPRESSION, PLANARCONFIG

from wsiarray._jpeg_markers import EOI, SOI, segments
from wsiarray.sources._tifffile_internals import JCS_RGB, jpeg_colorspaces, ndpi_jpeg_header

__all__ = ["ADOBE_RGB", "JpegTileDecoder"]

#: APP14 "Adobe" segment, version 100, no flags, transform 0: the components are RGB
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
#: Markers that tell libjpeg the colour space: JFIF APP0, Adobe APP14
COLOUR_MARKERS = (b"\xff\xe0", b"\xff\xee")
#: libjpeg warnings known to leave the pixels right ("Invalid SOS parameters for sequential
#: JPEG": some encoders write progressive-style spectral bounds in a baseline scan), decoded
#: leniently as tifffile does. Every other warning raises: a strict failure retried leniently
#: returned garbage ("Unsupported marker type", "Corrupt JPEG data: N extraneous bytes" from
#: random bytes inside a tile: 10,432 of 57,600 pixels of a CMU-1 tile wrong, no error, where
#: OpenSlide says "premature end of data segment")
HARMLESS_WARNINGS = ("invalid sos parameters for sequential jpeg",)


#: RST0-RST7: the markers between restart intervals, numbered in turn
RESTART = tuple(bytes((0xFF, 0xD0 + n)) for n in range(8))
#: The second byte of the marker an NDPI restart interval ends with: RSTn, or EOI for the last
CLOSING_MARKERS = frozenset((*range(0xD0, 0xD8), 0xD9))


def _has_colour_markers(jpeg: bytes) -> bool:
    return any(segment[:2] in COLOUR_MARKERS for segment in segments(jpeg))


def _frame_offset(header: bytes) -> int | None:
    """Offset of the frame height in a baseline JPEG header whose components are all sampled
    1 x 1 (grey, or 4:4:4 colour), else ``None``.

    With chroma subsampling libjpeg's upsampling reads chroma across an interval's edge in a
    run of intervals but not in a single interval: the pixels there would differ.
    """
    position = 2  # after SOI: segments() returns the header's segments back to back
    for segment in segments(header):
        if segment[1] in (0xC0, 0xC1):  # SOF0 baseline, SOF1 extended sequential
            components = segment[9] if len(segment) > 9 else 0
            if not components or len(segment) < 10 + 3 * components:
                return None
            if any(segment[11 + 3 * i] != 0x11 for i in range(components)):
                return None
            return position + 5  # marker (2), length (2), precision (1)
        position += len(segment)
    return None


class JpegTileDecoder:
    """Decode the JPEG tiles of one TIFF page into per-thread buffers, as band planes.

    Use :meth:`for_page`, which returns ``None`` for tiles this decoder does not handle.

    Parameters
    ----------
    tile : tuple of int
        ``(height, width)`` of a stored tile.
    samples : int
        1 (grey) or 3 (RGB).
    rgb_components : bool
        The JPEG components are untransformed R, G, B (Aperio) rather than YCbCr or grey.
    jpegtables : bytes or None
        The page's JPEGTables.
    interval_header : bytes, optional
        For NDPI's restart intervals: the header tifffile puts in front of each (the level's
        JPEG header, its frame one interval in size), instead of ``jpegtables``.
    """

    def __init__(
        self,
        tile: tuple[int, int],
        samples: int,
        rgb_components: bool,
        jpegtables: bytes | None,
        interval_header: bytes | None = None,
    ) -> None:
        self.tile, self.samples, self.rgb_components = tile, samples, rgb_components
        self.intervals = interval_header is not None
        if interval_header is not None:
            # as tifffile: the header as the file has it, JFIF marker and restart interval
            self.header = interval_header
        else:
            # The tables without their APPn and COM segments: tifffile reads them as a stream
            # of their own, where a JFIF marker does not decide the image's colour space. For
            # RGB components, an Adobe marker with transform 0 tells libjpeg what tifffile
            # tells it.
            tables = [
                s for s in segments(jpegtables or b"") if not (0xE0 <= s[1] <= 0xEF or s[1] == 0xFE)
            ]
            self.header = SOI + (ADOBE_RGB if rgb_components else b"") + b"".join(tables)
        self._colorspace = "GRAY" if samples == 1 else "RGBX"
        self._buffers = threading.local()
        #: where the interval header's frame height is, if intervals may be decoded in runs
        self._frame = _frame_offset(interval_header) if interval_header is not None else None

    @classmethod
    def for_page(
        cls, keyframe: tifffile.TiffPage, tile: tuple[int, int], jpegtables: bytes | None
    ) -> JpegTileDecoder | None:
        """A decoder for the page's tiles, or ``None`` if tifffile should decode them.

        Handles tiled 8-bit JPEG and NDPI's restart intervals, interleaved grey or RGB (not
        other colour spaces).
        """
        ndpi = keyframe.parent.is_ndpi
        interval_header = ndpi_jpeg_header(keyframe) if ndpi else None
        if (
            keyframe.compression != COMPRESSION.JPEG
            or not keyframe.is_tiled  # a last strip may be stored shorter
            or (ndpi and interval_header is None)  # tifffile found no restart intervals
            or keyframe.planarconfig != PLANARCONFIG.CONTIG
            or keyframe.bitspersample != 8
        ):
            return None
        colorspace, outcolorspace = jpeg_colorspaces(keyframe)
        samples = keyframe.samplesperpixel
        grey = samples == 1 and (colorspace, outcolorspace) == (None, None)
        rgb = samples == 3 and outcolorspace == JCS_RGB and colorspace in (None, JCS_RGB)
        if not (grey or rgb) or (ndpi and colorspace is not None):
            return None  # (the interval header's markers cannot say RGB components)
        return cls(tile, samples, colorspace == JCS_RGB, jpegtables, interval_header)

    def _thread_buffers(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """This thread's decode buffer and its bands, each ``(tile height, tile width)``."""
        if not hasattr(self._buffers, "bands"):
            pixels = self.tile[0] * self.tile[1]
            if self.samples == 1:
                buffer = np.empty(pixels, np.uint8)
                bands = [buffer.reshape(self.tile)]
            else:
                buffer = np.empty(4 * pixels + 4, np.uint8)  # + 4: the last band's last uint32
                bands = [
                    buffer[c : c + 4 * pixels].view("<u4").reshape(self.tile) for c in range(3)
                ]
            self._buffers.buffer, self._buffers.bands = buffer, bands
        return self._buffers.buffer, self._buffers.bands

    @property
    def runs(self) -> bool:
        """Whether :meth:`decode_run` may decode consecutive restart intervals as one JPEG."""
        return self._frame is not None

    def decode_run(self, pieces: Sequence[bytes], rows: int, cols: int) -> list[np.ndarray] | None:
        """The bands of ``rows`` x ``cols`` consecutive restart intervals, decoded as one JPEG.

        The run's stream is the interval header with its frame resized to the run, and the
        intervals as stored with their restart markers renumbered from RST0 (the last made
        EOI): one decode call for many intervals, which saves libjpeg's set-up and the Python
        around each call (8 x 3968-px NDPI intervals, 8 at a time: 17 % less CPU per level,
        its band copies included). Only where the pixels cannot differ from the intervals'
        own decodes: every component sampled 1 x 1 (no chroma upsampling across an interval's
        edge; see :func:`_frame_offset`). The bands are valid until this thread's next run.

        Returns
        -------
        list of numpy.ndarray or None
            ``None`` where the run does not decode cleanly (an interval without its closing
            marker, any libjpeg warning): each interval is then decoded on its own, which
            decides whether it is damaged, as :meth:`decode` would.
        """
        if self._frame is None:
            return None
        height, width = rows * self.tile[0], cols * self.tile[1]
        parts: list[bytes | memoryview] = [
            self.header[: self._frame],
            height.to_bytes(2, "big") + width.to_bytes(2, "big"),
            self.header[self._frame + 4 :],
        ]
        last = len(pieces) - 1
        for k, piece in enumerate(pieces):
            if len(piece) < 2 or piece[-2] != 0xFF or piece[-1] not in CLOSING_MARKERS:
                return None
            parts += (memoryview(piece)[:-2], EOI if k == last else RESTART[k % 8])
        pixels = height * width
        samples = 1 if self.samples == 1 else 4
        buffer = getattr(self._buffers, "run", None)
        if buffer is None or buffer.size < samples * pixels + 4:
            buffer = self._buffers.run = np.empty(samples * pixels + 4, np.uint8)
        try:
            decoded = simplejpeg.decode_jpeg(
                b"".join(parts), colorspace=self._colorspace, buffer=buffer
            )
        except ValueError:
            return None
        if decoded.shape[:2] != (height, width):
            return None
        if samples == 1:
            return [buffer[:pixels].reshape(height, width)]
        return [buffer[c : c + 4 * pixels].view("<u4").reshape(height, width) for c in range(3)]

    def decode(self, data: bytes) -> list[np.ndarray] | None:
        """The bands of one tile, valid until this thread's next decode.

        ``None`` if the tile is not a full-size JPEG this decoder reads as tifffile would (an
        edge tile stored at its cropped size; a tile with its own colour-space marker where
        tifffile declares the components RGB).

        Raises
        ------
        ValueError
            The tile cannot be decoded, or its entropy data is damaged.
        """
        if self.intervals:
            # entropy-coded data closed by a restart marker (the last by EOI), perhaps padded
            # with zeros: that marker becomes EOI, as libjpeg would read the level's JPEG
            stream = self.header + data.rstrip(b"\x00")[:-2] + EOI
        elif not data.startswith(SOI) or (self.rgb_components and _has_colour_markers(data)):
            return None
        else:
            stream = self.header + data[2:]
        buffer, bands = self._thread_buffers()
        try:
            decoded = simplejpeg.decode_jpeg(stream, colorspace=self._colorspace, buffer=buffer)
        except ValueError as exc:
            if not any(warning in str(exc).lower() for warning in HARMLESS_WARNINGS):
                raise
            decoded = simplejpeg.decode_jpeg(
                stream, colorspace=self._colorspace, buffer=buffer, strict=False
            )
        return bands if decoded.shape[:2] == self.tile else None
