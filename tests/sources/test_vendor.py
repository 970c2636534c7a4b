"""Pure metadata parsers: exact numbers."""

from __future__ import annotations

import pytest

from wsiarray.sources import _vendor


@pytest.mark.parametrize(
    ("unit", "xres", "yres", "expected"),
    [
        ("cm", 43826.0, 43826.0, (10 / 43826, 10 / 43826)),  # NDPI: pixels per cm
        ("inch", 50800.0, 25400.0, (0.0005, 0.001)),  # pixels per inch
        ("inch", 72.0, 72.0, (None, None)),  # a screen's dpi: not a scan resolution
        ("cm", 99.0, 100.0, (None, 0.1)),  # the 100-per-unit threshold, per axis
        ("pixel", 50000.0, 50000.0, (None, None)),  # not a length
        (None, 50000.0, 50000.0, (None, None)),  # no unit
        ("cm", 0.0, None, (None, None)),
    ],
)
def test_mm_from_resolution(unit, xres, yres, expected) -> None:
    assert _vendor.mm_from_resolution(unit, xres, yres) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("mpp", "expected"),
    [
        ("0.499", (0.000499, 0.000499)),
        (0.25, (0.00025, 0.00025)),
        ("", (None, None)),
        ("0", (None, None)),
        ("nan", (None, None)),
        (None, (None, None)),
    ],
)
def test_mm_from_mpp(mpp, expected) -> None:
    assert _vendor.mm_from_mpp(mpp) == pytest.approx(expected)


def test_magnification_or_derived() -> None:
    assert _vendor.magnification_or_derived("20", 0.0005) == (20.0, False)
    assert _vendor.magnification_or_derived(None, 0.0005) == (pytest.approx(20.0), True)
    assert _vendor.magnification_or_derived("bogus", None) == (None, False)


def test_aperio_fields() -> None:
    description = (
        "Aperio Image Library v10.0.51\r\n46920x33014 [0,100 46000x32914] (256x256) JPEG/RGB Q=30"
        "|AppMag = 20|StripeWidth = 2040|MPP = 0.4990|Filename = CMU-1|Title = a=b"
    )
    fields = _vendor.aperio_fields(description)
    assert fields["AppMag"] == "20"
    assert fields["MPP"] == "0.4990"
    assert fields["Title"] == "a=b"
    assert _vendor.aperio_fields("no fields here") == {}


OME = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
  <Instrument ID="Instrument:0"><Objective ID="Objective:0" NominalMagnification="40.0"/></Instrument>
  <Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="10" SizeY="10"
      SizeC="2" SizeZ="1" SizeT="1" PhysicalSizeX="250" PhysicalSizeXUnit="nm" PhysicalSizeY="0.26">
    <Channel ID="Channel:0:0" Name="DAPI"/><Channel ID="Channel:0:1" Name="CD8"/>
  </Pixels></Image>
</OME>"""


def test_ome_pixel_metadata() -> None:
    mm_x, mm_y, power, names = _vendor.ome_pixel_metadata(OME)
    assert mm_x == pytest.approx(0.00025)  # 250 nm
    assert mm_y == pytest.approx(0.00026)  # µm by default
    assert power == 40.0
    assert names == ("DAPI", "CD8")


def test_philips_mm() -> None:
    xml = (
        '<DataObject ObjectType="DPUfsImport"><Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" '
        'Element="0x0030" PMSVR="IStringArray">&quot;0.000243&quot; &quot;0.000242&quot;</Attribute>'
    ).replace("&quot;", '"')
    assert _vendor.philips_mm(xml) == pytest.approx((0.000242, 0.000243))
    assert _vendor.philips_mm("<x/>") == (None, None)


def test_qptiff_channel_name() -> None:
    assert (
        _vendor.qptiff_channel_name("<PerkinElmer-QPI-ImageDescription><Name>DAPI</Name>") == "DAPI"
    )
    assert _vendor.qptiff_channel_name("<x/>") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FFFFFF", (255, 255, 255)),
        ("#102030", (16, 32, 48)),
        (None, (255, 255, 255)),
        ("red", (255, 255, 255)),
    ],
)
def test_parse_color(text, expected) -> None:
    assert _vendor.parse_color(text) == expected
