"""Reader for every format OpenSlide opens (MIRAX, VMS/VMU, DICOM WSI, and the TIFF vendors).

A block of a level is one ``read_region`` call. OpenSlide returns RGBA whose alpha only marks where the scanner
wrote no data; wsiarray composites it over OpenSlide's background colour and serves RGB.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, override

import numpy as np

from wsiarray.errors import (
    CorruptTileError,
    PixelBudgetError,
    ReaderUnavailableError,
    UnsupportedFormatError,
)
from wsiarray.sources import _vendor
from wsiarray.sources._base import AssociatedInfo, LevelInfo, SlideMetadata, SlideSource

if TYPE_CHECKING:
    import openslide

__all__ = ["OpenSlideSource", "composite_over"]

#: Containers whose TIFF is only a preview of a slide stored elsewhere (Olympus VSI, pixels
#: in .ets files): OpenSlide has no reader for them and would show the preview as the slide.
PREVIEW_CONTAINERS = (".vsi",)
#: Tile side assumed where OpenSlide does not report a level's tiles.
DEFAULT_TILE = 256
#: OpenSlide draws a level at ``location / downsample``; where the downsample is not a whole
#: number (2.0005 for an odd width) that position is fractional off the origin and OpenSlide
#: interpolates (up to 73 levels off on TCGA's JPEG 2000 level 1). Stored pixels come only
#: from reads that start at the level's origin: at most this many pixels are read so.
ORIGIN_READ_PIXELS = 32 * 1024 * 1024
#: Pixels beyond which a tile larger than its level is taken for damage (a level smaller
#: than one real tile is common; a 16 MP tile around it is not).
MAX_TILE_PIXELS = 1 << 24


def _import_openslide() -> Any:
    try:
        import openslide
    except ImportError as exc:  # pragma: no cover - openslide-bin is a dependency
        msg = 'the openslide reader needs OpenSlide: pip install "openslide-python" "openslide-bin"'
        raise ReaderUnavailableError(msg) from exc
    return openslide


def composite_over(rgba: np.ndarray, background: tuple[int, ...]) -> np.ndarray:
    """Composite non-premultiplied RGBA over an opaque background colour, giving RGB uint8."""
    alpha = rgba[..., 3:4]
    rgb = rgba[..., :3]
    if alpha.min(initial=255) == 255:
        return np.ascontiguousarray(rgb)
    bg = np.asarray(background[:3], dtype=np.uint16)
    mixed = (rgb.astype(np.uint16) * alpha + bg * (255 - alpha.astype(np.uint16)) + 127) // 255
    return mixed.astype(np.uint8)


class OpenSlideSource(SlideSource):
    """A slide read through OpenSlide."""

    name: ClassVar[str] = "openslide"

    @classmethod
    @override
    def claims(cls, path: Path, header: bytes, /) -> bool:
        if path.suffix.lower() in PREVIEW_CONTAINERS:
            return False
        openslide = _import_openslide()
        try:
            return openslide.OpenSlide.detect_format(str(path)) is not None
        except openslide.OpenSlideError:
            return False

    def __init__(self, path: Path, /, **options: Any) -> None:
        super().__init__(path, **options)
        _import_openslide()
        self._slide = self._open_handle()
        self._refuse_turned_tiff()
        self._handle_lock = threading.Lock()
        self._downsamples = tuple(self._slide.level_downsamples)
        try:
            self.metadata = self._read_metadata()
        except BaseException:
            self._slide.close()
            raise

    def _open_handle(self) -> openslide.OpenSlide:
        openslide = _import_openslide()
        try:
            return openslide.OpenSlide(str(self.path))
        except openslide.OpenSlideError as exc:
            msg = f"{self.path}: OpenSlide cannot open it: {exc}"
            raise UnsupportedFormatError(msg) from exc

    def _refuse_turned_tiff(self) -> None:
        """OpenSlide ignores TIFF Orientation (each tile comes out as stored, turned on its own
        in its viewer): a slide stored turned would read wrong, so it is refused."""
        import tifffile

        try:
            with tifffile.TiffFile(self.path) as tif:
                tag = tif.pages.first.tags.get("Orientation")
        except tifffile.TiffFileError:  # not a TIFF (MIRAX, VMS, DICOM, ...)
            return
        if tag is not None and int(tag.value) not in (0, 1) and int(tag.value) <= 8:
            self._slide.close()
            msg = (
                f"{self.path} is stored turned (TIFF Orientation {int(tag.value)}), which OpenSlide "
                "does not apply; open it with reader='tifffile', which shows it upright"
            )
            raise UnsupportedFormatError(msg)

    def _reopen_after_error(self, failed: openslide.OpenSlide) -> None:
        """An OpenSlide handle refuses every call after its first error: replace it."""
        with self._handle_lock:
            if self._slide is failed:
                self._slide = self._open_handle()

    def _read_metadata(self) -> SlideMetadata:
        props = dict(self._slide.properties)
        mm_x, mm_y = _vendor.mm_from_mpp(props.get("openslide.mpp-x"), props.get("openslide.mpp-y"))
        magnification, derived = _vendor.magnification_or_derived(
            props.get("openslide.objective-power"), mm_x
        )
        return SlideMetadata(
            format=props.get("openslide.vendor", "openslide"),
            reader=self.name,
            levels=tuple(self._level_info(i, props) for i in range(self._slide.level_count)),
            dtype="uint8",
            channels=("R", "G", "B"),
            mm_x=mm_x,
            mm_y=mm_y,
            magnification=magnification,
            magnification_derived=derived,
            background=_vendor.parse_color(props.get("openslide.background-color")),
            properties=props,
            associated=tuple(self._associated_info(props)),
            icc_profile=self._icc_profile(),
        )

    def _icc_profile(self) -> bytes | None:
        profile = self._slide.color_profile  # None when the slide embeds no profile
        return None if profile is None else bytes(profile.tobytes())

    def _level_info(self, level: int, props: dict[str, str]) -> LevelInfo:
        width, height = self._slide.level_dimensions[level]
        tile = tuple(
            int(props.get(f"openslide.level[{level}].tile-{side}", DEFAULT_TILE))
            for side in ("height", "width")
        )
        if (tile[0] > height or tile[1] > width) and tile[0] * tile[1] > MAX_TILE_PIXELS:
            # OpenSlide allocates a whole tile per read: a damaged 65535² DICOM frame cost a
            # 17 GB buffer, and glib aborted the process where memory is limited
            msg = (
                f"{self.path}: level {level} is {width} x {height} pixels in tiles of "
                f"{tile[1]} x {tile[0]}: a tile larger than its level and of more than "
                f"{MAX_TILE_PIXELS:,} pixels, so the file is damaged"
            )
            raise UnsupportedFormatError(msg)
        if not _whole(self._downsamples[level]) and height * width <= ORIGIN_READ_PIXELS:
            # every read of such a level starts at its origin: one dask chunk reads it once
            return LevelInfo(shape=(height, width), tile=(height, width))
        return LevelInfo(shape=(height, width), tile=(tile[0], tile[1]))

    def _associated_info(self, props: dict[str, str]) -> list[AssociatedInfo]:
        infos = []
        for name in self._slide.associated_images:
            width = props.get(f"openslide.associated.{name}.width")
            height = props.get(f"openslide.associated.{name}.height")
            if width is None or height is None:  # older OpenSlide: read it to learn its size
                height, width = self.read_associated(name).shape[:2]
            infos.append(AssociatedInfo(name, (int(height), int(width), 3)))
        return infos

    @override
    def read_block(self, level: int, y0: int, y1: int, x0: int, x1: int, /) -> np.ndarray:
        downsample = self._downsamples[level]
        origin = (0, 0)  # where the pixels read start, in level pixels
        if _whole(downsample) or (x0, y0) == (0, 0):
            location = (round(x0 * downsample), round(y0 * downsample))
            origin = (y0, x0)
        elif x1 * y1 <= ORIGIN_READ_PIXELS:
            location = (0, 0)
        else:
            msg = (
                f"{self.path}: OpenSlide interpolates level {level} (downsample {downsample:.6g}, "
                f"not a whole number) everywhere but at its origin, so its stored pixels at "
                f"y={y0}, x={x0} need a read of {x1 * y1:,} pixels from the origin, more than "
                f"{ORIGIN_READ_PIXELS:,}. Open the file with another reader (reader='tifffile' "
                "for TIFF-family files), or read level 0."
            )
            raise PixelBudgetError(msg)
        handle = self._slide
        try:
            region = handle.read_region(location, level, (x1 - origin[1], y1 - origin[0]))
        except Exception as exc:
            self._reopen_after_error(handle)
            msg = (
                f"{self.path}: OpenSlide cannot read pixels y={y0}:{y1}, x={x0}:{x1} of level "
                f"{level}: {exc}. The file is damaged or incomplete."
            )
            raise CorruptTileError(msg) from exc
        pixels = np.asarray(region)[y0 - origin[0] :, x0 - origin[1] :]
        return composite_over(pixels, self.metadata.background)

    @override
    def read_associated(self, name: str, /) -> np.ndarray:
        handle = self._slide
        try:
            image = np.asarray(handle.associated_images[name].convert("RGBA"))
        except _import_openslide().OpenSlideError as exc:
            self._reopen_after_error(handle)
            msg = (
                f"{self.path}: OpenSlide cannot read the associated image {name!r}: {exc}. The "
                "file is damaged or incomplete."
            )
            raise CorruptTileError(msg) from exc
        return composite_over(image, self.metadata.background)

    @override
    def close(self) -> None:
        self._slide.close()


def _whole(downsample: float) -> bool:
    """Whether OpenSlide positions every pixel of a level with this downsample exactly."""
    return downsample == round(downsample)
