"""The DICOM reader on TILED_SPARSE instances: stored tiles in place, missing ones background.

No series of the test data is TILED_SPARSE, so the ``sparse`` fixture makes two, in a
temporary folder (nothing is committed), from highdicom's TILED_FULL test files
(tests/data/highdicom: 50 x 50 pixels in 5 x 5 tiles of 10 px, uncompressed, explicit VR
little endian): ``sm_image.dcm`` (8-bit RGB) and ``sm_image_grayscale.dcm`` (16-bit
MONOCHROME2). How each is made, with pydicom alone (:func:`_make_sparse`):

* the frames (TILED_FULL: tile ``(row, column)`` is frame ``row * 5 + column``) are cut out
  of the uncompressed Pixel Data; those of tiles (row 1, column 2), (3, 0) and (4, 4) are
  dropped, the 22 others kept in a shuffled order (``numpy.random.default_rng(12)``; the
  standard lets the frames of a sparse image come in any order);
* DimensionOrganizationType ``TILED_SPARSE``, NumberOfFrames 22, and one
  PerFrameFunctionalGroupsSequence item per frame (DICOM PS3.3 C.8.12.4 and the WSI
  IOD's functional groups, which a TILED_FULL image may leave out): a Frame Content item
  whose DimensionIndexValues are the 1-based (tile row, tile column), the order of the
  file's Dimension Index Sequence (Row, then Column Position In Total Image Pixel Matrix),
  and a Plane Position (Slide) item: Column/RowPositionInTotalImagePixelMatrix
  (1-based pixel position of the tile's top left pixel: ``10 * column + 1``,
  ``10 * row + 1``), X/YOffsetInSlideCoordinateSystem of that pixel (mm: the
  TotalPixelMatrixOriginSequence's offsets plus the pixel offsets along the
  ImageOrientationSlide direction cosines times the shared PixelSpacing) and
  ZOffsetInSlideCoordinateSystem 0 (µm; the files state one focal plane and no offset);
  wsidicom 0.36 reads the column and row positions (its ``parse_frame_positions``: the tile
  is ``(position - 1) // tile size``), the z offset and the optical path identification
  (none here: the instance's one path applies). The slide offsets were checked, while this
  test was written, against highdicom 0.28.2's ``compute_plane_position_slide_per_frame`` of
  the TILED_FULL originals: equal for every tile;
* a Plane Position (Slide) in the SharedFunctionalGroupsSequence would be removed (the
  originals have none); new SOPInstanceUID (also in the file meta) and SeriesInstanceUID
  (the files must not pass for the originals' series); everything else is kept.

No independent writer is used: highdicom 0.28.2 writes no VL Whole Slide Microscopy image
(it has no ``highdicom.sm`` module), and wsidicom's ``save`` writes TILED_FULL only (it fills
a sparse source's missing tiles with its blank tile).

Each file is read by wsiarray and compared with the TILED_FULL original as pydicom decodes
it (outside the dropped tiles), with the background in the dropped tiles, with wsidicom's
own ``read_region`` and, for the RGB file, with OpenSlide (which does not read 16-bit
samples: "BitsAllocated value 16 != 8").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import wsiarray as wa
from wsiarray.sources.dicom_ import DicomSource

wsidicom = pytest.importorskip("wsidicom")
pydicom = pytest.importorskip("pydicom")

DATA = Path(__file__).parents[1] / "data" / "highdicom"
#: (tile row, tile column) of the tiles the sparse files do not store
DROPPED = ((1, 2), (3, 0), (4, 4))
SEED = 12
TILE = 10
#: name: (original file, dtype, background wsiarray's docs promise)
FILES = {
    "rgb": ("sm_image.dcm", "uint8", 255),
    "grey": ("sm_image_grayscale.dcm", "uint16", 0),
}
#: DicomSource's docstring, on the tiles a sparse instance does not store
PROMISE = (
    "Tiles that a TILED_SPARSE instance does not store read as wsidicom's blank tile, the "
    "background: white for colour series, 0 for MONOCHROME2 (fluorescence)."
)


@dataclass(frozen=True)
class Sparse:
    """A sparse file made by the fixture and what it should read as."""

    path: Path
    original: np.ndarray  # (50, 50, samples): the TILED_FULL original, pydicom's decode
    dropped: np.ndarray  # (50, 50) bool: True in the tiles the sparse file does not store
    order: tuple[tuple[int, int], ...]  # (tile row, tile column) of each stored frame


def _full_image(dataset: pydicom.Dataset) -> np.ndarray:
    """A TILED_FULL instance's total pixel matrix from pydicom's frames (row-major tiles)."""
    frames = dataset.pixel_array.reshape(int(dataset.NumberOfFrames), TILE, TILE, -1)
    down = dataset.TotalPixelMatrixRows // TILE
    across = dataset.TotalPixelMatrixColumns // TILE
    tiles = frames.reshape(down, across, TILE, TILE, -1)
    return tiles.transpose(0, 2, 1, 3, 4).reshape(down * TILE, across * TILE, -1)


def _make_sparse(source: Path, target: Path) -> Sparse:
    """Write ``source`` (TILED_FULL, uncompressed) without the DROPPED tiles as TILED_SPARSE."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid
    from pydicom.valuerep import DSfloat

    dataset = pydicom.dcmread(source)
    assert dataset.DimensionOrganizationType == "TILED_FULL"
    assert not dataset.file_meta.TransferSyntaxUID.is_compressed
    assert (dataset.Rows, dataset.Columns) == (TILE, TILE)
    assert (dataset.TotalPixelMatrixRows, dataset.TotalPixelMatrixColumns) == (50, 50)
    original = _full_image(dataset)
    across = dataset.TotalPixelMatrixColumns // TILE
    size = TILE * TILE * dataset.SamplesPerPixel * dataset.BitsAllocated // 8
    data = bytes(dataset.PixelData)
    count = int(dataset.NumberOfFrames)
    assert len(data) >= count * size
    frames = {divmod(i, across): data[i * size : (i + 1) * size] for i in range(count)}
    kept = [tile for tile in frames if tile not in DROPPED]
    order = tuple(kept[i] for i in np.random.default_rng(SEED).permutation(len(kept)))

    origin = dataset.TotalPixelMatrixOriginSequence[0]
    x0 = float(origin.XOffsetInSlideCoordinateSystem)
    y0 = float(origin.YOffsetInSlideCoordinateSystem)
    # first triplet: along a row (increasing column); second: down a column (increasing row)
    cosines = [float(v) for v in dataset.ImageOrientationSlide]
    shared = dataset.SharedFunctionalGroupsSequence[0]
    # PixelSpacing: between rows (vertical), then between columns (horizontal), in mm
    row_spacing, column_spacing = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    items = []
    for row, column in order:
        top, left = row * TILE, column * TILE  # 0-based pixel offsets of the tile
        position = Dataset()
        position.ColumnPositionInTotalImagePixelMatrix = left + 1
        position.RowPositionInTotalImagePixelMatrix = top + 1
        position.XOffsetInSlideCoordinateSystem = DSfloat(
            x0 + cosines[0] * left * column_spacing + cosines[3] * top * row_spacing,
            auto_format=True,
        )
        position.YOffsetInSlideCoordinateSystem = DSfloat(
            y0 + cosines[1] * left * column_spacing + cosines[4] * top * row_spacing,
            auto_format=True,
        )
        position.ZOffsetInSlideCoordinateSystem = DSfloat(0.0, auto_format=True)
        content = Dataset()
        content.DimensionIndexValues = [row + 1, column + 1]
        item = Dataset()
        item.FrameContentSequence = [content]
        item.PlanePositionSlideSequence = [position]
        items.append(item)
    dataset.PerFrameFunctionalGroupsSequence = items
    if "PlanePositionSlideSequence" in shared:
        del shared.PlanePositionSlideSequence
    dataset.DimensionOrganizationType = "TILED_SPARSE"
    dataset.NumberOfFrames = len(order)
    dataset.PixelData = b"".join(frames[tile] for tile in order)
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    target.parent.mkdir(parents=True)
    dataset.save_as(target)

    dropped = np.zeros(original.shape[:2], bool)
    for row, column in DROPPED:
        dropped[row * TILE : (row + 1) * TILE, column * TILE : (column + 1) * TILE] = True
    return Sparse(target, original, dropped, order)


