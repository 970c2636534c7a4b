"""Pure parsers: vendor metadata (strings, XML, TIFF tag values) to normalised values.

No file IO here. Pixel sizes come out in millimetres per pixel.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

from wsiarray.units import length_unit, to_mm

__all__ = [
    "aperio_fields",
    "magnification_or_derived",
    "mm_from_mpp",
    "mm_from_resolution",
    "ome_declared_planes",
    "ome_pixel_metadata",
    "parse_color",
    "philips_mm",
    "qptiff_channel_name",
    "qptiff_image_type",
]

#: Fewer pixels per unit than this is a placeholder, not a scan resolution (large_image's rule).
MIN_PLAUSIBLE_PIXELS_PER_UNIT = 100


def mm_from_mpp(mpp_x: object, mpp_y: object = None) -> tuple[float | None, float | None]:
    """Convert micrometres per pixel (numbers or strings) to millimetres per pixel.

    A missing, non-numeric, zero or negative value gives ``None``. A missing ``mpp_y``
    copies ``mpp_x``.
    """
    x = _positive_float(mpp_x)
    y = _positive_float(mpp_y) if mpp_y is not None else x
    return (to_mm(x, "um") if x else None, to_mm(y, "um") if y else None)


def mm_from_resolution(
    unit: str | None, x_resolution: float | None, y_resolution: float | None
) -> tuple[float | None, float | None]:
    """Millimetres per pixel from TIFF resolution tags (pixels per ``unit``), only when plausible.

    Tags with no unit, or fewer than 100 pixels per unit, are placeholders written by
    software that did not know the pixel size and are ignored (as large_image does).

    Examples
    --------
    >>> mm_from_resolution("cm", 20000.0, 20000.0)
    (0.0005, 0.0005)
    >>> mm_from_resolution(None, 20000.0, 20000.0), mm_from_resolution("inch", 72.0, 72.0)
    ((None, None), (None, None))
    """
    if unit is None or length_unit(unit) is None:
        return None, None
    mm_per_unit = to_mm(1.0, unit)
    result = []
    for resolution in (x_resolution, y_resolution):
        value = _positive_float(resolution)
        plausible = value is not None and value >= MIN_PLAUSIBLE_PIXELS_PER_UNIT
        result.append(mm_per_unit / value if plausible and value else None)
    return result[0], result[1]


def aperio_fields(description: str) -> dict[str, str]:
    """Return the ``key = value`` fields of an Aperio ImageDescription.

    Examples
    --------
    >>> aperio_fields("Aperio Image Library v10\\r\\n2220x2967 (240x240) JPEG/RGB Q=70|AppMag = 20|MPP = 0.499")
    {'AppMag': '20', 'MPP': '0.499'}
    """
    fields = {}
    for part in description.split("|")[1:]:
        key, sep, value = part.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def magnification_or_derived(objective: object, mm_x: float | None) -> tuple[float | None, bool]:
    """Return ``(magnification, derived)``.

    The objective power from the file wins; without it, and with a known pixel size, the
    magnification is derived as ``0.01 / mm_x`` (10x is 1 µm per pixel) and ``derived`` is
    true; with neither, ``(None, False)``.
    """
    power = _positive_float(objective)
    if power is not None:
        return power, False
    if mm_x is not None:
        return 0.01 / mm_x, True
    return None, False


def _ome_namespace(root: ET.Element) -> tuple[dict[str, str], str]:
    """The OME namespace map and tag prefix of an OME-XML root (none in some old files)."""
    ns = {"ome": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
    return ns, "ome:" if ns else ""


def _ome_pixels(root: ET.Element) -> ET.Element | None:
    """The ``Pixels`` element of the first image."""
    ns, prefix = _ome_namespace(root)
    return root.find(f".//{prefix}Image/{prefix}Pixels", ns)


def ome_pixel_metadata(
    xml: str,
) -> tuple[float | None, float | None, float | None, tuple[str, ...]]:
    """Read ``(mm_x, mm_y, objective magnification, channel names)`` of an OME-XML's first image."""
    root = ET.fromstring(xml)
    ns, prefix = _ome_namespace(root)
    pixels = _ome_pixels(root)
    if pixels is None:
        return None, None, None, ()
    sizes = []
    for axis in "XY":
        value = _positive_float(pixels.get(f"PhysicalSize{axis}"))
        unit = pixels.get(f"PhysicalSize{axis}Unit", "µm")
        known = value is not None and length_unit(unit) is not None
        sizes.append(to_mm(value, unit) if known else None)  # type: ignore[arg-type]
    names = tuple(ch.get("Name") or "" for ch in pixels.findall(f"{prefix}Channel", ns))
    objective = root.find(f".//{prefix}Instrument/{prefix}Objective", ns)
    power = (
        _positive_float(objective.get("NominalMagnification")) if objective is not None else None
    )
    return sizes[0], sizes[1], power, names


