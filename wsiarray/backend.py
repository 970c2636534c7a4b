"""xarray backend: ``xr.open_datatree(path, engine="wsiarray")`` and friends.

It adds only xarray plumbing; the work is :func:`wsiarray.open`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import xarray as xr
from xarray.backends import BackendEntrypoint

from wsiarray.errors import LevelError

__all__ = ["WsiArrayBackendEntrypoint"]

#: Suffixes only slide files use. Plain ``.tif`` belongs to rioxarray's rasterio engine;
#: such files are recognised by their content instead (see ``guess_can_open``).
SLIDE_SUFFIXES = (
    ".svs",
    ".ndpi",
    ".scn",
    ".bif",
    ".mrxs",
    ".vms",
    ".vmu",
    ".qptiff",
    ".ome.tif",
    ".ome.tiff",
)


def _is_slide_tiff(path: Path) -> bool:
    """Whether a TIFF file's headers are a whole-slide scanner's (read headers only)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            flags = ("is_svs", "is_ndpi", "is_scn", "is_bif", "is_philips", "is_qpi")
            pyramid = tif.is_ome and len(tif.series[0].levels) > 1
            return pyramid or any(getattr(tif, flag) for flag in flags)
    except (OSError, tifffile.TiffFileError):
        return False


class WsiArrayBackendEntrypoint(BackendEntrypoint):
    """Open whole-slide images with xarray: one group per pyramid level.

    ``open_dataset(path, engine="wsiarray", group="level1")`` opens one level (``level0`` by
    default); ``open_datatree`` and ``open_groups`` open them all, with the associated images.
    Levels are dask arrays already; xarray's ``chunks={}`` keeps wsiarray's chunking (whole
    tiles, at most 3072 px a side) and other ``chunks=`` values rechunk it.
    """

    description = "Whole-slide images (SVS, NDPI, MRXS, OME-TIFF, ...) as lazy dask levels"
    url = "https://github.com/wsiarray/wsiarray"
    supports_groups = True
    open_dataset_parameters: ClassVar[tuple[str, ...]] = (
        "filename_or_obj",
        "drop_variables",
        "group",
        "reader",
        "to_srgb",
    )

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """True for slide suffixes, and for ``.tif``/``.tiff`` files whose headers say a slide
        scanner wrote them (Aperio, Hamamatsu, Leica, Ventana, Philips, QPTIFF, OME pyramids).
        Other TIFFs are left to rioxarray's ``rasterio`` engine."""
        if not isinstance(filename_or_obj, str | os.PathLike):
            return False
        name = str(filename_or_obj).lower()
        if name.endswith(SLIDE_SUFFIXES):
            return True
        return name.endswith((".tif", ".tiff")) and _is_slide_tiff(Path(filename_or_obj))

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: str | os.PathLike[str],
        *,
        drop_variables: str | Iterable[str] | None = None,
        group: str | None = None,
        reader: str = "auto",
        to_srgb: bool = False,
    ) -> xr.Dataset:
        """Open one level (``group="level0"`` by default) or associated image as a Dataset."""
        tree = self.open_datatree(filename_or_obj, reader=reader, to_srgb=to_srgb)
        path = (group or "level0").strip("/")
        try:
            dataset = tree[path].to_dataset()
        except KeyError as exc:
            groups = ", ".join(node.path for node in tree.subtree if node.has_data)
            msg = f"{Path(filename_or_obj).name} has no group {path!r}; it has {groups}"
            raise LevelError(msg) from exc
        return dataset.drop_vars(drop_variables or [], errors="ignore")

    def open_groups_as_dict(  # type: ignore[override]
        self,
        filename_or_obj: str | os.PathLike[str],
        *,
        drop_variables: str | Iterable[str] | None = None,
        reader: str = "auto",
        to_srgb: bool = False,
    ) -> dict[str, xr.Dataset]:
        """Every group of the slide's tree as ``{path: Dataset}``."""
        tree = self.open_datatree(filename_or_obj, reader=reader, to_srgb=to_srgb)
        return {
            node.path: node.to_dataset().drop_vars(drop_variables or [], errors="ignore")
            for node in tree.subtree
        }

    def open_datatree(  # type: ignore[override]
        self,
        filename_or_obj: str | os.PathLike[str],
        *,
        drop_variables: str | Iterable[str] | None = None,
        reader: str = "auto",
        to_srgb: bool = False,
    ) -> xr.DataTree:
        """The slide's whole tree; see :func:`wsiarray.open_datatree`."""
        from wsiarray.api import open_datatree

        tree = open_datatree(filename_or_obj, reader=reader, to_srgb=to_srgb)
        if drop_variables:
            tree = tree.map_over_datasets(lambda ds: ds.drop_vars(drop_variables, errors="ignore"))
        return tree
