"""wsiarray: whole-slide images as lazy, chunked dask arrays in an xarray DataTree.

>>> import wsiarray as wa
>>> slide = wa.open(wa.datasets.sample_slide())
>>> slide.level_count >= 1
True
"""

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
from wsiarray.export import write_ome_zarr
from wsiarray.slide import Slide
from wsiarray.tiling import Tile, TileGrid
from wsiarray.tissue import tissue_mask

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
    "open",
    "open_datatree",
    "tissue_mask",
    "write_ome_zarr",
]