#: An OME-XML ``Pixels`` start tag (any namespace prefix) and its plane sizes.
OME_PIXELS_TAG = re.compile(r"<(?:[\w.-]+:)?Pixels\s[^>]*>")
OME_PLANE_SIZE = re.compile(r"\bSize([ZCT])\s*=\s*[\"'](\d+)[\"']")


def ome_declared_planes(xml: str) -> int:
    """The planes (Z x C x T) an OME-XML's images declare, together; a size that is not a
    number counts as 1 (tifffile names it).

    A scan of the ``Pixels`` start tags, not a parse: it runs before tifffile's OME parse,
    which builds a list of that many pages, to bound it.

    Examples
    --------
    >>> ome_declared_planes('<OME><Image><Pixels SizeC="3" SizeZ="5" SizeT="2"/></Image></OME>')
    30
    """
    total = 0
    for tag in OME_PIXELS_TAG.findall(xml):
        sizes = dict(OME_PLANE_SIZE.findall(tag))
        total += math.prod(int(sizes.get(axis, 1)) for axis in "ZCT")
    return total


#: Seconds per OME time unit (TimeIncrementUnit; OME's default is "s").
SECONDS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}


def ome_plane_steps(xml: str) -> dict[str, tuple[float, str]]:
    """Steps between planes of an OME-XML's first image: ``{"z": (mm, "mm"), "t": (s, "s")}``.

    Only steps the XML states in a known unit are given (``PhysicalSizeZ``, ``TimeIncrement``).
    """
    pixels = _ome_pixels(ET.fromstring(xml))
    if pixels is None:
        return {}
    steps = {}
    z = _positive_float(pixels.get("PhysicalSizeZ"))
    z_unit = pixels.get("PhysicalSizeZUnit", "µm")
    if z is not None and length_unit(z_unit) is not None:
        steps["z"] = (to_mm(z, z_unit), "mm")
    t = _positive_float(pixels.get("TimeIncrement"))
    t_unit = pixels.get("TimeIncrementUnit", "s")
    if t is not None and t_unit in SECONDS:
        steps["t"] = (t * SECONDS[t_unit], "s")
    return steps


def qptiff_channel_name(description: str) -> str | None:
    """Return the channel ``Name`` from one page's PerkinElmer QPTIFF XML description."""
    match = re.search(r"<Name>([^<]*)</Name>", description)
    return match.group(1).strip() if match else None


def qptiff_image_type(description: str) -> str | None:
    """Return the ``ImageType`` (``FullResolution``, ``ReducedResolution``, ``Thumbnail``, ...)
    from one page's PerkinElmer QPTIFF XML description."""
    match = re.search(r"<ImageType>([^<]*)</ImageType>", description)
    return match.group(1).strip() if match else None


def philips_mm(xml: str) -> tuple[float | None, float | None]:
    """Millimetres per pixel of level 0 from a Philips TIFF's DICOM_PIXEL_SPACING attribute.

    Philips writes ``"row spacing" "column spacing"`` in mm; the first occurrence is level 0.
    """
    match = re.search(r'Name="DICOM_PIXEL_SPACING"[^>]*>([^<]*)<', xml)
    if not match:
        return None, None
    values = [_positive_float(v) for v in re.findall(r'"([^"]+)"', match.group(1))]
    if len(values) < 2:
        return None, None
    return values[1], values[0]


def parse_color(
    value: str | None, default: tuple[int, int, int] = (255, 255, 255)
) -> tuple[int, int, int]:
    """Parse ``"RRGGBB"`` or ``"#RRGGBB"`` into an RGB tuple; anything else gives ``default``."""
    text = (value or "").lstrip("#")
    if not re.fullmatch(r"[0-9a-fA-F]{6}", text):
        return default
    return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))


def _positive_float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None
