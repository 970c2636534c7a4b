"""large_image's ``TileSource`` API over wsiarray's arrays.

Code written against large_image switches by changing one import::

    from wsiarray.compat import large_image
    ts = large_image.open("slide.svs")
    ts.getMetadata(); ts.getRegion(region=dict(left=0, top=0, width=500, height=500), format=...)

The semantics are large_image's (1.35; specified in ``shared/large_image_semantics.md``):
virtual power-of-two levels numbered from the coarsest (0) to full resolution
(``levels - 1``), regions in base/mag pixels, physical units or fractions with negative
edges counted from the right/bottom, bounds rounded and clipped, output sizes truncated,
the read level chosen as large_image's OpenSlide source chooses it and PIL resampling
(LANCZOS down, BICUBIC up). Pixels come from wsiarray's readers.

Band count: like large_image's default source for the file. It reads files OpenSlide
recognises through OpenSlide, which returns RGBA, so such slides give 4 bands (alpha 255
inside the slide); other files give their own bands. Pass ``bands=3`` for plain RGB.

Layout: pure planners mirror large_image's rules (``_levels``: the virtual pyramid and
scales; ``_regions``: units and region bounds; ``_plans``: region and tile-grid plans;
``_tiles``: tile dicts), ``_source`` reads pixels through :class:`wsiarray.Slide`, and
``_encode`` and ``_histogram`` shape the results as large_image returns them.
"""

from __future__ import annotations

from wsiarray.compat.large_image._encode import (
    TILE_FORMAT_IMAGE,
    TILE_FORMAT_NUMPY,
    TILE_FORMAT_PIL,
)
from wsiarray.compat.large_image._source import TileSource, getTileSource
from wsiarray.compat.large_image._tiles import LazyTileDict

__all__ = [
    "TILE_FORMAT_IMAGE",
    "TILE_FORMAT_NUMPY",
    "TILE_FORMAT_PIL",
    "LazyTileDict",
    "TileSource",
    "getTileSource",
    "open",
]

open = getTileSource
