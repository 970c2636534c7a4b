"""Write a slide as an OME-Zarr image: OME-NGFF 0.5 on zarr v3, streamed with dask.

::

    out.zarr/
      zarr.json                   group; attributes {"ome": {version, multiscales, omero},
                                  "wsiarray": {format, source, mm_x, mm_y, magnification, ...}}
      level0/image                (c, y, x) array, chunks (C, chunks, chunks); full resolution
      level1/image ...            coarser levels, largest first
      associated/<name>/          a single-level OME-NGFF image (label, macro, thumbnail ...)
        zarr.json, image

Each level is an array in a group of its own (dataset paths ``level<k>/image``) rather than
the usual ``0``, ``1`` ...: levels share the dimension names ``c, y, x`` with different
sizes, which one xarray Dataset cannot hold, so this way ``xr.open_datatree(path,
engine="zarr")`` opens the store as a tree shaped like wsiarray's own (``/level0/image``).
OME-NGFF allows any dataset path relative to the image group; OME-Zarr readers follow it.

Coordinates follow the NGFF convention that array indices are pixel centres (the metadata
is built by :mod:`wsiarray.ngff`, which the zarr reader shares). wsiarray's own coordinates
measure from the image's corner: they are the OME ones plus half a level-0 pixel. Without a
pixel size, the axes carry no unit and the scale is in level-0 pixels.
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from wsiarray import ngff
from wsiarray._version import __version__
from wsiarray.chunks import DEFAULT_CHUNK
from wsiarray.errors import DestinationExistsError, OptionError

if TYPE_CHECKING:
    import dask.array as da
    import xarray as xr
    import zarr

    from wsiarray.slide import Slide

__all__ = [
    "COMPRESSORS",
    "JPEG_QUALITY",
    "JPEG_SUBSAMPLING",
    "NGFF_VERSION",
    "PYRAMIDS",
    "write_ome_zarr",
]

NGFF_VERSION = ngff.NGFF_VERSION
PYRAMIDS = ("levels", "power_of_two")
COMPRESSORS = ("zstd", "jpeg", "none")
#: JPEG quality (libjpeg scale). With :data:`JPEG_SUBSAMPLING` it measured 43.4 dB PSNR on
#: CMU-1-Small-Region (H&E), in 9 % of the raw size (zstd: 39 %).
JPEG_QUALITY = 90
#: No chroma subsampling: stain colour is the signal in pathology. 4:2:0 saved a third of
#: the size but kept the PSNR below 35 dB on CMU-1 (already 4:2:0 JPEG) at qualities 80-95.
JPEG_SUBSAMPLING = "444"
#: Zstandard level 3 (zstd's default): on CMU-1's level 0, 1 % larger than level 9 at a
#: quarter of its time (level 19: 4 % smaller, 50 times slower).
ZSTD_LEVEL = 3
#: Smallest accepted chunk side: smaller chunks mean millions of files for a slide.
MIN_CHUNK = 16
#: Largest side of a JPEG image (libjpeg's JPEG_MAX_DIMENSION).
JPEG_MAX_SIDE = 65500


def write_ome_zarr(
    slide: Slide,
    path: str | os.PathLike[str],
    /,
    *,
    pyramid: Literal["levels", "power_of_two"] = "levels",
    chunks: int = 1024,
    compressor: Literal["zstd", "jpeg", "none"] = "zstd",
    associated: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``slide`` as an OME-Zarr multiscale image (OME-NGFF 0.5, zarr v3) at ``path``.

    Every level is streamed through dask in chunks of ``chunks`` x ``chunks`` pixels, in
    parallel with dask's default (threaded) scheduler, so memory stays bounded and a
    :class:`dask.diagnostics.ProgressBar` around the call shows progress. The store is
    written beside ``path`` (a hidden ``.NAME.partial-*`` folder) and moved into place when
    complete: a failed or interrupted export leaves nothing behind, and with
    ``overwrite=True`` the old store is removed only once the new one is written.

    Parameters
    ----------
    slide : Slide
        The slide to write. A slide with focal planes or time points writes the plane it
        reads (:attr:`Slide.plane`, chosen with :meth:`Slide.at_plane`), recorded in the
        properties as ``wsiarray.plane``.
    path : str or os.PathLike
        The store directory to create (conventionally ending in ``.zarr``).
    pyramid : {"levels", "power_of_two"}
        ``"levels"`` writes the file's own levels, pixel for pixel. ``"power_of_two"``
        writes downsamples 1, 2, 4, ... (``floor(size / 2**k)`` pixels, area-averaged as
        :meth:`Slide.image`) down to the first level that fits in one chunk.
    chunks : int
        Chunk side in pixels (at least 16); a chunk holds all channels. Capped at each
        level's size.
    compressor : {"zstd", "jpeg", "none"}
        ``"zstd"``: lossless, the default. ``"none"``: raw (edge chunks are stored
        whole, padded, as zarr's regular chunk grid does). ``"jpeg"``: lossy (quality
        :data:`JPEG_QUALITY`, no chroma subsampling), for ``uint8`` slides with 1 or 3
        channels. JPEG is not a standard zarr v3 codec: readers need imagecodecs' zarr
        codec ``imagecodecs_jpeg`` registered (``imagecodecs.zarr.register_codecs()``, or
        install ``imagecodecs-zarr``); wsiarray registers it itself. Associated images
        are always stored losslessly.
    associated : bool
        Also write the associated images (label, macro, thumbnail ...) under
        ``associated/<name>``, each a single-level OME-NGFF image without physical scale.
    overwrite : bool
        Replace an existing zarr store (or empty directory) at ``path``. Anything else
        there is never deleted.

    Returns
    -------
    pathlib.Path
        The absolute path of the store; :func:`wsiarray.open` reopens it.

    Raises
    ------
    OptionError
        Unknown ``pyramid`` or ``compressor``, bad ``chunks``, or ``"jpeg"`` for data JPEG
        cannot hold.
    DestinationExistsError
        ``path`` exists and is not empty (without ``overwrite=True``), or with
        ``overwrite=True`` it is something other than a zarr store, or it holds the slide.
    """
    dtype = np.dtype(slide.metadata.dtype)
    _check_options(pyramid, chunks, compressor, dtype, slide.metadata.channels)
    chunks = int(chunks)
    target = Path(path).expanduser().absolute()
    replace = _check_destination(target, Path(slide.path), overwrite=overwrite)
    images = _pyramid(slide, pyramid, chunks)
    # written beside the target and moved into place only when complete: a failed export
    # leaves no half store behind and never costs the store it was to replace
    staging = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _write(staging, slide, images, pyramid, chunks, compressor, associated=associated)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if replace:
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def _write(
    target: Path,
    slide: Slide,
    images: list[tuple[xr.DataArray, float, float]],
    pyramid: str,
    chunks: int,
    compressor: str,
    *,
    associated: bool,
) -> None:
    """Write the store at ``target``: level arrays, associated images, then the root metadata."""
    import dask.array as da
    import zarr

    dtype = np.dtype(slide.metadata.dtype)
    root = zarr.create_group(zarr.storage.LocalStore(target), zarr_format=3)
    sources: list[da.Array] = []
    targets: list[zarr.Array] = []
    datasets = []
    for k, (image, ds_y, ds_x) in enumerate(images):
        array_path = f"level{k}/image"
        data, array = _planned(root, array_path, image, chunks, compressor)
        sources.append(data)
        targets.append(array)
        datasets.append((array_path, ds_y, ds_x))
    da.store(sources, targets, lock=False)
    written = _write_associated(root, slide, chunks, compressor) if associated else []
    meta = slide.metadata
    known = meta.mm_x is not None and meta.mm_y is not None
    multiscale = ngff.multiscale_metadata(
        Path(slide.path).name,
        datasets,
        meta.mm_y if known else None,
        meta.mm_x if known else None,
    )
    if pyramid == "power_of_two":
        multiscale["type"] = "area"
        multiscale["metadata"] = {
            "description": "area averaging of the finest level at least as fine, as "
            "wsiarray's Slide.image(downsample=2**k)",
            "method": "wsiarray.resample.area_resample",
        }
    root.update_attributes(
        {
            "ome": {
                "version": NGFF_VERSION,
                "multiscales": [multiscale],
                "omero": ngff.omero_metadata(list(meta.channels), dtype),
            },
            ngff.WSIARRAY_KEY: _slide_attrs(slide, pyramid, datasets, written).to_json(),
        }
    )