@pytest.fixture(scope="module")
def sparse(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sparse]:
    """``{name: Sparse}``: the TILED_SPARSE copies of FILES, each in a folder of its own."""
    root = tmp_path_factory.mktemp("dicom-sparse")
    return {
        name: _make_sparse(DATA / source, root / name / f"sparse-{source}")
        for name, (source, _, _) in FILES.items()
    }


@pytest.mark.parametrize("name", FILES)
def test_the_files_are_what_the_test_means(name, sparse) -> None:
    """Guards: the file is TILED_SPARSE with shuffled frames, wsidicom finds exactly the
    dropped tiles missing, and the original's dropped tiles are not already background."""
    made = sparse[name]
    dataset = pydicom.dcmread(made.path)
    assert dataset.DimensionOrganizationType == "TILED_SPARSE"
    assert int(dataset.NumberOfFrames) == 25 - len(DROPPED) == len(made.order)
    assert list(made.order) != sorted(made.order)
    positions = [
        (
            int(item.PlanePositionSlideSequence[0].RowPositionInTotalImagePixelMatrix),
            int(item.PlanePositionSlideSequence[0].ColumnPositionInTotalImagePixelMatrix),
        )
        for item in dataset.PerFrameFunctionalGroupsSequence
    ]
    assert positions == [(r * TILE + 1, c * TILE + 1) for r, c in made.order]
    assert "PlanePositionSlideSequence" not in dataset.SharedFunctionalGroupsSequence[0]
    original = pydicom.dcmread(DATA / FILES[name][0])
    assert dataset.SeriesInstanceUID != original.SeriesInstanceUID
    assert dataset.SOPInstanceUID != original.SOPInstanceUID

    from wsidicom.geometry import Point

    with wsidicom.WsiDicom.open(made.path.parent) as wsi:
        image_data = wsi.pyramid.base_level.default_instance.image_data
        path = wsi.pyramid.base_level.optical_paths[0]
        missing = {
            (row, column)
            for row in range(5)
            for column in range(5)
            if image_data.is_sparse(Point(column, row), 0.0, path)
        }
    assert missing == set(DROPPED)
    background = FILES[name][2]
    for row, column in DROPPED:
        tile = made.original[row * TILE : (row + 1) * TILE, column * TILE : (column + 1) * TILE]
        assert (tile != background).any()


