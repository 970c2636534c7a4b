"""OME-Zarr: where a zarr store keeps its metadata, and the OME-NGFF schema wsiarray writes and reads.

The exporter (:mod:`wsiarray.export`) writes with the ``*_metadata`` builders and
:class:`SlideAttrs`; the reader (:mod:`wsiarray.sources.zarr_`) reads with :func:`parse_axes`,
:func:`parse_scale`, :func:`channel_names` and :meth:`SlideAttrs.from_json`. Both use this
module, so a store wsiarray writes is read back by the same rules.

Coordinates follow the NGFF convention that array indices are pixel centres: level 0 has
``scale`` only (the physical origin is the centre of the first pixel) and level ``k`` adds
the ``translation`` ``(downsample - 1) / 2`` level-0 pixels that puts the centre of its
first pixel, which covers level-0 pixels ``[0, downsample)``, where it belongs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsiarray.errors import UnsupportedFormatError
from wsiarray.units import length_unit, to_mm

__all__ = [
    "JPEG_CODEC",
    "NGFF_VERSION",
    "ZARR_METADATA",
    "SlideAttrs",
    "channel_names",
    "multiscale_metadata",
    "omero_metadata",
    "parse_axes",
    "parse_scale",
    "register_jpeg_codec",
    "root_metadata",
    "unit_mm",
]

#: A directory holding one of these (zarr v3, then v2) is a zarr store.
ZARR_METADATA = ("zarr.json", ".zattrs", ".zgroup")
#: The OME-NGFF version wsiarray writes (on zarr v3).
NGFF_VERSION = "0.5"
#: Zarr v3 name of the JPEG codec (imagecodecs' ``imagecodecs.zarr.Jpeg``).
JPEG_CODEC = "imagecodecs_jpeg"
#: The root attribute holding what OME-NGFF has no place for (see :class:`SlideAttrs`).
WSIARRAY_KEY = "wsiarray"

_COLORS = {"R": "FF0000", "G": "00FF00", "B": "0000FF"}


def root_metadata(path: Path) -> Path | None:
    """The root metadata file of a zarr store directory, or ``None`` for anything else."""
    if not path.is_dir():
        return None
    return next((path / name for name in ZARR_METADATA if (path / name).is_file()), None)


@functools.cache
def register_jpeg_codec() -> None:
    """Register imagecodecs' zarr 3 JPEG codec with zarr under :data:`JPEG_CODEC` (once).

    Any zarr-python reader of a JPEG-compressed export needs the same:
    ``imagecodecs.zarr.register_codecs(["jpeg"])``, or the ``imagecodecs-zarr`` package,
    which registers it through an entry point.
    """
    from imagecodecs.zarr import Jpeg
    from zarr.registry import register_codec

    register_codec(JPEG_CODEC, Jpeg)


# -- writing ---------------------------------------------------------------------------------


def multiscale_metadata(
    name: str,
    datasets: list[tuple[str, float, float]],
    mm_y: float | None,
    mm_x: float | None,
) -> dict[str, Any]:
    """One ``multiscales`` entry: axes ``c, y, x`` and per-level scale (and translation).

    ``datasets`` are ``(path, downsample_y, downsample_x)``. Without a pixel size the axes
    carry no unit and the scale is in level-0 pixels.

    Examples
    --------
    >>> entry = multiscale_metadata("s", [("level0/image", 1.0, 1.0), ("level1/image", 4.0, 4.0)], 0.0005, 0.0005)
    >>> entry["datasets"][1]["coordinateTransformations"]
    [{'type': 'scale', 'scale': [1.0, 0.002, 0.002]}, {'type': 'translation', 'translation': [0.0, 0.00075, 0.00075]}]
    """
    unit = {"unit": "millimeter"} if mm_x is not None and mm_y is not None else {}
    step_y, step_x = (float(mm_y), float(mm_x)) if unit else (1.0, 1.0)  # type: ignore[arg-type]
    entries = []
    for path, ds_y, ds_x in datasets:
        transforms: list[dict[str, Any]] = [
            {"type": "scale", "scale": [1.0, step_y * ds_y, step_x * ds_x]}
        ]
        shift = [0.0, step_y * (ds_y - 1) / 2, step_x * (ds_x - 1) / 2]
        if any(shift):
            transforms.append({"type": "translation", "translation": shift})
        entries.append({"path": path, "coordinateTransformations": transforms})
    return {
        "name": name,
        "axes": [
            {"name": "c", "type": "channel"},
            {"name": "y", "type": "space", **unit},
            {"name": "x", "type": "space", **unit},
        ],
        "datasets": entries,
    }


def omero_metadata(channels: list[str], dtype: np.dtype) -> dict[str, Any]:
    """Transitional ``omero`` rendering metadata: channel labels, colours and windows."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        low, high = float(info.min), float(info.max)
    else:
        low, high = 0.0, 1.0
    rgb = len(channels) in (3, 4) and list(channels[:3]) == ["R", "G", "B"]
    return {
        "channels": [
            {
                "label": str(name),
                "color": _COLORS.get(str(name), "FFFFFF") if rgb else "FFFFFF",
                "active": True,
                "window": {"min": low, "max": high, "start": low, "end": high},
            }
            for name in channels
        ],
        "rdefs": {"model": "color" if rgb else "greyscale"},
    }


