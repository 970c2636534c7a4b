"""OME-Zarr: where a zarr store keeps its metadata, and the OME-NGFF schema wsiarray writes and reads.

The exporter (:mod:`wsiarray.export`) and the reader (:mod:`wsiarray.sources.zarr_`) share
this module, so a store wsiarray writes is read back by the same rules.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ZARR_METADATA", "root_metadata"]

#: A directory holding one of these (zarr v3, then v2) is a zarr store.
ZARR_METADATA = ("zarr.json", ".zattrs", ".zgroup")


def root_metadata(path: Path) -> Path | None:
    """The root metadata file of a zarr store directory, or ``None`` for anything else."""
    if not path.is_dir():
        return None
    return next((path / name for name in ZARR_METADATA if (path / name).is_file()), None)
