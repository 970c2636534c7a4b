"""A slide as xarray objects: coordinates, attributes and the :class:`xarray.DataTree`.

The only module that knows xarray's data model::

    /                 attrs: format, reader, mm_x, mm_y, magnification, properties, ...
    /level0 ...       Dataset with ``image`` (y, x, c), lazy dask; y/x in mm at pixel centres
                      (``(*planes, y, x, c)`` for a slide with planes: z, t)
    /associated/NAME  Dataset with ``image`` (y, x, c), lazy, no physical coordinates

The arrays underneath are :mod:`wsiarray.arrays`'s; nothing here reads the file.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from xarray.indexes import Index, PandasIndex, RangeIndex
from xarray.indexes.range_index import RangeCoordinateTransform

from wsiarray.arrays import (
    AssociatedArray,
    LevelArray,
    PlaneStack,
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
from wsiarray.geometry import ScalePlan
from wsiarray.sources import SlideMetadata, SourceSpec, redact

__all__ = ["PixelCentresIndex", "build_tree", "image_at", "image_coords", "root_attrs"]


def image_at(
    spec: SourceSpec,
    meta: SlideMetadata,
    plan: ScalePlan,
    *,
    chunks: ChunksLike = None,
    dask: bool = True,
    plane: tuple[int, ...] | None = (),
) -> xr.DataArray:
    """The slide's image as ``plan`` makes it (a file level, or one resampled), lazy.

    With ``dask=False`` the data is xarray's lazily indexed array over the same reader, not
    a dask array: indexing stays lazy and ``.values`` reads just the selection in the
    calling thread, without dask's per-compute overhead (for small regions).

    ``plane`` picks one plane of a slide with planes (z, t): the image is that plane's
    ``(y, x, c)``, with the plane's coordinates as scalar coordinates. ``plane=None`` gives
    every plane, dims ``(*planes, y, x, c)``, one dask chunk per plane: a computation
    reads only the planes it selects.
    """
    # resolved now: the dask name below must differ where the chunks do (a graph built
    # before a distributed client started and one built after, in one process)
    chunks = default_chunk() if chunks is None else chunks
    bands, dtype = len(meta.channels), np.dtype(meta.dtype)
    shape = (*plan.shape, bands)
    level_shape = meta.levels[plan.level].shape
    one_plane = () if plane is None else plane
    array: WindowArray | PlaneStack
    if plan.factor is None:
        array = LevelArray(spec, plan.level, shape, dtype, one_plane)
        chunk_shape = dask_chunks(meta.levels[plan.level].tile, level_shape, chunks)
        extra: dict[str, Any] = {
            "level": plan.level,
            "tile_width": meta.levels[plan.level].tile[1],
            "tile_height": meta.levels[plan.level].tile[0],
        }
    else:
        array = ResampledArray(spec, plan.level, plan.factor, level_shape, shape, dtype, one_plane)
        chunk_shape = scaled_chunks(plan.factor, plan.shape, chunks)
        extra = {"read_level": plan.level}
    # every plane: one array whose reads pick the plane, not a DataArray (and a dask graph
    # layer) per plane stacked by xr.concat, which cost 12 ms per plane and level and hung
    # on a file declaring a million planes (fuzz ome-os2/description_edit/15.233)
    planes = meta.planes if plane is None else ()
    if planes:
        array = PlaneStack(array, tuple(len(axis.values) for axis in planes))
    else:  # a slide without planes: the same dask name whichever way it was asked
        plane = one_plane
    if dask:
        name = f"wsiarray-{type(array).__name__}-{tokenize(spec, plan, chunks, plane)}"
        offset = meta.levels[plan.level].tile_offset
        layout = (
            aligned_chunks(chunk_shape, level_shape, offset)
            if plan.factor is None and offset != (0, 0)
            else chunk_shape
        )
        data = to_dask(array, (*(1 for _ in planes), *layout), name)
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
    for axis in planes:
        coords[axis.name] = (axis.name, np.asarray(axis.values), {"units": axis.units})
    for axis, index in zip(meta.planes, one_plane, strict=False):
        coords[axis.name] = ((), axis.values[index], {"units": axis.units})
    dims = (*(axis.name for axis in planes), "y", "x", "c")
    image = xr.DataArray(data, dims=dims, coords=coords, name="image", attrs=attrs)
    if dask:
        image.encoding["preferred_chunks"] = {"y": chunk_shape[0], "x": chunk_shape[1]}
    return image


def image_coords(
    meta: SlideMetadata,
    downsample: tuple[float, float],
    rows: tuple[int, int],
    cols: tuple[int, int],
) -> xr.Coordinates:
    """Coordinates of pixels ``rows`` x ``cols`` of the image at ``downsample``: y, x and c.

    y and x are the pixel centres in mm from the slide's top-left corner, or in level-0
    pixels (``units="base_pixels"``) when the slide's pixel size is unknown: pixel ``i``'s
    is ``(i + 0.5) * pixel``, computed when asked (:class:`PixelCentresIndex`), so they cost
    no memory however large the image says it is.
    """
    known = meta.mm_x is not None and meta.mm_y is not None
    units = "mm" if known else "base_pixels"
    step_y = (meta.mm_y if known else 1.0) * downsample[0]  # type: ignore[operator]
    step_x = (meta.mm_x if known else 1.0) * downsample[1]  # type: ignore[operator]
    variables, indexes = {}, {}
    for dim, (start, stop), step, side in (
        ("y", rows, step_y, "top"),
        ("x", cols, step_x, "left"),
    ):
        index = PixelCentresIndex.of_pixels(dim, start, stop, step)
        (variable,) = index.create_variables().values()
        variable.attrs.update(units=units, long_name=f"distance from {side}")
        variables[dim], indexes[dim] = variable, index
    return xr.Coordinates(variables, indexes=indexes).assign(c=("c", list(meta.channels)))


class _PixelCentres(RangeCoordinateTransform):
    """Centres of pixels ``first, first + stride, ...`` (``size`` of them), ``pixel`` apart:
    pixel ``i``'s is ``(i + 0.5) * pixel``.

    The pixel index is an integer until the last step, so every selection (a slice of a
    slice, a stride) gives the same bits as the image's own coordinate; RangeIndex's
    ``start + position * step`` does not: its slices move ``start`` and round again.
    """

    __slots__ = ("first", "pixel", "stride")

    def __init__(self, dim: str, first: int, stride: int, size: int, pixel: float) -> None:
        self.first, self.stride, self.pixel = first, stride, pixel
        start, stop = self.centres(np.array([0, size]))
        super().__init__(start, stop, size, dim, dim, step=stride * pixel)

    def centres(self, positions: np.ndarray) -> np.ndarray:
        """The coordinate of each position (an integer array) along the dimension."""
        return ((self.first + self.stride * positions) + 0.5) * self.pixel

    def forward(self, dim_positions: dict[str, Any]) -> dict[Hashable, Any]:
        # docstring inherited
        return {self.coord_name: self.centres(np.asarray(dim_positions[self.dim]))}

    def reverse(self, coord_labels: dict[Hashable, Any]) -> dict[str, Any]:
        # docstring inherited
        labels = np.asarray(coord_labels[self.coord_name], dtype=np.float64)
        return {self.dim: (labels / self.pixel - 0.5 - self.first) / self.stride}

    def slice(self, sl: slice) -> _PixelCentres:
        # docstring inherited
        taken = range(self.size)[sl]
        first = self.first + self.stride * taken.start
        return _PixelCentres(self.dim, first, self.stride * taken.step, len(taken), self.pixel)

    def equals(self, other: Any, exclude: Any = None, *, exact: bool = False) -> bool:
        """Whether the coordinates are the same, bit for bit (as pandas compares them)."""
        if not isinstance(other, _PixelCentres) or (self.dim, self.size) != (
            other.dim,
            other.size,
        ):
            return False
        if (self.first, self.stride, self.pixel) == (other.first, other.stride, other.pixel):
            return True
        everywhere = np.arange(self.size)
        return bool(np.array_equal(self.centres(everywhere), other.centres(everywhere)))


class PixelCentresIndex(RangeIndex):
    """The index of a y or x coordinate: pixel centres computed when asked, never stored.

    A level 200,000 pixels wide held 1.6 MB of coordinates per axis, and a file declaring
    a width of 2**31 - 1 asked for 16 GiB (fuzz ``ome-pyramid/huge_size/15.184``). The
    coordinate is lazy (:class:`xarray.indexes.RangeIndex`), slices stay lazy, and label
    selection (``sel``, with or without ``method``), alignment and concatenation behave as
    pandas' index over the same values: they run on a pandas index of only the pixels the
    labels can reach, or of all of them where that cannot be bounded (joins, concat).
    """

    transform: _PixelCentres

    @classmethod
    def of_pixels(cls, dim: str, start: int, stop: int, pixel: float) -> PixelCentresIndex:
        """Centres of pixels ``start`` to ``stop - 1``, ``pixel`` apart, along ``dim``."""
        return cls(_PixelCentres(dim, start, 1, stop - start, pixel))

    def isel(self, indexers: Mapping[Any, Any]) -> Index | None:
        # docstring inherited
        if isinstance(indexers[self.dim], slice):
            return type(self)(self.transform.slice(indexers[self.dim]))
        return super().isel(indexers)  # a scalar drops the index; arrays get pandas'

    def equals(self, other: Index, *, exclude: Any = None, exact: bool = False) -> bool:
        # docstring inherited
        return isinstance(other, PixelCentresIndex) and self.transform.equals(other.transform)

    def sel(self, labels: dict[Any, Any], method: Any = None, tolerance: Any = None) -> Any:
        # docstring inherited
        window = self._reach(labels[self.coord_name])
        result = self.isel({self.dim: window}).pandas().sel(labels, method, tolerance)  # type: ignore[union-attr]
        indexer = _in_whole(result.dim_indexers[self.dim], window)
        return replace(result, dim_indexers={self.dim: indexer})

    def _reach(self, label: Any) -> slice:
        """The pixels selecting ``label`` (numbers, or a slice between two) can give, with
        two neighbours each side for ``method``; all of them for any other label."""
        whole = slice(0, self.size)
        if isinstance(label, slice):
            if label.step is not None:
                return whole
            ends = [end for end in (label.start, label.stop) if end is not None]
        else:
            ends = [getattr(label, "values", label)]
        values = [np.ravel(np.asarray(end)) for end in ends]
        if not values or any(v.dtype.kind not in "iuf" for v in values):
            return whole  # booleans are a mask; strings, dates...: pandas says what is wrong
        positions = self.transform.reverse({self.coord_name: np.concatenate(values)})[self.dim]
        if not self.size or not positions.size or not np.isfinite(positions).all():
            return whole
        # clipped to keep one pixel at least: past either end, method= picks the end pixel
        low = min(max(0, int(np.floor(positions.min())) - 2), self.size - 1)
        high = max(min(self.size, int(np.ceil(positions.max())) + 3), low + 1)
        if isinstance(label, slice):
            low = 0 if label.start is None else low
            high = self.size if label.stop is None else high
        return slice(low, high)

    def pandas(self) -> PandasIndex:
        """The same index as a pandas index (its values computed)."""
        values = self.transform.centres(np.arange(self.size))
        return PandasIndex(pd.Index(values, name=self.coord_name), self.dim)

    def join(self, other: Index, how: str = "inner") -> Index:
        # docstring inherited
        return self.pandas().join(_as_pandas(other), how)

    def reindex_like(self, other: Index, method: Any = None, tolerance: Any = None) -> Any:
        # docstring inherited
        return self.pandas().reindex_like(_as_pandas(other), method, tolerance)

    @classmethod
    def concat(cls, indexes: Sequence[Any], dim: Hashable, positions: Any = None) -> PandasIndex:
        # docstring inherited
        return PandasIndex.concat([_as_pandas(i) for i in indexes], dim, positions)


def _as_pandas(index: Any) -> Any:
    return index.pandas() if isinstance(index, PixelCentresIndex) else index


def _in_whole(indexer: Any, window: slice) -> Any:
    """A positional indexer into ``window`` (unit step) as one into the whole dimension."""
    if window.start == 0:
        return indexer
    if isinstance(indexer, slice):
        taken = range(window.start, window.stop)[indexer]
        return slice(taken.start, taken.stop, indexer.step)
    if isinstance(indexer, xr.DataArray | xr.Variable):
        return indexer.copy(data=indexer.data + window.start)
    return indexer + window.start


def _level_dataset(
    spec: SourceSpec, meta: SlideMetadata, level: int, chunks: ChunksLike
) -> xr.Dataset:
    plan = ScalePlan.of_level(meta.level_shapes, level)
    image = image_at(spec, meta, plan, chunks=chunks, plane=None)
    attrs, image.attrs = image.attrs, {}
    return xr.Dataset({"image": image}, attrs=attrs)


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
        "warnings": list(meta.warnings),
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
