"""A slide as xarray objects: coordinates, attributes and the :class:`xarray.DataTree`.

The only module that knows xarray's data model::

    /                 attrs: format, reader, mm_x, mm_y, magnification, properties, ...
    /level0 ...       Dataset with ``image`` (y, x, c), lazy dask; y/x in mm at pixel centres
    /associated/NAME  Dataset with ``image`` (y, x, c), lazy, no physical coordinates

The arrays underneath are :mod:`wsiarray.arrays`'s; nothing here reads the file.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from wsiarray.arrays import (
    AssociatedArray,
    LevelArray,
    ResampledArray,
    WindowArray,
    lazily_indexed,
    to_dask,
)
from wsiarray.chunks import (
    ChunksLike,
    aligned_chunks,
    dask_chunks,
    default_chunk,
    scaled_chunks,
)
from wsiarray.geometry import ScalePlan, pixel_centres
from wsiarray.sources import SlideMetadata, SourceSpec, redact

__all__ = ["build_tree", "image_at", "image_coords", "root_attrs", "stacked_planes"]


def image_at(
    spec: SourceSpec,
    meta: SlideMetadata,
    plan: ScalePlan,
    *,
    chunks: ChunksLike = None,
    dask: bool = True,
    plane: tuple[int, ...] = (),
) -> xr.DataArray:
    """The slide's image as ``plan`` makes it (a file level, or one resampled), lazy.

    With ``dask=False`` the data is xarray's lazily indexed array over the same reader, not
    a dask array: indexing stays lazy and ``.values`` reads just the selection in the
    calling thread, without dask's per-compute overhead (for small regions).

    ``plane`` picks one plane of a slide with planes (z, t): the image is that plane's
    ``(y, x, c)``, with the plane's coordinates as scalar coordinates.
    """
    # resolved now: the dask name below must differ where the chunks do (a graph built
    # before a distributed client started and one built after, in one process)
    chunks = default_chunk() if chunks is None else chunks
    bands, dtype = len(meta.channels), np.dtype(meta.dtype)
    shape = (*plan.shape, bands)
    level_shape = meta.levels[plan.level].shape
    array: WindowArray
    if plan.factor is None:
        array = LevelArray(spec, plan.level, shape, dtype, plane)
        chunk_shape = dask_chunks(meta.levels[plan.level].tile, level_shape, chunks)
        extra: dict[str, Any] = {
            "level": plan.level,
            "tile_width": meta.levels[plan.level].tile[1],
            "tile_height": meta.levels[plan.level].tile[0],
        }
    else:
        array = ResampledArray(spec, plan.level, plan.factor, level_shape, shape, dtype, plane)
        chunk_shape = scaled_chunks(plan.factor, plan.shape, chunks)
        extra = {"read_level": plan.level}
    if dask:
        name = f"wsiarray-{type(array).__name__}-{tokenize(spec, plan, chunks, plane)}"
        offset = meta.levels[plan.level].tile_offset
        layout = (
            aligned_chunks(chunk_shape, level_shape, offset)
            if plan.factor is None and offset != (0, 0)
            else chunk_shape
        )
        data = to_dask(array, layout, name)
    else:
        data = lazily_indexed(array)
    ds_y, ds_x = plan.downsample
    resolution = meta.resolution.at(ds_y, ds_x)
    attrs = {
        **extra,
        "downsample_x": ds_x,
        "downsample_y": ds_y,
        "magnification": resolution.magnification,
        "mm_x": resolution.mm_x,
        "mm_y": resolution.mm_y,
    }
    coords = image_coords(meta, plan.downsample, (0, plan.shape[0]), (0, plan.shape[1]))
    for axis, index in zip(meta.planes, plane, strict=False):
        coords[axis.name] = ((), axis.values[index], {"units": axis.units})
    image = xr.DataArray(data, dims=("y", "x", "c"), coords=coords, name="image", attrs=attrs)
    if dask:
        image.encoding["preferred_chunks"] = {"y": chunk_shape[0], "x": chunk_shape[1]}
    return image


def image_coords(
    meta: SlideMetadata,
    downsample: tuple[float, float],
    rows: tuple[int, int],
    cols: tuple[int, int],
) -> dict[str, Any]:
    """Coordinates of pixels ``rows`` x ``cols`` of the image at ``downsample``: y, x and c.

    y and x are the pixel centres in mm from the slide's top-left corner, or in level-0
    pixels (``units="base_pixels"``) when the slide's pixel size is unknown.
    """
    known = meta.mm_x is not None and meta.mm_y is not None
    units = "mm" if known else "base_pixels"
    step_y = (meta.mm_y if known else 1.0) * downsample[0]  # type: ignore[operator]
    step_x = (meta.mm_x if known else 1.0) * downsample[1]  # type: ignore[operator]
    return {
        "y": (
            "y",
            pixel_centres(*rows, step_y),
            {"units": units, "long_name": "distance from top"},
        ),
        "x": (
            "x",
            pixel_centres(*cols, step_x),
            {"units": units, "long_name": "distance from left"},
        ),
        "c": ("c", list(meta.channels)),
    }


def _level_dataset(
    spec: SourceSpec, meta: SlideMetadata, level: int, chunks: ChunksLike
) -> xr.Dataset:
    plan = ScalePlan.of_level(meta.level_shapes, level)
    if meta.planes:
        image = stacked_planes(spec, meta, plan, chunks)
    else:
        image = image_at(spec, meta, plan, chunks=chunks)
    attrs, image.attrs = image.attrs, {}
    return xr.Dataset({"image": image}, attrs=attrs)


def stacked_planes(
    spec: SourceSpec, meta: SlideMetadata, plan: ScalePlan, chunks: ChunksLike = None
) -> xr.DataArray:
    """Every plane of a slide with planes: dims ``(*planes, y, x, c)``, one dask array per plane.

    The planes are stacked lazily (``xr.concat`` of dask arrays): a computation reads only
    the planes it selects.
    """

    def stack(prefix: tuple[int, ...]) -> xr.DataArray:
        depth = len(prefix)
        if depth == len(meta.planes):
            return image_at(spec, meta, plan, chunks=chunks, plane=prefix)
        axis = meta.planes[depth]
        parts = [stack((*prefix, i)) for i in range(len(axis.values))]
        return xr.concat(parts, dim=axis.name, combine_attrs="override")

    return stack(())


def _associated_dataset(spec: SourceSpec, meta: SlideMetadata, index: int) -> xr.Dataset:
    info = meta.associated[index]
    dtype = np.dtype("uint8")
    array = da.from_array(
        AssociatedArray(spec, info.name, info.shape, dtype),
        chunks=-1,
        name=f"wsiarray-{info.name}-{tokenize(spec, info.name)}",
        asarray=False,
        fancy=False,
        meta=np.empty((0, 0, 0), dtype=dtype),
    )
    bands = (
        ["R", "G", "B", "A"][: info.shape[2]] if info.shape[2] in (3, 4) else ["L"] * info.shape[2]
    )
    return xr.Dataset({"image": xr.DataArray(array, dims=("y", "x", "c"), coords={"c": bands})})


def root_attrs(meta: SlideMetadata, path: str) -> dict[str, object]:
    """Slide-wide attributes stored on the tree's root."""
    return {
        "path": path,
        "format": meta.format,
        "reader": meta.reader,
        "mm_x": meta.mm_x,
        "mm_y": meta.mm_y,
        "magnification": meta.magnification,
        "magnification_derived": meta.magnification_derived,
        "background_color": "#{:02x}{:02x}{:02x}".format(*_rgb(meta.background)),
        "level_count": len(meta.levels),
        "properties": dict(meta.properties),
    }