def _check_options(
    pyramid: str, chunks: int, compressor: str, dtype: np.dtype, channels: tuple[str, ...]
) -> None:
    n_channels = len(channels)
    if pyramid not in PYRAMIDS:
        msg = f"unknown pyramid={pyramid!r}; choose one of {', '.join(map(repr, PYRAMIDS))}"
        raise OptionError(msg)
    if compressor not in COMPRESSORS:
        msg = (
            f"unknown compressor={compressor!r}; choose one of {', '.join(map(repr, COMPRESSORS))}"
        )
        raise OptionError(msg)
    if isinstance(chunks, bool) or not isinstance(chunks, int | np.integer) or chunks < MIN_CHUNK:
        msg = f"chunks={chunks!r} must be an integer of at least {MIN_CHUNK} (pixels a side)"
        raise OptionError(msg)
    if compressor == "jpeg":
        if dtype != np.uint8 or n_channels not in (1, 3):
            msg = (
                f"compressor='jpeg' stores 8-bit images of 1 or 3 channels; this slide is "
                f"{dtype} with {n_channels} channel(s). Use compressor='zstd' (lossless)."
            )
            raise OptionError(msg)
        if n_channels == 3 and tuple(channels) != ("R", "G", "B"):
            msg = (
                f"compressor='jpeg' stores 3 channels as colour (YCbCr), which would mix the "
                f"channels {', '.join(channels)}; use compressor='zstd' (lossless)"
            )
            raise OptionError(msg)
        if chunks > JPEG_MAX_SIDE:
            msg = f"chunks={chunks} is too large for JPEG, whose images are at most {JPEG_MAX_SIDE} pixels a side"
            raise OptionError(msg)


