"""Reader for OME-Zarr multiscale images (OME-NGFF 0.4 on zarr v2, 0.5 on zarr v3).

It opens the image group at the root of a store directory, such as the ones
:func:`wsiarray.export.write_ome_zarr` writes: every dataset of the first multiscale is a
level, ``associated/<name>`` image groups are associated images. Metadata written by
wsiarray (the ``"wsiarray"`` attribute) is restored as it was; for other stores the pixel
size comes from level 0's scale and the axis units, and the channel names from ``omero``.

Chunks compressed with ``imagecodecs_jpeg`` (wsiarray's lossy export) are read through
imagecodecs' zarr 3 codec, registered here with zarr.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, override

import numpy as np

from wsiarray import ngff
from wsiarray.errors import SlideNotFoundError, UnsupportedFormatError
from wsiarray.sources import _vendor
from wsiarray.sources._base import AssociatedInfo, LevelInfo, SlideMetadata, SlideSource
from wsiarray.sources._store import StorageOptions, is_remote, redact

if TYPE_CHECKING:
    import zarr

__all__ = ["OmeZarrSource"]


class OmeZarrSource(SlideSource):
    """An OME-Zarr multiscale image: a store directory whose root group has ``multiscales``.

    Parameters
    ----------
    path : Path or str
        The store's root directory (holding ``zarr.json``, or ``.zattrs`` for zarr v2), or
        its URL (``s3://bucket/slide.zarr``, any fsspec protocol).
    storage_options : mapping, optional
        For a URL: the fsspec filesystem's options.
    """

    name: ClassVar[str] = "zarr"
    remote: ClassVar[bool] = True

    @classmethod
    @override
    def claims(cls, path: Path, header: bytes, /) -> bool:
        return ngff.root_metadata(path) is not None

    def __init__(
        self,
        path: Path | str,
        /,
        *,
        storage_options: StorageOptions | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        remote = is_remote(path)
        if remote:
            options["storage_options"] = StorageOptions(storage_options)
        super().__init__(path, **options)  # type: ignore[arg-type]
        import zarr

        ngff.register_jpeg_codec()
        where = redact(str(path))
        try:
            if remote:  # zarr reads the chunks by key, concurrently, through fsspec
                store = zarr.storage.FsspecStore.from_url(
                    str(path),
                    storage_options=StorageOptions(storage_options).to_dict(),
                    read_only=True,
                )
                group = zarr.open_group(store=store, mode="r")
            else:
                group = zarr.open_group(str(path), mode="r")
        except FileNotFoundError as exc:
            msg = f"{where}: no zarr group there"
            raise SlideNotFoundError(msg) from exc
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            msg = f"{where}: zarr cannot open it as a group: {redact(str(exc))}"
            raise UnsupportedFormatError(msg) from exc
        attrs = group.attrs.asdict()
        ome = attrs.get("ome", attrs)
        multiscales = ome.get("multiscales") if isinstance(ome, Mapping) else None
        if not multiscales:
            msg = (
                f"{path} is a zarr group without OME-NGFF multiscales metadata: not an image "
                "(a container such as a plate or a bioformats2raw "
                "layout; open the image group inside it)"
            )
            raise UnsupportedFormatError(msg)
        extra = ngff.SlideAttrs.from_json(attrs.get(ngff.WSIARRAY_KEY))
        self._levels = _Image.load(group, multiscales[0], where)
        self._associated = self._associated_images(group, extra.associated if extra else ())
        version = str(ome.get("version") or multiscales[0].get("version") or "")
        self.metadata = self._metadata(self._levels, ome, extra, version)

    def _metadata(
        self, image: _Image, ome: Mapping[str, Any], extra: ngff.SlideAttrs | None, version: str
    ) -> SlideMetadata:
        levels = tuple(
            LevelInfo(shape=(array.shape[image.y], array.shape[image.x]), tile=image.tile(array))
            for array in image.arrays
        )
        dtype = np.dtype(image.arrays[0].dtype)
        channels = ngff.channel_names(image.channels, dtype, extra, ome.get("omero"))
        if extra is not None:
            mm_x, mm_y, magnification = extra.mm_x, extra.mm_y, extra.magnification
            derived, properties = extra.magnification_derived, dict(extra.properties)
            background, fmt = extra.background, extra.format
        else:
            mm_y, mm_x = image.mm()
            magnification, derived = _vendor.magnification_or_derived(None, mm_x)
            properties = {"ome.version": version}
            if image.name:
                properties["ome.name"] = image.name
            background = (255, 255, 255)
            fmt = "ome-zarr"
        return SlideMetadata(
            format=fmt,
            reader=self.name,
            levels=levels,
            dtype=str(dtype),
            channels=channels,
            mm_x=mm_x,
            mm_y=mm_y,
            magnification=magnification,
            magnification_derived=derived,
            background=background,
            properties=properties,
            associated=tuple(
                AssociatedInfo(name, (*image.plane_shape(0), image.channels))
                for name, image in self._associated.items()
            ),
        )

    @staticmethod
    def _associated_images(group: zarr.Group, order: tuple[str, ...]) -> dict[str, _Image]:
        """The image groups under ``associated/``, in the order the export listed them."""
        import zarr

        try:
            parent = group["associated"]
        except KeyError:
            return {}
        if not isinstance(parent, zarr.Group):
            return {}
        images = {}
        rank = {name: i for i, name in enumerate(order)}
        for name, child in sorted(parent.groups(), key=lambda g: (rank.get(g[0], len(rank)), g[0])):
            attrs = child.attrs.asdict()
            multiscales = attrs.get("ome", attrs).get("multiscales")
            if multiscales:
                images[name] = _Image.load(child, multiscales[0], f"associated/{name}")
        return images

    @override
    def read_block(self, level: int, y0: int, y1: int, x0: int, x1: int, /) -> np.ndarray:
        return self._levels.read(level, slice(y0, y1), slice(x0, x1))

    @override
    def read_associated(self, name: str, /) -> np.ndarray:
        image = self._associated[name]
        return image.read(0, slice(None), slice(None))


class _Image:
    """The arrays of one multiscale image and where its channel and space axes are."""

    def __init__(
        self,
        arrays: list[zarr.Array],
        axes: list[str],
        types: list[str | None],
        units: list[str | None],
        scales: list[list[float]],
        name: str | None,
    ) -> None:
        self.arrays = arrays
        self.name = name
        space = [i for i, kind in enumerate(types) if kind == "space"]
        self.y, self.x = space[-2], space[-1]
        channel = [i for i, kind in enumerate(types) if kind == "channel"]
        self.c = channel[0] if channel else (axes.index("c") if "c" in axes else None)
        self.units = units
        self.scales = scales

    @classmethod
    def load(cls, group: zarr.Group, multiscale: Mapping[str, Any], where: str) -> _Image:
        """Open the datasets of ``multiscale``, checking that they are 2-D images."""
        import zarr

        axes, types, units = ngff.parse_axes(multiscale.get("axes"), where)
        arrays, scales = [], []
        for dataset in multiscale.get("datasets") or []:
            try:
                array = group[str(dataset["path"])]
            except KeyError as exc:
                msg = f"{where}: the multiscale dataset {dataset.get('path')!r} does not exist"
                raise UnsupportedFormatError(msg) from exc
            if not isinstance(array, zarr.Array) or array.ndim != len(axes):
                msg = f"{where}: dataset {dataset['path']!r} is not a {len(axes)}-D array"
                raise UnsupportedFormatError(msg)
            arrays.append(array)
            scales.append(ngff.parse_scale(dataset.get("coordinateTransformations"), len(axes)))
        if not arrays:
            msg = f"{where}: the multiscale lists no datasets"
            raise UnsupportedFormatError(msg)
        image = cls(arrays, axes, types, units, scales, multiscale.get("name"))
        for i, size in enumerate(arrays[0].shape):
            if i not in (image.y, image.x, image.c) and size != 1:
                msg = (
                    f"{where}: axis {axes[i]!r} has {size} planes; wsiarray reads 2-D images "
                    "(one plane per channel), so only axes of length 1 besides c, y, x"
                )
                raise UnsupportedFormatError(msg)
        return image

    @property
    def channels(self) -> int:
        """Number of channels (1 without a channel axis)."""
        return 1 if self.c is None else int(self.arrays[0].shape[self.c])

    def plane_shape(self, level: int) -> tuple[int, int]:
        shape = self.arrays[level].shape
        return int(shape[self.y]), int(shape[self.x])

    def tile(self, array: zarr.Array) -> tuple[int, int]:
        """The chunk's ``(rows, cols)``, capped at the level's size."""
        return (
            min(int(array.chunks[self.y]), int(array.shape[self.y])),
            min(int(array.chunks[self.x]), int(array.shape[self.x])),
        )

    def mm(self) -> tuple[float | None, float | None]:
        """``(mm_y, mm_x)`` of a level-0 pixel from its scale and the axes' units, if known."""
        result = []
        for axis in (self.y, self.x):
            factor = ngff.unit_mm(self.units[axis])
            value = self.scales[0][axis]
            ok = factor is not None and math.isfinite(value) and value > 0
            result.append(value * factor if ok else None)  # type: ignore[operator]
        return result[0], result[1]

    def read(self, level: int, rows: slice, cols: slice) -> np.ndarray:
        """Pixels ``[rows, cols]`` of a level as ``(h, w, c)`` (zarr's synchronous API is thread-safe)."""
        array = self.arrays[level]
        key: list[Any] = [0] * array.ndim
        key[self.y], key[self.x] = rows, cols
        if self.c is not None:
            key[self.c] = slice(None)
        block = np.asarray(array[tuple(key)])
        if self.c is None:
            return block[..., np.newaxis]
        # after integer indexing the kept axes are in order; c precedes y and x (NGFF order)
        return np.moveaxis(block, 0, -1)
