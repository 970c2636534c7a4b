"""Pyramids a lab makes with libvips from a real Aperio slide (issue 12, defect 2).

libvips copies the source's ImageDescription into the pyramid it writes, so a re-saved SVS
still says "Aperio Image Library" while its pages are libvips' plain tiled pyramid (or one
page with SubIFDs). The levels must come from the pages, as OpenSlide's do, not from what
the description makes tifffile's SVS parser expect (it called two levels "Thumbnail" and
"Label" and dropped the rest). References: OpenSlide's ``level_dimensions`` and tifffile's
own decode of each page through its structure-only ("generic") series.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile

import wsiarray as wa

pyvips = pytest.importorskip("pyvips")
openslide = pytest.importorskip("openslide")

CMU = "aperio/CMU-1-Small-Region.svs"
TCGA = "aperio/tcga-cr-7395-01a-01-ts1.svs"

#: What OpenSlide 4 does not read: levels in SubIFDs (it reports level 0 only).
SUBIFD_VARIANTS = {"subifd", "ome-subifd"}


@dataclass(frozen=True)
class Variant:
    """One ``tiffsave`` call: the source slide, how its pixels are changed, and the options."""

    source: str
    options: dict
    grey: bool = False
    ome: bool = False


VARIANTS = {
    "jpeg": Variant(CMU, {"compression": "jpeg"}),
    "subifd": Variant(CMU, {"compression": "jpeg", "subifd": True}),
    "deflate": Variant(CMU, {"compression": "deflate"}),
    "lzw": Variant(CMU, {"compression": "lzw"}),
    "bigtiff": Variant(CMU, {"compression": "jpeg", "bigtiff": True}),
    "grey": Variant(CMU, {"compression": "jpeg"}, grey=True),
    "q50": Variant(CMU, {"compression": "jpeg", "Q": 50}),
    # libvips does not decode Aperio's JPEG 2000: the pixels come from tifffile, the
    # description is set as libvips would copy it
    "tcga": Variant(TCGA, {"compression": "jpeg"}),
    "ome-subifd": Variant(CMU, {"compression": "jpeg", "subifd": True}, ome=True),
    # an OME-XML naming one image over libvips' chain of reduced pages
    "ome-chain": Variant(CMU, {"compression": "jpeg"}, ome=True),
}


def _ome_xml(width: int, height: int, bands: int) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
        f'<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="{width}" '
        f'SizeY="{height}" SizeC="{bands}" SizeZ="1" SizeT="1" Interleaved="true">'
        f'<Channel ID="Channel:0:0" SamplesPerPixel="{bands}"/>'
        '<TiffData IFD="0" PlaneCount="1"/></Pixels></Image></OME>'
    )


def _save(variant: Variant, source: Path, target: Path) -> None:
    if variant.source == TCGA:
        with tifffile.TiffFile(source) as tif:
            image = pyvips.Image.new_from_array(tif.pages.first.asarray(), interpretation="srgb")
            description = tif.pages.first.description
        image = image.copy()
        image.set_type(pyvips.GValue.gstr_type, "image-description", description)
    else:
        image = pyvips.Image.new_from_file(str(source))
    if variant.grey:
        image = image.colourspace("b-w")
    if variant.ome:
        image = image.copy()
        xml = _ome_xml(image.width, image.height, image.bands)
        image.set_type(pyvips.GValue.gstr_type, "image-description", xml)
    image.tiffsave(str(target), tile=True, pyramid=True, **variant.options)


@pytest.fixture(scope="session")
def libvips_pyramids(tmp_path_factory, real_slide) -> dict[str, Path]:
    """Every variant of :data:`VARIANTS`, written once per session."""
    folder = tmp_path_factory.mktemp("libvips")
    paths = {}
    for name, variant in VARIANTS.items():
        paths[name] = folder / f"{name}.{'ome.tif' if variant.ome else 'tif'}"
        _save(variant, real_slide(variant.source), paths[name])
    return paths


@pytest.mark.parametrize("name", list(VARIANTS))
def test_levels_are_the_files_pyramid(libvips_pyramids, name: str) -> None:
    path = libvips_pyramids[name]
    slide = wa.open(path)
    with tifffile.TiffFile(path) as tif:
        (structure,) = tif.series(kind="generic")
        pages = [level.shape[:2] for level in structure.levels]
    assert len(pages) > 4  # libvips halves down to one tile
    assert slide.level_shapes == tuple(pages)
    # no pyramid level is passed off as a thumbnail or label: libvips writes none
    assert slide.metadata.associated == ()
    reference = openslide.OpenSlide(path)
    assert list(reference.associated_images) == []
    os_shapes = tuple((h, w) for w, h in reference.level_dimensions)
    if name in SUBIFD_VARIANTS:
        assert os_shapes == tuple(pages[:1])  # OpenSlide does not read SubIFDs
    else:
        assert slide.level_shapes == os_shapes


@pytest.mark.parametrize("name", list(VARIANTS))
def test_pixels_are_tifffiles_decode_off_the_origin(libvips_pyramids, name: str) -> None:
    path = libvips_pyramids[name]
    slide = wa.open(path)
    with tifffile.TiffFile(path) as tif:
        (structure,) = tif.series(kind="generic")
        for level, series in enumerate(structure.levels):
            expected = series.asarray()
            expected = expected if expected.ndim == 3 else expected[..., np.newaxis]
            height, width = expected.shape[:2]
            top, left = height // 3 + 1, width // 3 + 1
            got = slide.read(left, top, 300, 200, level=level)
            np.testing.assert_array_equal(
                got, expected[top : top + 200, left : left + 300], err_msg=f"level {level}"
            )
