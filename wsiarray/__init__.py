"""wsiarray: whole-slide images as lazy, chunked dask arrays in an xarray DataTree.

>>> import wsiarray as wa
>>> slide = wa.open(wa.datasets.sample_slide())
>>> slide.level_count >= 1
True
"""

from importlib.metadata import version as _version

from wsiarray import datasets
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
    SlideNotFoundError,
    TruncatedFileError,
    UnitError,
    UnsupportedFormatError,
    WsiArrayError,
)
from wsiarray.slide import Slide
from wsiarray.tissue import tissue_mask

__version__ = _version("wsiarray")

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
    "SlideNotFoundError",
    "TruncatedFileError",
    "UnitError",
    "UnsupportedFormatError",
    "WsiArrayError",
    "__version__",
    "datasets",
    "open",
    "open_datatree",
    "tissue_mask",
]
