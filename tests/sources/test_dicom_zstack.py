"""The DICOM reader on z-stacks: a series whose levels hold several focal planes.

No series of the test data has more than one focal plane, so the ``stacks`` fixture makes
four, in a temporary folder (nothing is committed), from highdicom's TILED_FULL test files
(tests/data/highdicom: 50 x 50 pixels in 5 x 5 tiles of 10 px, uncompressed, explicit VR
little endian, one focal plane, one optical path): ``sm_image.dcm`` (8-bit RGB) and
``sm_image_grayscale.dcm`` (16-bit MONOCHROME2). Each holds 3 focal planes at z = 0, 1.5 and
3 µm (wsiarray: 0, 0.0015 and 0.003 mm):

* ``rgb`` and ``grey``: one TILED_FULL instance (level 0, 50 x 50) of each file;
* ``sparse``: the RGB file's level 0 as one TILED_SPARSE instance, frames of all planes
  shuffled together;
* ``pyramid``: the RGB file as two TILED_FULL instances, level 0 (50 x 50) and level 1
  (25 x 25, 3 x 3 tiles, the right and bottom tiles half filled), both with the 3 planes.

The pixels, as :func:`_planes` makes them from the original (pydicom's decode): plane ``k``
is the original rolled ``3 k`` rows down and ``7 k`` columns right, plus ``k * OFFSET``
(64 for uint8, 1000 for uint16), modulo 2**bits, kept in the file's dtype. The original
values (RGB 195-255, grey 0-24) put the three planes in disjoint value ranges, so every
pixel of a plane differs from the same pixel of the others. Level 1 of ``pyramid`` is every
second row and column of level 0, plane by plane.

How each instance is made, with pydicom alone (:func:`_make_instance`), and what wsidicom
0.36 needs to see the planes (read in its ``FullTileIndex``, ``SparseTileIndex`` and
``WsiDataset``):

* TotalPixelMatrixFocalPlanes 3 and NumberOfFrames 75 (level 1: 27). wsidicom checks a
  TILED_FULL instance's NumberOfFrames against tiles x TotalPixelMatrixFocalPlanes x
  NumberOfOpticalPaths (``WsiDataset.image_size``).
* TILED_FULL: the frames in the standard's order for Dimension Organization Type
  TILED_FULL (DICOM PS3.3): tiles row-major within a focal plane, focal planes one after
  another within the (only) optical path: frame ``k * 25 + row * 5 + column``. wsidicom's
  ``FullTileIndex`` places plane ``k`` at z = ``z_offset + k * SpacingBetweenSlices * 1000``
  µm, with SpacingBetweenSlices (mm) from the Pixel Measures item of the
  SharedFunctionalGroupsSequence (0.0015 here; it refuses several planes without it) and
  z_offset from a ZOffsetInSlideCoordinateSystem of the TotalPixelMatrixOriginSequence item
  or of a shared Plane Position (Slide) item, 0 when neither states one (none does here: the
  originals state none, and the origin sequence of the standard holds x and y only).
  NumberOfFocalPlanes / DistanceBetweenFocalPlanes are not it: they describe the planes an
  extended-depth-of-field image was combined from (wsidicom reads them only when
  ExtendedDepthOfField is YES; the originals say NO).
* TILED_SPARSE (``sparse``): the 75 frames in a shuffled order
  (``numpy.random.default_rng(SEED)``), DimensionOrganizationType TILED_SPARSE and one
  PerFrameFunctionalGroupsSequence item per frame: Frame Content DimensionIndexValues
  (1-based tile row, tile column, focal plane; a third Dimension Index Sequence item points
  at ZOffsetInSlideCoordinateSystem in the Plane Position (Slide) sequence) and Plane
  Position (Slide): Column/RowPositionInTotalImagePixelMatrix (1-based pixel of the tile's
  top left corner), X/YOffsetInSlideCoordinateSystem of that pixel (mm, from the
  TotalPixelMatrixOriginSequence, ImageOrientationSlide and PixelSpacing) and
  ZOffsetInSlideCoordinateSystem, the plane's z in µm. wsidicom's ``SparseTileIndex`` groups
  the frames into planes by that z offset (rounded to 3 decimals); the frames' column and
  row positions give their tiles.
* level 1 (``pyramid``): TotalPixelMatrixRows/Columns 25, PixelSpacing doubled, ImageType
  ``DERIVED\\PRIMARY\\VOLUME\\RESAMPLED``, frames padded with the PixelPaddingValue (255);
  study, series and frame of reference as level 0, so that wsidicom puts both instances into
  one pyramid (level 1 = downsample 2).
* new StudyInstanceUID and SeriesInstanceUID per series and SOPInstanceUID per instance
  (also in the file meta), so the files never pass for the originals' series; Pixel Data's VR
  OB for 8-bit and OW for 16-bit samples (pydicom needs one to write; the originals say OB
  for both); everything else of the original is kept.

The fixture checks with wsidicom itself that every level lists the planes [0.0, 1.5, 3.0]
and that ``read_region(..., z=...)`` gives each plane as written. The tests then read the
series with wsiarray: all planes as a ``z`` dimension (``slide.planes``, the tree's
``(z, y, x, c)`` levels, ``slide.at_plane``), plane 0 by default, one plane chosen with the
reader option ``z`` (µm) as a 2-D slide, and wsidicom's ``read_region`` for comparison.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import wsiarray as wa

wsidicom = pytest.importorskip("wsidicom")
pydicom = pytest.importorskip("pydicom")

DATA = Path(__file__).parents[1] / "data" / "highdicom"
TILE = 10
SEED = 5
#: the focal planes: as the files state them (µm) and as wsiarray gives them (mm)
PLANES_UM = (0.0, 1.5, 3.0)
PLANES_MM = (0.0, 0.0015, 0.003)
#: plane k: the original rolled by k * ROLL (rows, columns), plus k * OFFSET[dtype]
ROLL = (3, 7)
OFFSET = {"uint8": 64, "uint16": 1000}
#: name: (original file, TILED_SPARSE, level count)
SERIES = {
    "rgb": ("sm_image.dcm", False, 1),
    "grey": ("sm_image_grayscale.dcm", False, 1),
    "sparse": ("sm_image.dcm", True, 1),
    "pyramid": ("sm_image.dcm", False, 2),
}
#: the window every plane is read in: (left, top, width, height), off the origin, across tiles
WINDOW = (7, 3, 25, 21)


@dataclass(frozen=True)
class Stack:
    """A z-stack series made by the fixture and what it should read as."""

    folder: Path
    files: tuple[Path, ...]  # level 0 first
    levels: tuple[np.ndarray, ...]  # per level: (plane, y, x, samples), as written
    dtype: str
    order: tuple[tuple[int, int, int], ...] | None  # sparse: (plane, row, column) per frame


def _full_image(dataset: pydicom.Dataset) -> np.ndarray:
    """The original (one plane, TILED_FULL) total pixel matrix: (y, x, samples)."""
    frames = dataset.pixel_array.reshape(int(dataset.NumberOfFrames), TILE, TILE, -1)
    down = dataset.TotalPixelMatrixRows // TILE
    across = dataset.TotalPixelMatrixColumns // TILE
    tiles = frames.reshape(down, across, TILE, TILE, -1)
    return tiles.transpose(0, 2, 1, 3, 4).reshape(down * TILE, across * TILE, -1)


def _planes(original: np.ndarray) -> np.ndarray:
    """The 3 planes written for ``original``: (plane, y, x, samples), in its dtype."""
    dtype = original.dtype
    modulus = 1 << (8 * dtype.itemsize)
    planes = [
        (np.roll(original, (k * ROLL[0], k * ROLL[1]), axis=(0, 1)).astype(np.int64))
        + k * OFFSET[dtype.name]
        for k in range(len(PLANES_UM))
    ]
    return (np.stack(planes) % modulus).astype(dtype)


def _tiles(planes: np.ndarray, fill: int) -> np.ndarray:
    """(plane, tile row, tile column, TILE, TILE, samples), edge tiles padded with ``fill``."""
    count, height, width, samples = planes.shape
    down, across = -(-height // TILE), -(-width // TILE)
    padded = np.full((count, down * TILE, across * TILE, samples), fill, planes.dtype)
    padded[:, :height, :width] = planes
    tiles = padded.reshape(count, down, TILE, across, TILE, samples)
    return tiles.transpose(0, 1, 3, 2, 4, 5)


def _make_instance(
    template: pydicom.Dataset,
    planes: np.ndarray,
    target: Path,
    *,
    level: int,
    uids: tuple[str, str],
    sparse: bool,
) -> tuple[tuple[int, int, int], ...] | None:
    """Write ``planes`` (plane, y, x, samples) as one instance made from ``template``.

    Returns the (plane, row, column) of every frame for a TILED_SPARSE instance.
    """
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag
    from pydicom.uid import generate_uid
    from pydicom.valuerep import DSfloat

    dataset = copy.deepcopy(template)
    count, height, width, _ = planes.shape
    tiles = _tiles(planes, int(template.get("PixelPaddingValue", 0)))
    down, across = tiles.shape[1:3]
    shared = dataset.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    row_spacing, column_spacing = (float(v) * 2**level for v in measures.PixelSpacing)
    measures.PixelSpacing = [DSfloat(row_spacing, auto_format=True)] * 2
    assert row_spacing == column_spacing
    # Pixel Measures' Spacing Between Slices: the distance between focal planes, in mm
    measures.SpacingBetweenSlices = DSfloat((PLANES_UM[1] - PLANES_UM[0]) / 1000, auto_format=True)
    if level:
        dataset.ImageType = ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
        shared.WholeSlideMicroscopyImageFrameTypeSequence[0].FrameType = dataset.ImageType
    dataset.TotalPixelMatrixRows, dataset.TotalPixelMatrixColumns = height, width
    dataset.TotalPixelMatrixFocalPlanes = count
    dataset.NumberOfFrames = count * down * across
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = uids
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.InstanceNumber = level + 1
    little = tiles.dtype.newbyteorder("<")
    vr = "OW" if int(template.BitsAllocated) > 8 else "OB"

    order = None
    if not sparse:
        # TILED_FULL: tiles row-major within a plane, planes one after another
        dataset.PixelData = tiles.astype(little).tobytes()
    else:
        every = [(k, r, c) for k in range(count) for r in range(down) for c in range(across)]
        shuffled = np.random.default_rng(SEED).permutation(len(every))
        order = tuple(every[i] for i in shuffled)
        origin = dataset.TotalPixelMatrixOriginSequence[0]
        x0 = float(origin.XOffsetInSlideCoordinateSystem)
        y0 = float(origin.YOffsetInSlideCoordinateSystem)
        # first triplet: along a row (increasing column); second: down a column
        cosines = [float(v) for v in dataset.ImageOrientationSlide]
        items = []
        for k, row, column in order:
            top, left = row * TILE, column * TILE
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
            position.ZOffsetInSlideCoordinateSystem = DSfloat(PLANES_UM[k], auto_format=True)
            content = Dataset()
            content.DimensionIndexValues = [row + 1, column + 1, k + 1]
            item = Dataset()
            item.FrameContentSequence = [content]
            item.PlanePositionSlideSequence = [position]
            items.append(item)
        dataset.PerFrameFunctionalGroupsSequence = items
        focal = Dataset()
        first = dataset.DimensionIndexSequence[0]
        focal.DimensionOrganizationUID = first.DimensionOrganizationUID
        focal.DimensionIndexPointer = Tag("ZOffsetInSlideCoordinateSystem")
        focal.FunctionalGroupPointer = Tag("PlanePositionSlideSequence")
        focal.DimensionDescriptionLabel = "Focal plane"
        dataset.DimensionIndexSequence.append(focal)
        dataset.DimensionOrganizationType = "TILED_SPARSE"
        dataset.PixelData = b"".join(tiles[k, r, c].astype(little).tobytes() for k, r, c in order)
    dataset["PixelData"].VR = vr
    target.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(target, enforce_file_format=True)
    return order


def _make_stack(name: str, folder: Path) -> Stack:
    from pydicom.uid import generate_uid

    source, sparse, level_count = SERIES[name]
    template = pydicom.dcmread(DATA / source)
    original = _full_image(template)
    assert template.DimensionOrganizationType == "TILED_FULL"
    assert not template.file_meta.TransferSyntaxUID.is_compressed
    assert int(template.TotalPixelMatrixFocalPlanes) == 1
    assert int(template.NumberOfOpticalPaths) == 1
    assert template.ExtendedDepthOfField == "NO"
    del template.PixelData
    base = _planes(original)
    levels = tuple(base[:, :: 2**i, :: 2**i] for i in range(level_count))
    uids = (generate_uid(), generate_uid())
    files, order = [], None
    for index, planes in enumerate(levels):
        target = folder / f"level{index}.dcm"
        made = _make_instance(template, planes, target, level=index, uids=uids, sparse=sparse)
        order = order or made
        files.append(target)
    return Stack(folder, tuple(files), levels, original.dtype.name, order)


def _wsidicom_plane(wsi: object, level: int, shape: tuple[int, int], z: float) -> np.ndarray:
    """wsidicom's read of one whole plane of a level: (y, x, samples)."""
    height, width = shape
    region = wsi.read_region((0, 0), level, (width, height), z=z)
    # a PIL image: RGB for the colour files, mode "I" (int32) for the 16-bit grey one
    return np.asarray(region).reshape(height, width, -1)


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Stack]:
    """``{name: Stack}``: the series of SERIES, each in a folder of its own, checked with
    wsidicom: every level lists the 3 planes and reads each as written."""
    root = tmp_path_factory.mktemp("dicom-zstack")
    made = {name: _make_stack(name, root / name) for name in SERIES}
    for stack in made.values():
        with wsidicom.WsiDicom.open(stack.folder) as wsi:
            assert len(wsi.pyramids) == 1
            assert len(wsi.levels) == len(stack.levels)
            for level, planes in zip(wsi.levels, stack.levels, strict=True):
                assert level.focal_planes == list(PLANES_UM)
                for k, z in enumerate(PLANES_UM):
                    theirs = _wsidicom_plane(wsi, level.level, planes.shape[1:3], z)
                    np.testing.assert_array_equal(theirs, planes[k])
    return made


