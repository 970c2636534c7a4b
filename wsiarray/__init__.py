"""wsiarray: whole-slide images as lazy, chunked dask arrays in an xarray DataTree.

>>> import wsiarray as wa
>>> slide = wa.open(wa.datasets.sample_slide())
>>> slide.level_count >= 1
True
"""

from typing import TYPE_CHECKING, Any

from wsiarray import datasets
from wsiarray._version import __version__
from wsiarray.api import open, open_datatree
from wsiarray.errors import (
    CorruptTileError,
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
from wsiarray.slide import Slide

if TYPE_CHECKING:
    from wsiarray.cohort import map_tiles, open_cohort
    from wsiarray.export import write_ome_zarr
    from wsiarray.tiling import Tile, TileGrid
    from wsiarray.tissue import tissue_mask

#: Public names whose modules load on first use, so that ``import wsiarray`` and a first
#: patch read do not pay for them (tiling and export took ~25 of ~180 ms of imports).
_LAZY = {
    "Tile": "wsiarray.tiling",
    "TileGrid": "wsiarray.tiling",
    "map_tiles": "wsiarray.cohort",
    "open_cohort": "wsiarray.cohort",
    "tissue_mask": "wsiarray.tissue",
    "write_ome_zarr": "wsiarray.export",
}

__all__ = [
    "CorruptTileError",
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
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    msg = f"module 'wsiarray' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
