"""The exceptions wsiarray raises.

Every error is a :class:`WsiArrayError` and also the builtin exception a caller would
expect (``FileNotFoundError``, ``ValueError``, ...), so ``except FileNotFoundError`` keeps
working. Messages name the file and say what to do about it.
"""

from __future__ import annotations

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
    "SlideChangedError",
    "SlideNotFoundError",
    "TruncatedFileError",
    "UnitError",
    "UnsupportedFormatError",
    "WsiArrayError",
]


class WsiArrayError(Exception):
    """Base class of every error raised by wsiarray."""


class SlideNotFoundError(WsiArrayError, FileNotFoundError):
    """The path does not exist."""


class SlideChangedError(WsiArrayError, OSError):
    """The slide's file was modified or replaced after it was opened; open it again."""


class UnsupportedFormatError(WsiArrayError, ValueError):
    """No reader can open the file; the message lists each reader tried and why it refused."""


class DamagedFileError(UnsupportedFormatError):
    """A reader recognised the file, but its structure is damaged (its directories, tile
    tables or sizes contradict each other or the file): no other reader is offered it, as
    another could only read it wrong (or, as OpenSlide did on a declared height of 2³¹ - 1,
    abort the process)."""


class TruncatedFileError(WsiArrayError, OSError):
    """The file ends before the image data its header points to."""


class CorruptTileError(WsiArrayError, OSError):
    """A tile could not be read or decoded; the message names the file, level and tile."""


class LevelError(WsiArrayError, IndexError):
    """A pyramid level that the slide does not have was asked for."""


class MissingResolutionError(WsiArrayError, ValueError):
    """A physical unit (mm, µm, magnification) was asked for but the slide has no pixel size."""


class RegionError(WsiArrayError, ValueError):
    """A region lies outside the slide or is empty."""


class ScaleError(WsiArrayError, ValueError):
    """A scale that is not a finite positive number, or one finer than the slide's full
    resolution asked for without ``upsample=True``."""


class UnitError(WsiArrayError, ValueError):
    """An unknown unit name was given."""


class PixelBudgetError(WsiArrayError, MemoryError):
    """A request would allocate more pixels than the configured budget allows."""


class ReaderUnavailableError(WsiArrayError, ImportError):
    """The reader asked for is not installed or not registered."""


class OptionError(WsiArrayError, ValueError):
    """An option has a value wsiarray does not accept; the message lists the accepted values."""


class DestinationExistsError(WsiArrayError, FileExistsError):
    """An output path already holds data that wsiarray will not replace (without ``overwrite``)."""


class DamagedFileWarning(UserWarning):
    """A file that opened, but whose structure suggests part of it is lost: images in the file
    that nothing reaches. Not an error, because good files look the same (a de-identified
    slide whose label and macro were unlinked); the slide's ``metadata.warnings`` (the tree's
    root attribute ``warnings``) keeps the message."""
