"""The structure of a JPEG stream: its markers and the segments before the first scan.

Shared by the fast tile decoder (:mod:`wsiarray.sources._jpeg`), which splices a TIFF's
JPEGTables in front of each tile, and the synthetic slide writer (:mod:`wsiarray.synthetic`),
which splits encoded tiles into shared tables and abbreviated streams.
"""

from __future__ import annotations

__all__ = ["EOI", "SOI", "SOS", "segments"]

SOI = b"\xff\xd8"
SOS = b"\xff\xda"
EOI = b"\xff\xd9"


def segments(jpeg: bytes) -> list[bytes]:
    """The marker segments of a JPEG stream between SOI and its first scan (or EOI).

    Examples
    --------
    >>> segments(SOI + b"\\xff\\xdb\\x00\\x03Q" + SOS + b"\\x00\\x02")
    [b'\\xff\\xdb\\x00\\x03Q']
    """
    found, position = [], 2  # after SOI
    while position + 4 <= len(jpeg) and jpeg[position] == 0xFF:
        marker = jpeg[position : position + 2]
        if marker in (SOS, EOI):
            break
        end = position + 2 + int.from_bytes(jpeg[position + 2 : position + 4], "big")
        found.append(jpeg[position:end])
        position = end
    return found