@dataclass(frozen=True, slots=True)
class SlideAttrs:
    """Slide metadata OME-NGFF has no place for: the root's ``"wsiarray"`` attribute.

    The exporter writes it; the reader restores the slide's metadata from it as it was.
    """

    format: str
    reader: str = ""
    source: str = ""
    version: str = ""
    mm_x: float | None = None
    mm_y: float | None = None
    magnification: float | None = None
    magnification_derived: bool = False
    channels: tuple[str, ...] = ()
    background: tuple[int, ...] = (255, 255, 255)
    pyramid: str = "levels"
    #: ``(path, downsample_y, downsample_x)`` of every level
    levels: tuple[tuple[str, float, float], ...] = ()
    associated: tuple[str, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The attribute's JSON value (plain floats and lists)."""
        return {
            "version": self.version,
            "source": self.source,
            "format": self.format,
            "reader": self.reader,
            "mm_x": _float(self.mm_x),
            "mm_y": _float(self.mm_y),
            "magnification": _float(self.magnification),
            "magnification_derived": self.magnification_derived,
            "channels": list(self.channels),
            "background": [int(v) for v in self.background],
            "pyramid": self.pyramid,
            "levels": [
                {"path": path, "downsample_y": float(ds_y), "downsample_x": float(ds_x)}
                for path, ds_y, ds_x in self.levels
            ],
            "associated": list(self.associated),
            "properties": dict(self.properties),
        }

    @classmethod
    def from_json(cls, value: Any) -> SlideAttrs | None:
        """Parse the attribute; ``None`` when a store has none (it was not written by wsiarray)."""
        if not isinstance(value, Mapping) or not value:
            return None
        return cls(
            format=str(value.get("format") or "ome-zarr"),
            reader=str(value.get("reader") or ""),
            source=str(value.get("source") or ""),
            version=str(value.get("version") or ""),
            mm_x=_float(value.get("mm_x")),
            mm_y=_float(value.get("mm_y")),
            magnification=_float(value.get("magnification")),
            magnification_derived=bool(value.get("magnification_derived", False)),
            channels=tuple(str(c) for c in value.get("channels") or ()),
            background=tuple(int(v) for v in value.get("background", (255, 255, 255))),
            pyramid=str(value.get("pyramid") or "levels"),
            levels=tuple(
                (str(level["path"]), float(level["downsample_y"]), float(level["downsample_x"]))
                for level in value.get("levels") or ()
            ),
            associated=tuple(str(name) for name in value.get("associated") or ()),
            properties={str(k): str(v) for k, v in (value.get("properties") or {}).items()},
        )


# -- reading ---------------------------------------------------------------------------------


def parse_axes(axes: Any, where: str) -> tuple[list[str], list[str | None], list[str | None]]:
    """Names, types and units of a multiscale's axes (dicts since NGFF 0.4, names in 0.3).

    Raises
    ------
    UnsupportedFormatError
        No axes, or the last two are not space axes.
    """
    if not axes:
        msg = f"{where}: the multiscale has no axes (OME-NGFF before 0.3 is not supported)"
        raise UnsupportedFormatError(msg)
    names, types, units = [], [], []
    for axis in axes:
        entry = axis if isinstance(axis, Mapping) else {"name": str(axis)}
        name = str(entry.get("name"))
        kind = entry.get("type") or {"c": "channel", "t": "time"}.get(
            name, "space" if name in ("z", "y", "x") else None
        )
        names.append(name)
        types.append(kind)
        units.append(entry.get("unit"))
    if types[-2:] != ["space", "space"]:
        msg = f"{where}: the axes {names} do not end in two space axes (y, x)"
        raise UnsupportedFormatError(msg)
    return names, types, units


def parse_scale(transforms: Any, ndim: int) -> list[float]:
    """A dataset's ``scale`` transformation, or ones where it has none."""
    for transform in transforms or []:
        if isinstance(transform, Mapping) and transform.get("type") == "scale":
            values = transform.get("scale")
            if isinstance(values, list) and len(values) == ndim:
                return [float(v) for v in values]
    return [1.0] * ndim


def unit_mm(unit: str | None) -> float | None:
    """Millimetres per an axis' unit (a UDUNITS-2 length name), or ``None`` for others.

    Examples
    --------
    >>> unit_mm("micrometer"), unit_mm(None)
    (0.001, None)
    """
    return to_mm(1.0, unit) if unit and length_unit(unit) else None


def channel_names(
    count: int, dtype: np.dtype, attrs: SlideAttrs | None, omero: Any
) -> tuple[str, ...]:
    """Channel names: wsiarray's attribute, else distinct omero labels, else as tifffile names them.

    Unlabelled 8-bit images of 3 or 4 channels are taken for RGB(A); one channel is ``L``,
    other counts ``C0``, ``C1``, ...
    """
    if attrs is not None and len(attrs.channels) == count:
        return attrs.channels
    labels = []
    if isinstance(omero, Mapping):
        labels = [c.get("label") for c in omero.get("channels") or [] if isinstance(c, Mapping)]
    if (
        len(labels) == count
        and all(isinstance(label, str) and label for label in labels)
        and len(set(labels)) == count
    ):
        return tuple(labels)  # type: ignore[arg-type]
    if count == 1:
        return ("L",)
    if dtype == np.uint8 and count in (3, 4):
        return ("R", "G", "B", "A")[:count]
    return tuple(f"C{i}" for i in range(count))


def _float(value: Any) -> float | None:
    """A plain float for JSON (numpy scalars are not JSON), or ``None``."""
    return None if value is None else float(value)
