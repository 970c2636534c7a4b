"""The native entry points: :func:`open` and :func:`open_datatree`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wsiarray.chunks import ChunksLike
from wsiarray.slide import Slide
from wsiarray.sources import source_cache

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["open", "open_datatree"]


def open(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    /,
    *,
    reader: str = "auto",
    chunks: ChunksLike = None,
    reader_options: Mapping[str, Any] | None = None,
    to_srgb: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> Slide:
    """Open a whole-slide image as a :class:`Slide` of lazy dask levels.

    Only headers are read; pixels are decoded when a computation asks for them.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        The slide file (for MIRAX the ``.mrxs`` file), a DICOM WSI series' folder or one of
        its instances, or a DICOMweb series URL (``http(s)://…/studies/<uid>/series/<uid>``).
        A ``bytes`` path is decoded as :func:`os.fsdecode` does.
    reader : {"auto", "tifffile", "dicom", "openslide", "pil", "zarr"} or str, optional
        Which reader to use. ``"auto"`` (default) picks by the file's content: tifffile for
        TIFF-family files, dicom for DICOM WSI, OpenSlide for what it recognises, Pillow for
        plain images, zarr for OME-Zarr stores.
    chunks : int or (int, int), optional
        Largest dask chunk side in pixels, rounded down to whole native tiles: by default 3072
        (:func:`wsiarray.chunks.dask_chunks`; 2880 for 240-px tiles), or 6144 when a
        ``dask.distributed`` client is dask's scheduler as the image is built (fewer, larger
        tasks: :func:`wsiarray.chunks.default_chunk`).
    reader_options : mapping, optional
        Passed to the reader, e.g. ``{"series": 1}`` for tifffile or ``{"max_pixels": N}``
        for Pillow.
    storage_options : mapping, optional
        For a URL (``s3://``, ``gs://``, ``az://``, ``https://``, any fsspec protocol): the
        filesystem's options, e.g. credentials or ``{"client_kwargs": {"endpoint_url": ...}}``.
        They travel with dask graphs (workers read the object themselves) and are never
        shown in reprs or errors.
    to_srgb : bool, optional
        Convert the pixels from the file's embedded ICC profile to sRGB (littleCMS,
        perceptual intent, as large_image does by default). A file without a profile is
        served unchanged. Default False: the stored values. See :attr:`Slide.icc_profile`.

    Returns
    -------
    Slide

    Raises
    ------
    SlideNotFoundError
        ``path`` does not exist.
    UnsupportedFormatError
        No reader can open the file (the message says what each reader answered), or the
        path is a directory that is not a zarr store or DICOM folder, or is not a regular
        file (a FIFO, a device).
    TruncatedFileError
        The file is cut short.

    Examples
    --------
    >>> import wsiarray as wa
    >>> slide = wa.open(wa.datasets.sample_slide())
    >>> slide.tree["level0"].image.dims
    ('y', 'x', 'c')
    """
    options = dict(reader_options or {})
    if to_srgb:
        options["to_srgb"] = True
    if storage_options is not None:
        options["storage_options"] = storage_options
    spec, metadata = source_cache.open(path, reader=reader, options=options)
    return Slide(spec, metadata, chunks=chunks)


def open_datatree(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    /,
    *,
    reader: str = "auto",
    chunks: ChunksLike = None,
    reader_options: Mapping[str, Any] | None = None,
    to_srgb: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    """Open a whole-slide image as an :class:`xarray.DataTree`; see :func:`open` for parameters.

    Returns
    -------
    xarray.DataTree
        ``/level0`` ... ``/levelN`` (``image`` variable, dims ``(y, x, c)``, mm coordinates)
        and ``/associated/<name>``.
    """
    return open(
        path,
        reader=reader,
        chunks=chunks,
        reader_options=reader_options,
        to_srgb=to_srgb,
        storage_options=storage_options,
    ).tree
