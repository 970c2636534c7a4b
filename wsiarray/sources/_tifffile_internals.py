"""The tifffile internals wsiarray relies on, behind one adapter.

tifffile's public API reads whole pages or zarr chunks; wsiarray decodes single tiles into
its own blocks, which needs things tifffile does not promise:

- ``TiffPage.decode(..., _fullsize=True)``: an edge tile stored at its cropped size (some
  writers do) comes back padded to the full tile, as in a page read;
- ``tifffile.tifffile.jpeg_decode_colorspace``: the JPEG colour spaces tifffile decodes a
  page's tiles with, which the fast JPEG path must match pixel for pixel;
- ``TIFF.DECOMPRESSORS``: which compressions an installed codec decodes, checked at open;
- ``TiffPage.jpegheader``: the header tifffile decodes each NDPI restart interval with.

``tests/sources/test_tifffile_internals.py`` calls them on real files: a tifffile release
that renames or changes them fails there, loudly, not in a user's read.
"""

from __future__ import annotations

import numpy as np
import tifffile

from wsiarray.errors import ReaderUnavailableError

__all__ = ["JCS_RGB", "can_decode", "decode_tile", "jpeg_colorspaces", "ndpi_jpeg_header"]

#: libjpeg's J_COLOR_SPACE value for RGB, as ``jpeg_decode_colorspace`` returns it.
JCS_RGB = 2


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