def _check_destination(target: Path, slide_path: Path, *, overwrite: bool) -> bool:
    """Check that ``target`` may be written; return whether an old zarr store is replaced."""
    slide_path = slide_path.resolve()
    resolved = target.resolve()
    if slide_path == resolved or resolved in slide_path.parents or slide_path in resolved.parents:
        msg = f"{target} holds or is inside the slide being exported ({slide_path}); write somewhere else"
        raise DestinationExistsError(msg)
    if not (target.exists() or target.is_symlink()):
        return False
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        return False  # an empty folder: the export is moved onto it
    if not overwrite:
        msg = f"{target} already exists and is not empty; pass overwrite=True (or --overwrite) to replace it"
        raise DestinationExistsError(msg)
    is_store = target.is_dir() and ngff.root_metadata(target) is not None
    if not is_store or target.is_symlink():
        kind = "a file" if not target.is_dir() else "a directory that is not a zarr store"
        msg = (
            f"{target} is {kind}; wsiarray replaces only zarr stores and will not delete it. "
            "Choose another path or remove it yourself."
        )
        raise DestinationExistsError(msg)
    return True


def _pyramid(slide: Slide, pyramid: str, chunks: int) -> list[tuple[xr.DataArray, float, float]]:
    """``(lazy (y, x, c) image, downsample_y, downsample_x)`` of every output level, largest first.

    Downsamples are level-0 pixels per output pixel: the exact size ratio for file levels
    (as :attr:`Slide.level_downsamples`), ``2**k`` for resampled ones.
    """
    if pyramid == "levels":
        return [
            (slide.image(i), ds_y, ds_x) for i, (ds_y, ds_x) in enumerate(slide.level_downsamples)
        ]
    # read in blocks of about twice the chunk side, not the slide's dask chunks (3072 px
    # by default): area resampling holds float32 copies of its input block, and with
    # 2048-px blocks a factor-2 level comes out in whole 1024-px chunks. Measured on a
    # 32000 x 24000 slide (2 cores): 25 s and 375 MiB peak RSS, against 39 s and 824 MiB.
    reading = max(chunks, min(2 * chunks, DEFAULT_CHUNK))
    images = []
    k = 0
    while True:
        image = slide.image(downsample=2**k, chunks=reading)
        images.append(
            (image, float(image.attrs["downsample_y"]), float(image.attrs["downsample_x"]))
        )
        height, width = image.shape[:2]
        if (height <= chunks and width <= chunks) or min(height, width) == 1:
            return images
        k += 1


def _planned(
    group: zarr.Group, name: str, image: xr.DataArray, chunks: int, compressor: str
) -> tuple[da.Array, zarr.Array]:
    """Create the ``(c, y, x)`` array for ``image`` and its dask data in the array's chunks.

    The dask chunks are exactly the zarr chunks, so each task writes whole chunks of its
    own and no two tasks write the same chunk (no locks needed).
    """
    data = image.data.transpose(2, 0, 1)
    chunk = _chunk_shape(data.shape, chunks, compressor)
    data = data.rechunk(chunk)
    for axis, size in enumerate(chunk):
        if any(c != size for c in data.chunks[axis][:-1]) or data.chunks[axis][-1] > size:
            msg = f"internal error: dask chunks {data.chunks} do not tile zarr chunks {chunk}"
            raise RuntimeError(msg)
    return data, _create_array(group, name, data.shape, data.dtype, chunk, compressor)


