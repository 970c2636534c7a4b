"""large_image's own test fixtures, read by wsiarray (issue 12: files made by other tools).

The files in ``tests/data/fixtures`` are copied byte for byte from the girder/large_image
repository (Apache-2.0; origin, commit, sizes and hashes in that folder's README.md). Each file
has one row in :data:`EXPECTED`, written by hand from what the file is (tifffile's tags,
libpng's decode) and from what OpenSlide reports, never from wsiarray's own output:

* a file wsiarray opens: the reader and format, every level's shape, dtype and band names,
  OpenSlide's ``level_dimensions`` (or that OpenSlide refuses the file), and the pixels of
  windows off the origin that cross a tile (strip, chunk) border and reach the far edge, on
  every level, against an independent decode: tifffile's decode of the level's page (turned
  upright with Pillow's ``ImageOps.exif_transpose`` where the TIFF has an Orientation tag),
  libvips' (pyvips) for PNG. Not Pillow: Pillow keeps only the high byte of 16-bit RGB and
  grey+alpha PNGs and drops an RGB PNG's colour key; nor libpng through imagecodecs, which is
  how the pil reader decodes PNG since these fixtures found those defects;
* a file wsiarray refuses: the wsiarray error and the words of its message.

A case that shows a wsiarray defect is an ``xfail(strict=True)`` naming the defect; the row keeps
the correct expectation, so a fix turns the case into an XPASS that asks for the mark to go.

OpenSlide's own fixtures (openslide-python ``tests/fixtures``: boxes.tiff, small.svs,
unopenable.tiff, unreadable.svs, boxes_0/1.dcm, ...) are LGPL-2.1 with no notice of their own,
so they are not copied here; see the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

import wsiarray as wa

openslide = pytest.importorskip("openslide")
pyvips = pytest.importorskip(
    "pyvips", reason="pyvips (a test dependency) decodes the PNG references"
)

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"

#: Rows and columns of the pil reader's chunks: a window across 1024 crosses a chunk border.
PNG_CHUNK = 1024

WindowT = tuple[int, int, int, int]  # left, top, width, height in pixels of the level


@dataclass(frozen=True)
class Opens:
    """What a file wsiarray opens must give."""

    reader: str
    format: str
    #: (height, width) of every level as served: upright, i.e. after the TIFF Orientation.
    shapes: tuple[tuple[int, int], ...]
    dtype: str
    channels: tuple[str, ...]
    #: OpenSlide's ``level_dimensions`` ((width, height) per level); None: OpenSlide refuses.
    openslide: tuple[tuple[int, int], ...] | None
    #: "tifffile" (the level's page decode) or "png" (libpng).
    reference: str
    #: The TIFF Orientation tag (274) as stored; 5-8 swap rows and columns.
    orientation: int = 1
    #: Why the shapes differ from OpenSlide's, where they do.
    openslide_note: str = ""
    #: test name -> reason, for the cases that show a wsiarray defect.
    xfail: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refused:
    """A file wsiarray refuses at open: the error type and phrases of its message."""

    error: type[Exception]
    phrases: tuple[str, ...]
    openslide_refuses: bool = True


ORIENT_OPENSLIDE = ((120, 180), (60, 90), (30, 45))
ORIENT_UPRIGHT = ((180, 120), (90, 60), (45, 30))
ORIENT_TURNED = ((120, 180), (60, 90), (30, 45))
TURNED_NOTE = (
    "Orientation 5-8 swap the axes: wsiarray serves the pyramid upright (120 x 180 rows x "
    "columns); OpenSlide ignores the tag and reports the stored 120 x 180 columns x rows"
)

EXPECTED: dict[str, Opens | Refused] = {
    # --- TIFF ---------------------------------------------------------------------------------
    # RGB uint8, uncompressed strips of 7 rows, a GeoTIFF (no pyramid): OpenSlide wants tiles.
    "global_dem.tif": Opens(
        "tifffile", "generic-tiff", ((180, 360),), "uint8", ("R", "G", "B"), None, "tifffile"
    ),
    # Grey uint8, 10000 x 5000, deflate strips of 64 rows.
    "grey10kx5k.tif": Opens(
        "tifffile", "generic-tiff", ((5000, 10000),), "uint8", ("L",), None, "tifffile"
    ),
    # RGB uint16, uncompressed strips of 5 rows.
    "rgb_geotiff.tiff": Opens(
        "tifffile", "generic-tiff", ((256, 256),), "uint16", ("R", "G", "B"), None, "tifffile"
    ),
    # RGBA (ExtraSamples: unassociated alpha) uint8, LZW + predictor, 512-px tiles, 2 pages.
    "rgba_geotiff.tiff": Opens(
        "tifffile",
        "generic-tiff",
        ((600, 600), (300, 300)),
        "uint8",
        ("R", "G", "B", "A"),
        ((600, 600), (300, 300)),
        "tifffile",
    ),
    # 2 x 1 pixels, 2 samples MINISBLACK, JPEG in a 256-px tile, *no* ExtraSamples tag: the
    # second band is not declared alpha, so C0, C1 (large_image calls the file "LA").
    "small_la.tiff": Opens(
        "tifffile", "generic-tiff", ((1, 2),), "uint8", ("C0", "C1"), ((2, 1),), "tifffile"
    ),
    # RGB uint8, zstd, 1024-px tiles, 5 pages; the last is 625 x 312 (downsample 16.0128).
    "yb10kx5k.zstd.tiff": Opens(
        "tifffile",
        "generic-tiff",
        ((5000, 10000), (2500, 5000), (1250, 2500), (625, 1250), (312, 625)),
        "uint8",
        ("R", "G", "B"),
        ((10000, 5000), (5000, 2500), (2500, 1250), (1250, 625), (625, 312)),
        "tifffile",
    ),
    # Grey JPEG, 64-px tiles, 3 pages of 120 x 180 (w x h) stored, Orientation 0..8. 0 is not a
    # valid value: served as stored (tifffile logs "0 is not a valid ORIENTATION").
    **{
        f"test_orient{o}.tif": Opens(
            "tifffile",
            "generic-tiff",
            ORIENT_TURNED if o >= 5 else ORIENT_UPRIGHT,
            "uint8",
            ("L",),
            ORIENT_OPENSLIDE,
            "tifffile",
            orientation=o,
            openslide_note=TURNED_NOTE if o >= 5 else "",
        )
        for o in range(9)
    },
    # 0 rows: damaged, refused at open naming the declared size, and offered to no other
    # reader (OpenSlide: unsupported format).
    "zero_gi.tif": Refused(
        wa.DamagedFileError,
        (
            "zero_gi.tif: image directory 0 declares a 2 x 0 image (ImageWidth x ImageLength)",
            "so the file is damaged",
        ),
    ),
    # --- PNG (OpenSlide reads no PNG) -----------------------------------------------------------
    "test_L_8.png": Opens("pil", "png", ((64, 64),), "uint8", ("L",), None, "png"),
    "test_L_16.png": Opens("pil", "png", ((64, 64),), "uint16", ("L",), None, "png"),
    "test_LA_8.png": Opens("pil", "png", ((64, 64),), "uint8", ("L", "A"), None, "png"),
    "test_LA_16.png": Opens(
        "pil",
        "png",
        ((64, 64),),
        "uint16",
        ("L", "A"),
        None,
        "png",
    ),
    "test_RGB_8.png": Opens("pil", "png", ((64, 64),), "uint8", ("R", "G", "B"), None, "png"),
    "test_RGB_16.png": Opens(
        "pil",
        "png",
        ((64, 64),),
        "uint16",
        ("R", "G", "B"),
        None,
        "png",
    ),
    "test_RGBA_8.png": Opens("pil", "png", ((64, 64),), "uint8", ("R", "G", "B", "A"), None, "png"),
    "test_RGBA_16.png": Opens(
        "pil",
        "png",
        ((64, 64),),
        "uint16",
        ("R", "G", "B", "A"),
        None,
        "png",
    ),
    # 8-bit RGB with a tRNS colour key (1, 1, 1): 17664 of its 65536 pixels are transparent.
    "geotiff_9_89_207.png": Opens(
        "pil",
        "png",
        ((256, 256),),
        "uint8",
        ("R", "G", "B", "A"),
        None,
        "png",
    ),
    # Palette with a tRNS entry (index 0 transparent).
    "geotiff_style_7_22_51.png": Opens(
        "pil", "png", ((256, 256),), "uint8", ("R", "G", "B", "A"), None, "png"
    ),
    # 10000 x 5000 palette PNGs without / with tRNS.
    "yb10kx5k.png": Opens("pil", "png", ((5000, 10000),), "uint8", ("R", "G", "B"), None, "png"),
    "yb10kx5ktrans.png": Opens(
        "pil", "png", ((5000, 10000),), "uint8", ("R", "G", "B", "A"), None, "png"
    ),
    # --- not slides -----------------------------------------------------------------------------
    "notanimage.txt": Refused(
        wa.UnsupportedFormatError,
        (
            "notanimage.txt is not a slide any reader can open (first bytes b'This is ')",
            "tifffile: does not recognise the content",
            "pil: does not recognise the content",
        ),
    ),
    # A zipped zarr v2 store written by large_image (y, x, s axes, float32): wsiarray's zarr
    # reader takes stores as folders, and would refuse this one's axes (channel last) too.
    "sample_float32_8bit_range.zarr.zip": Refused(
        wa.UnsupportedFormatError,
        ("is not a slide any reader can open (first bytes b'PK", "zarr: does not recognise"),
    ),
}

OPENS = [name for name, row in EXPECTED.items() if isinstance(row, Opens)]
REFUSED = [name for name, row in EXPECTED.items() if isinstance(row, Refused)]


def _xfail(request: pytest.FixtureRequest, row: Opens, test: str) -> None:
    if test in row.xfail:
        request.applymarker(
            pytest.mark.xfail(strict=True, raises=AssertionError, reason=row.xfail[test])
        )


def _reference_levels(path: Path, row: Opens) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Every level's independent decode (rows, columns, bands) and its tile (rows, columns)."""
    if row.reference == "png":
        # libvips' decode: the pil reader decodes PNG with libpng through imagecodecs
        pixels = np.asarray(pyvips.Image.new_from_file(str(path)))
        return [(pixels.reshape(*pixels.shape[:2], -1), (PNG_CHUNK, PNG_CHUNK))]
    levels = []
    with tifffile.TiffFile(path) as tif:
        for level in tif.series[0].levels:
            page = level.keyframe
            orientation = page.tags.get(274)
            assert (orientation.value if orientation else 1) == row.orientation
            pixels = level.asarray()
            tile = (page.tilelength or page.rowsperstrip, page.tilewidth or page.imagewidth)
            if row.orientation in range(2, 9):
                pixels = _upright(pixels, row.orientation)
            if row.orientation >= 5:
                tile = (tile[1], tile[0])
            levels.append((pixels.reshape(*pixels.shape[:2], -1), tile))
    return levels


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Pillow's reading of an EXIF orientation applied to a grey image."""
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[274] = orientation
    image.info["exif"] = exif.tobytes()
    upright = np.asarray(ImageOps.exif_transpose(image))
    assert not np.array_equal(upright, pixels)  # Pillow did turn it
    return upright


