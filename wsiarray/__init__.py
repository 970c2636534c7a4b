"""wsiarray: whole-slide images as lazy, chunked dask arrays in an xarray DataTree.

>>> import wsiarray as wa
>>> slide = wa.open(wa.datasets.sample_slide())
>>> slide.level_count >= 1
True
"""

from typing import TYPE_CHECKING, Any

from wsiarray import datasets
from wsiarray._version import __version__
from wsiarray.errors import (
    CorruptTileError,
    DamagedFileError,
    DamagedFileWarning,
    DestinationExistsError,
    LevelError,
    MissingResolutionError,
    OptionError,
    PixelBudgetError,
    ReaderUnavailableError,
    RegionError,
    ScaleError,
    SlideChangedError,
    SlideNotFoundError,
    TruncatedFileError,
    UnitError,
    UnsupportedFormatError,
    WsiArrayError,
)

if TYPE_CHECKING:
    from wsiarray.api import open, open_datatree
    from wsiarray.cohort import map_tiles, open_cohort
    from wsiarray.export import write_ome_zarr
    from wsiarray.slide import Slide
    from wsiarray.tiling import Tile, TileGrid
    from wsiarray.tissue import tissue_mask

#: Public names whose modules load on first use (PEP 562), so that ``import wsiarray`` costs
#: only the errors (~5 ms) and a command that needs none of them (``wsiarray --help``) does
#: not import numpy (~0.2 s on a 2-core machine); tiling and export took ~25 of ~180 ms of a
#: first patch read's imports.
_LAZY = {
    "Slide": "wsiarray.slide",
    "open": "wsiarray.api",
    "open_datatree": "wsiarray.api",
    "Tile": "wsiarray.tiling",
    "TileGrid": "wsiarray.tiling",
    "map_tiles": "wsiarray.cohort",
    "open_cohort": "wsiarray.cohort",
    "tissue_mask": "wsiarray.tissue",
    "write_ome_zarr": "wsiarray.export",
}
#: Submodules an eager ``import wsiarray`` used to load, and so bind as attributes: they still
#: answer ``wsiarray.geometry`` (and ``dir``) without an import of their own.
_SUBMODULES = ("api", "chunks", "geometry", "slide", "sources", "units")

__all__ = [
    "CorruptTileError",
    "DamagedFileError",
    "DamagedFileWarning",
    "DestinationExistsError",
    "LevelError",
    "MissingResolutionError",
    "OptionError",
    "PixelBudgetError",
    "ReaderUnavailableError",
    "RegionError",
    "ScaleError",
    "Slide",
    "SlideChangedError",
    "SlideNotFoundError",
    "Tile",
    "TileGrid",
    "TruncatedFileError",
    "UnitError",
    "UnsupportedFormatError",
    "WsiArrayError",
    "__version__",
    "datasets",
    "map_tiles",
    "open",
    "open_cohort",
    "open_datatree",
    "tissue_mask",
    "write_ome_zarr",
]


def __getattr__(name: str) -> Any:
    from importlib import import_module

    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = import_module(f"wsiarray.{name}")
    else:
        msg = f"module 'wsiarray' has no attribute {name!r}"
        raise AttributeError(msg)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