def test_the_promised_background_is_the_documented_one() -> None:
    """The values FILES expects are those DicomSource's docstring promises."""
    assert PROMISE in " ".join((DicomSource.__doc__ or "").split())
    assert FILES["rgb"][2] == 255  # "white for colour series", uint8
    assert FILES["grey"][2] == 0  # "0 for MONOCHROME2"


@pytest.mark.parametrize("name", FILES)
def test_opens_with_the_dicom_reader(name, sparse) -> None:
    _, dtype, background = FILES[name]
    with wa.open(sparse[name].path) as slide:
        assert slide.metadata.reader == "dicom"
        assert slide.level_shapes == ((50, 50),)
        assert slide.metadata.dtype == dtype
        bands = len(slide.metadata.channels)
        assert bands == (3 if name == "rgb" else 1)
        assert slide.metadata.background == (background,) * bands
        assert slide.background_pixel == (background,) * bands
        assert slide.properties["dicom.SeriesInstanceUID"] == str(
            pydicom.dcmread(sparse[name].path).SeriesInstanceUID
        )


@pytest.mark.parametrize("name", FILES)
def test_stored_tiles_in_place_missing_tiles_background(name, sparse) -> None:
    made = sparse[name]
    _, dtype, background = FILES[name]
    with wa.open(made.path) as slide:
        pixels = slide.read(0, 0, 50, 50)
        assert pixels.dtype == dtype
        assert pixels.shape == made.original.shape
        # everywhere a tile is stored: the original's pixels, wherever its frame is in the file
        np.testing.assert_array_equal(pixels[~made.dropped], made.original[~made.dropped])
        # the dropped tiles: the background, which is also what the metadata says
        assert (pixels[made.dropped] == background).all()
        assert (pixels[made.dropped] == np.asarray(slide.metadata.background)).all()
        # a window off the origin across tile borders, and the lazy dask image in chunks of
        # two tiles (so chunks hold stored and missing tiles together)
        np.testing.assert_array_equal(slide.read(7, 3, 25, 21), pixels[3:24, 7:32])
        np.testing.assert_array_equal(slide.image(chunks=20).values, pixels)


