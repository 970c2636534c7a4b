"""TIFF/EXIF Orientation: a source whose pixels are stored rotated or mirrored, shown upright.

A reader reports the stored pixels and :attr:`SlideMetadata.orientation` (the TIFF tag 274 /
EXIF value, 1 = rows top to bottom, columns left to right); :func:`upright` wraps such a
source so that everything above the readers sees the slide the right way up: level shapes,
tiles and pixel sizes swapped where the orientation transposes, each window mapped to the
stored window it shows and flipped or transposed there. The flips and the transpose are
numpy views: the cost is the band-planar copy every block gets anyway
(:func:`wsiarray.arrays.band_planar`).

Associated images are left as stored: a file's orientation tag describes its own page, and
the label and macro pages of the files seen so far carry none.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from wsiarray.sources._base import LevelInfo, SlideSource, WrappedSource

__all__ = ["ORIENTATIONS", "UprightSource", "upright"]

#: TIFF/EXIF Orientation value -> (transpose, flip rows, flip columns), applied in that order
#: to the stored ``(y, x)`` pixels to show them upright (what Pillow's ``exif_transpose`` does).
ORIENTATIONS: dict[int, tuple[bool, bool, bool]] = {
    1: (False, False, False),
    2: (False, False, True),  # mirrored left-right
    3: (False, True, True),  # rotated 180°
    4: (False, True, False),  # mirrored top-bottom
    5: (True, False, False),  # transposed
    6: (True, False, True),  # stored rotated 90° anticlockwise: shown turned 90° clockwise
    7: (True, True, True),  # transverse
    8: (True, True, False),  # stored rotated 90° clockwise: shown turned 90° anticlockwise
}


def upright(source: SlideSource) -> SlideSource:
    """``source`` itself when its pixels are stored upright, else an :class:`UprightSource`."""
    if source.metadata.orientation == 1:
        return source
    return UprightSource(source)


class UprightSource(WrappedSource):
    """A source seen upright: windows of the shown image mapped onto the stored pixels.

    Parameters
    ----------
    stored : SlideSource
        The reader's source, with ``metadata.orientation`` one of :data:`ORIENTATIONS`.
    """

    def __init__(self, stored: SlideSource) -> None:
        super().__init__(stored)
        meta = stored.metadata
        self.transpose, self.flip_y, self.flip_x = ORIENTATIONS[meta.orientation]
        if self.transpose:
            meta = dataclasses.replace(meta, mm_x=meta.mm_y, mm_y=meta.mm_x)
        levels = tuple(self._shown(info) for info in meta.levels)
        self.metadata = dataclasses.replace(meta, levels=levels, orientation=1)

    def _shown(self, info: LevelInfo) -> LevelInfo:
        """A level's geometry as shown: sides swapped by a transpose, and the tile grid of a
        flipped axis starting at its stored last (partial) tile, so that dask chunks stay
        whole stored tiles."""
        shape, tile = (
            (info.shape[::-1], info.tile[::-1]) if self.transpose else (info.shape, info.tile)
        )
        offset = tuple(
            size % side if flipped else 0
            for size, side, flipped in zip(shape, tile, (self.flip_y, self.flip_x), strict=True)
        )
        return LevelInfo(shape, tile, offset)  # type: ignore[arg-type]

    def read_block(
        self, level: int, y0: int, y1: int, x0: int, x1: int, /, plane: tuple[int, ...] = ()
    ) -> np.ndarray:
        # docstring inherited
        height, width = self.metadata.levels[level].shape
        if self.flip_y:
            y0, y1 = height - y1, height - y0
        if self.flip_x:
            x0, x1 = width - x1, width - x0
        if self.transpose:
            block = self.stored.read(level, slice(x0, x1), slice(y0, y1), plane).swapaxes(0, 1)
        else:
            block = self.stored.read(level, slice(y0, y1), slice(x0, x1), plane)
        return block[:: -1 if self.flip_y else 1, :: -1 if self.flip_x else 1]