@pytest.mark.parametrize("name", SERIES)
def test_the_files_are_what_the_test_means(name, stacks) -> None:
    """Guards: the stated planes and frames; the planes differ at every pixel; the window read
    below differs from the windows one pixel off; the sparse frames mix the planes."""
    stack = stacks[name]
    original = pydicom.dcmread(DATA / SERIES[name][0])
    for index, (path, planes) in enumerate(zip(stack.files, stack.levels, strict=True)):
        dataset = pydicom.dcmread(path)
        assert int(dataset.TotalPixelMatrixFocalPlanes) == 3
        tiles = -(-dataset.TotalPixelMatrixRows // TILE) * -(
            -dataset.TotalPixelMatrixColumns // TILE
        )
        assert int(dataset.NumberOfFrames) == 3 * tiles
        assert planes.shape[1:3] == (50 // 2**index,) * 2
        measures = dataset.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        assert float(measures.SpacingBetweenSlices) == 0.0015
        assert dataset.SeriesInstanceUID != original.SeriesInstanceUID
        assert dataset.StudyInstanceUID != original.StudyInstanceUID
        assert dataset.SOPInstanceUID != original.SOPInstanceUID
        assert dataset.DimensionOrganizationType == (
            "TILED_SPARSE" if SERIES[name][1] else "TILED_FULL"
        )
        assert str(planes.dtype) == stack.dtype
        for a in range(3):
            for b in range(a + 1, 3):
                assert (planes[a] != planes[b]).all()
    left, top, width, height = WINDOW
    for plane in stack.levels[0]:
        window = plane[top : top + height, left : left + width]
        for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            moved = plane[top + dy : top + dy + height, left + dx : left + dx + width]
            assert (window != moved).any()
    if stack.order is not None:
        assert [k for k, _, _ in stack.order] != sorted(k for k, _, _ in stack.order)
        dataset = pydicom.dcmread(stack.files[0])
        zs = [
            float(item.PlanePositionSlideSequence[0].ZOffsetInSlideCoordinateSystem)
            for item in dataset.PerFrameFunctionalGroupsSequence
        ]
        assert zs == [PLANES_UM[k] for k, _, _ in stack.order]


@pytest.mark.parametrize("name", SERIES)
def test_planes_are_a_z_dimension_in_mm(name, stacks) -> None:
    stack = stacks[name]
    with wa.open(stack.folder) as slide:
        assert slide.metadata.reader == "dicom"
        assert slide.metadata.dtype == stack.dtype
        assert slide.level_shapes == tuple(p.shape[1:3] for p in stack.levels)
        assert slide.planes == {"z": pytest.approx(PLANES_MM)}
        assert slide.plane == {"z": 0}
        for index in range(len(stack.levels)):
            image = slide.tree[f"level{index}"].image
            assert image.dims == ("z", "y", "x", "c")
            assert image.shape == stack.levels[index].shape
            assert image.z.attrs["units"] == "mm"
            np.testing.assert_allclose(image.z.values, PLANES_MM)


@pytest.mark.parametrize("name", SERIES)
def test_every_plane_reads_as_written(name, stacks) -> None:
    stack = stacks[name]
    left, top, width, height = WINDOW
    with wa.open(stack.folder) as slide:
        for index, planes in enumerate(stack.levels):
            stacked = slide.tree[f"level{index}"].image.values
            assert stacked.dtype == stack.dtype
            np.testing.assert_array_equal(stacked, planes)
            for k, plane in enumerate(planes):
                # level 1 of the pyramid is 25 px wide: the window clipped to it
                w, h = min(width, plane.shape[1] - left), min(height, plane.shape[0] - top)
                np.testing.assert_array_equal(
                    slide.at_plane(z=k).read(left, top, w, h, level=index),
                    plane[top : top + h, left : left + w],
                )


@pytest.mark.parametrize("name", SERIES)
def test_without_a_chosen_plane_plane_0_reads(name, stacks) -> None:
    """The lowest z, not wsidicom's default (the middle plane)."""
    stack = stacks[name]
    with wa.open(stack.folder) as slide:
        np.testing.assert_array_equal(slide.read(0, 0, 50, 50), stack.levels[0][0])
        image = slide.image()
        assert image.dims == ("y", "x", "c")
        np.testing.assert_array_equal(image.values, stack.levels[0][0])


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize("k", range(3))
def test_the_z_option_reads_one_plane_as_a_2d_slide(name, k, stacks) -> None:
    """``reader_options={"z": µm}`` keeps choosing one focal plane: no z dimension."""
    stack = stacks[name]
    with wa.open(stack.folder, reader_options={"z": PLANES_UM[k]}) as slide:
        assert slide.planes == {}
        assert slide.plane == {}
        for index, planes in enumerate(stack.levels):
            image = slide.tree[f"level{index}"].image
            assert image.dims == ("y", "x", "c")
            np.testing.assert_array_equal(image.values, planes[k])
        np.testing.assert_array_equal(slide.read(0, 0, 50, 50), stack.levels[0][k])


@pytest.mark.parametrize("name", SERIES)
def test_equals_wsidicoms_read_region(name, stacks) -> None:
    stack = stacks[name]
    with (
        wa.open(stack.folder) as slide,
        wsidicom.WsiDicom.open(stack.folder) as wsi,
    ):
        for index, (level, planes) in enumerate(zip(wsi.levels, stack.levels, strict=True)):
            shape = planes.shape[1:3]
            for k, z in enumerate(PLANES_UM):
                theirs = _wsidicom_plane(wsi, level.level, shape, z).astype(np.int64)
                ours = slide.at_plane(z=k).read(0, 0, shape[1], shape[0], level=index)
                np.testing.assert_array_equal(ours.astype(np.int64), theirs)


def test_planes_read_at_once_from_many_threads_stay_apart(stacks) -> None:
    """wsidicom 0.36, asked for two focal planes of one instance at once, now and then gave
    one the other's frames (24 of 150 whole-stack reads on 8 threads, before the reader
    made its calls one at a time)."""
    import dask

    from wsiarray.sources import source_cache

    stack = stacks["grey"]
    for _ in range(30):
        source_cache.clear()
        with dask.config.set(scheduler="threads", num_workers=8):
            values = wa.open(stack.folder).tree["level0"].image.values
        np.testing.assert_array_equal(values, stack.levels[0])