def _rgb(background: tuple[int, ...]) -> tuple[int, int, int]:
    """The background as an RGB colour: a grey slide's one value three times (clipped to 8 bits
    for the attribute; a 16-bit slide's background is in ``metadata.background``)."""
    values = [min(255, max(0, int(v))) for v in background] or [255]
    if len(values) < 3:  # grey, or grey and alpha
        return values[0], values[0], values[0]
    return values[0], values[1], values[2]


def build_tree(spec: SourceSpec, meta: SlideMetadata, *, chunks: ChunksLike = None) -> xr.DataTree:
    """Assemble the DataTree of a slide; nothing is read from the file.

    Parameters
    ----------
    spec : SourceSpec
        How to reopen the slide (path, reader, options); dask tasks carry only this.
    meta : SlideMetadata
        The slide's normalised metadata.
    chunks : int or tuple of int, optional
        Dask chunk side in pixels, see :func:`wsiarray.chunks.dask_chunks`.
    """
    nodes: dict[str, xr.Dataset] = {"/": xr.Dataset(attrs=root_attrs(meta, redact(spec.path)))}
    for level in range(len(meta.levels)):
        nodes[f"/level{level}"] = _level_dataset(spec, meta, level, chunks)
    for index, info in enumerate(meta.associated):
        nodes[f"/associated/{info.name}"] = _associated_dataset(spec, meta, index)
    return xr.DataTree.from_dict(nodes)