@pytest.mark.parametrize("name", FILES)
def test_equals_wsidicoms_read_region(name, sparse) -> None:
    made = sparse[name]
    with wa.open(made.path) as slide:
        pixels = slide.read(0, 0, 50, 50)
    with wsidicom.WsiDicom.open(made.path.parent) as wsi:
        region = wsi.read_region((0, 0), 0, (50, 50))
    # wsidicom gives a PIL image: RGB for the colour file; for the 16-bit grey one Pillow's
    # mode "I" (int32) with the same values (wsiarray keeps uint16 and a channel axis)
    assert region.mode == ("RGB" if name == "rgb" else "I")
    ours = pixels.astype(np.int64).reshape(50, 50, -1)
    theirs = np.asarray(region).astype(np.int64).reshape(50, 50, -1)
    np.testing.assert_array_equal(ours, theirs)


def test_rgb_equals_openslide_composited_over_the_background(sparse) -> None:
    openslide = pytest.importorskip("openslide")
    made = sparse["rgb"]
    with wa.open(made.path) as slide:
        pixels = slide.read(0, 0, 50, 50)
        background = np.asarray(slide.metadata.background, np.uint8)
    other = openslide.OpenSlide(str(made.path))
    try:
        assert other.properties["dicom.DimensionOrganizationType"] == "TILED_SPARSE"
        assert other.level_dimensions == ((50, 50),)
        # OpenSlide states no background colour for DICOM (the property is absent) ...
        assert "openslide.background-color" not in other.properties
        rgba = np.asarray(other.read_region((0, 0), 0, (50, 50)))
    finally:
        other.close()
    alpha = rgba[..., 3]
    # ... and gives the missing tiles as transparent: alpha 0 (its premultiplied ARGB makes
    # the colour 0 too), stored tiles opaque and equal to wsiarray's pixels
    assert (alpha[made.dropped] == 0).all()
    assert (rgba[made.dropped][:, :3] == 0).all()
    assert (alpha[~made.dropped] == 255).all()
    np.testing.assert_array_equal(rgba[..., :3][~made.dropped], pixels[~made.dropped])
    # wsiarray serves RGB without alpha: OpenSlide's RGBA composited over wsiarray's
    # background (white) is wsiarray's pixels exactly
    weight = alpha[..., None].astype(np.uint16)
    over = (rgba[..., :3] * weight + background * (255 - weight)) // 255
    np.testing.assert_array_equal(over.astype(np.uint8), pixels)
    # wsiarray's own OpenSlide reader, which composites over the background, agrees
    with wa.open(made.path, reader="openslide") as by_openslide:
        assert by_openslide.metadata.reader == "openslide"
        assert by_openslide.metadata.background == (255, 255, 255)
        np.testing.assert_array_equal(by_openslide.read(0, 0, 50, 50), pixels)