def _chunk_shape(shape: tuple[int, ...], chunks: int, compressor: str) -> tuple[int, int, int]:
    """``(C, rows, cols)``: all channels, ``chunks`` pixels a side capped at the image's size."""
    n_channels, height, width = shape
    minimum = 2 if compressor == "jpeg" else 1  # the JPEG codec squeezes chunks: keep them 2-D
    return n_channels, min(chunks, max(height, minimum)), min(chunks, max(width, minimum))


def _create_array(
    group: zarr.Group,
    name: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    chunk: tuple[int, int, int],
    compressor: str,
) -> zarr.Array:
    return group.create_array(
        name,
        shape=shape,
        dtype=dtype,
        chunks=chunk,
        dimension_names=("c", "y", "x"),
        fill_value=0,
        **_codecs(compressor),
    )


def _write_associated(root: zarr.Group, slide: Slide, chunks: int, compressor: str) -> list[str]:
    """Write each associated image as a single-level OME-NGFF image; return their names.

    They are small, and read one at a time in this thread: a TIFF reader's associated
    images share one file handle. They are always stored losslessly (labels carry
    barcodes), with zstd unless ``compressor="none"``.
    """
    lossless = "none" if compressor == "none" else "zstd"
    names = []
    for name, image in slide.associated.items():
        pixels = np.moveaxis(np.asarray(image.values), -1, 0)
        group = root.create_group(f"associated/{name}")
        chunk = _chunk_shape(pixels.shape, chunks, lossless)
        _create_array(group, "image", pixels.shape, pixels.dtype, chunk, lossless)[...] = pixels
        group.update_attributes(
            {
                "ome": {
                    "version": NGFF_VERSION,
                    "multiscales": [
                        ngff.multiscale_metadata(name, [("image", 1.0, 1.0)], None, None)
                    ],
                    "omero": ngff.omero_metadata(list(image.coords["c"].values), pixels.dtype),
                }
            }
        )
        names.append(name)
    return names


def _codecs(compressor: str) -> dict[str, Any]:
    """``zarr.create_array`` codec arguments for a compressor name."""
    from zarr.codecs import TransposeCodec, ZstdCodec

    if compressor == "zstd":
        return {"compressors": [ZstdCodec(level=ZSTD_LEVEL)], "filters": None}
    if compressor == "none":
        return {"compressors": None, "filters": None}
    # (c, y, x) chunks become (y, x, c) images: interleaved RGB (YCbCr JPEG), or grey
    return {
        "filters": [TransposeCodec(order=(1, 2, 0))],
        "serializer": _jpeg_encoder()(level=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING),
        "compressors": None,
    }


@functools.cache
def _jpeg_encoder() -> type:
    """imagecodecs' zarr 3 JPEG codec, encoding the transposed (non-contiguous) chunks.

    ``imagecodecs.zarr.Jpeg`` (2026.10) refuses the strided view that the ``transpose``
    codec hands it. This subclass copies the chunk to contiguous memory first and changes
    nothing else: its metadata is ``imagecodecs_jpeg`` with the same configuration, and
    the chunks are plain JPEG images that the unmodified codec decodes (it is used only
    while writing; :func:`~wsiarray.ngff.register_jpeg_codec` registers the
    original for reading).
    """
    from imagecodecs.zarr import Jpeg

    ngff.register_jpeg_codec()

    class ContiguousJpeg(Jpeg):  # type: ignore[misc]
        def _encode_sync(self, chunk_array: Any, chunk_spec: Any) -> Any:
            contiguous = np.ascontiguousarray(chunk_array.as_numpy_array())
            buffer = chunk_spec.prototype.nd_buffer.from_numpy_array(contiguous)
            return super()._encode_sync(buffer, chunk_spec)

    return ContiguousJpeg


def _slide_attrs(
    slide: Slide, pyramid: str, datasets: list[tuple[str, float, float]], associated: list[str]
) -> ngff.SlideAttrs:
    """Slide metadata that OME-NGFF has no place for, restored when the store is reopened."""
    meta = slide.metadata
    return ngff.SlideAttrs(
        version=__version__,
        source=slide.path,
        format=meta.format,
        reader=meta.reader,
        mm_x=meta.mm_x,
        mm_y=meta.mm_y,
        magnification=meta.magnification,
        magnification_derived=meta.magnification_derived,
        channels=meta.channels,
        background=meta.background,
        pyramid=pyramid,
        levels=tuple(datasets),
        associated=tuple(associated),
        properties={**meta.properties, **_plane_property(slide)},
    )


def _plane_property(slide: Slide) -> dict[str, str]:
    """``{"wsiarray.plane": "z=3"}`` for a slide with planes (only that plane is written)."""
    if not slide.plane:
        return {}
    return {"wsiarray.plane": ",".join(f"{name}={index}" for name, index in slide.plane.items())}
