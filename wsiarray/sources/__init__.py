"""Slide readers, the registry that picks one for a file, and the cache of open slides.

Built-in readers: ``tifffile`` (TIFF family), ``openslide`` (anything OpenSlide opens),
``pil`` (plain images) and ``zarr`` (OME-Zarr store directories). Third parties add readers
through the ``wsiarray.readers`` entry point group: the entry point's name is the reader
name, its value a :class:`~wsiarray.sources.SlideSource` subclass.
"""

from wsiarray.sources._base import (
    AssociatedInfo,
    LevelInfo,
    PlaneAxis,
    SlideMetadata,
    SlideSource,
)
from wsiarray.sources._cache import CACHE_SIZE, SourceCache, source_cache
from wsiarray.sources._registry import BUILTIN_READERS, available_readers, open_source
from wsiarray.sources._spec import SourceSpec
from wsiarray.sources._store import StorageOptions, redact

__all__ = [
    "BUILTIN_READERS",
    "CACHE_SIZE",
    "AssociatedInfo",
    "LevelInfo",
    "PlaneAxis",
    "SlideMetadata",
    "SlideSource",
    "SourceCache",
    "SourceSpec",
    "StorageOptions",
    "available_readers",
    "open_source",
    "redact",
    "source_cache",
]