def _windows(height: int, width: int, tile: tuple[int, int]) -> list[WindowT]:
    """A window across the first interior tile border (or off the origin inside one tile), and
    one from mid-level to the far corner."""
    tile_h, tile_w = tile
    top = tile_h - 3 if height > tile_h else height // 3
    left = tile_w - 5 if width > tile_w else max(1, width // 3)
    first = (left, top, min(tile_w + 11, width - left), min(tile_h + 9, height - top))
    top, left = max(1, height - tile_h - 7), max(1, width - tile_w - 6)
    last = (left, top, width - left, height - top)
    return [first, last] if height > 1 and width > 1 else [first]


@pytest.mark.parametrize("name", OPENS)
def test_levels(name: str) -> None:
    row = EXPECTED[name]
    assert isinstance(row, Opens)
    slide = wa.open(FIXTURES / name)
    assert (slide.metadata.reader, slide.metadata.format) == (row.reader, row.format)
    assert slide.level_shapes == row.shapes


@pytest.mark.compat
@pytest.mark.parametrize("name", OPENS)
def test_levels_against_openslide(name: str) -> None:
    row = EXPECTED[name]
    assert isinstance(row, Opens)
    if row.openslide is None:
        with pytest.raises(openslide.OpenSlideUnsupportedFormatError):
            openslide.OpenSlide(FIXTURES / name)
        return
    with openslide.OpenSlide(FIXTURES / name) as osr:
        assert osr.level_dimensions == row.openslide
    as_openslide = tuple((h, w) if row.openslide_note else (w, h) for h, w in row.shapes)
    assert as_openslide == row.openslide, row.openslide_note


@pytest.mark.parametrize("name", OPENS)
def test_bands(request: pytest.FixtureRequest, name: str) -> None:
    row = EXPECTED[name]
    assert isinstance(row, Opens)
    _xfail(request, row, "bands")
    slide = wa.open(FIXTURES / name)
    assert (slide.metadata.dtype, slide.metadata.channels) == (row.dtype, row.channels)


@pytest.mark.parametrize("name", OPENS)
def test_pixels(request: pytest.FixtureRequest, name: str) -> None:
    row = EXPECTED[name]
    assert isinstance(row, Opens)
    _xfail(request, row, "pixels")
    slide = wa.open(FIXTURES / name)
    references = _reference_levels(FIXTURES / name, row)
    assert len(references) == len(row.shapes)
    for level, (reference, tile) in enumerate(references):
        assert reference.shape[:2] == row.shapes[level]
        for left, top, width, height in _windows(*reference.shape[:2], tile):
            assert (left, top) != (0, 0)
            np.testing.assert_array_equal(
                slide.read(left, top, width, height, level=level),
                reference[top : top + height, left : left + width],
                err_msg=f"{name} level {level} window {(left, top, width, height)}",
                strict=True,
            )


#: OpenSlide's read_region as a second reference where its pixels are the stored ones: levels
#: at a whole downsample of files whose Orientation it agrees with (it ignores the tag).
#: rgba_geotiff.tiff: OpenSlide premultiplies alpha, so only opaque pixels keep their colour.
OPENSLIDE_PIXELS = {
    "rgba_geotiff.tiff": (0, 1),
    "small_la.tiff": (0,),
    "test_orient0.tif": (0, 1, 2),
    "test_orient1.tif": (0, 1, 2),
    "yb10kx5k.zstd.tiff": (0, 1, 2, 3),
}


@pytest.mark.compat
@pytest.mark.parametrize("name", list(OPENSLIDE_PIXELS))
def test_pixels_against_openslide(name: str) -> None:
    slide = wa.open(FIXTURES / name)
    with openslide.OpenSlide(FIXTURES / name) as osr:
        for level in OPENSLIDE_PIXELS[name]:
            downsample = int(osr.level_downsamples[level])
            assert downsample == osr.level_downsamples[level]
            width, height = osr.level_dimensions[level]
            left, top = min(37, width - 1), min(41, height - 1)
            size = (min(100, width - left), min(90, height - top))
            theirs = np.asarray(osr.read_region((left * downsample, top * downsample), level, size))
            ours = slide.read(left, top, *size, level=level)
            bands = ours.shape[2]
            if bands == 1:  # grey: OpenSlide gives it as R = G = B
                theirs = theirs[..., :1]
            elif bands == 2:  # grey + a second band: libtiff's RGBA reading of it
                theirs = theirs[..., [0, 3]]
            elif bands == 3:
                theirs = theirs[..., :3]
            opaque = ours[..., 3] == 255 if bands == 4 else np.ones(ours.shape[:2], bool)
            assert opaque.sum() >= 1000 or bands != 4
            np.testing.assert_array_equal(ours[opaque], theirs[opaque], err_msg=f"level {level}")


@pytest.mark.parametrize("name", REFUSED)
def test_refused(name: str) -> None:
    row = EXPECTED[name]
    assert isinstance(row, Refused)
    with pytest.raises(row.error) as caught:
        wa.open(FIXTURES / name)
    assert type(caught.value) is row.error
    for phrase in row.phrases:
        assert phrase in str(caught.value)
    if row.openslide_refuses:
        with pytest.raises(openslide.OpenSlideUnsupportedFormatError):
            openslide.OpenSlide(FIXTURES / name)


def test_every_fixture_has_a_row() -> None:
    files = {p.name for p in FIXTURES.iterdir() if p.name != "README.md"}
    files -= {"LICENSE-large_image"}
    assert files == set(EXPECTED)
