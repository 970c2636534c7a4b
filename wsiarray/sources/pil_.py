"""Reader for plain images Pillow opens (PNG, JPEG, BMP, GIF, WebP, ...) as one-level slides.

Such files cannot be read piecewise, so the whole image is decoded on the first pixel
request (not at open) and kept. A pixel budget, checked at open from the header, refuses
images too large to decode in memory.

PNG is decoded by libpng (imagecodecs), not Pillow: Pillow opens a 16-bit RGB, RGBA or
grey+alpha PNG in an 8-bit mode (keeping the high bytes) and drops a colour key (tRNS) of an
RGB or grey PNG; libpng gives the stored 16 bits and the key as an alpha band.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any, ClassVar, override

import numpy as np
from PIL import Image

from wsiarray.errors import CorruptTileError, PixelBudgetError, UnsupportedFormatError
from wsiarray.sources._base import LevelInfo, SlideMetadata, SlideSource

__all__ = ["DEFAULT_MAX_PIXELS", "PilSource"]

IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a")

#: Largest image (width x height) decoded by default: 1 gigapixel is 3 GB as RGB.
DEFAULT_MAX_PIXELS = 1 << 30

CHUNK = 1024
EXIF_ORIENTATION = 274

#: Pillow mode → (mode to convert to, channel names).
MODES = {
    "RGB": ("RGB", ("R", "G", "B")),
    "RGBA": ("RGBA", ("R", "G", "B", "A")),
    "L": ("L", ("L",)),
    "LA": ("LA", ("L", "A")),
    "1": ("L", ("L",)),
    "I;16": ("I;16", ("L",)),
    "I": ("I", ("L",)),
    "F": ("F", ("L",)),
}


class PilSource(SlideSource):
    """A plain image read with Pillow.

    Parameters
    ----------
    path : Path
        The image file.
    max_pixels : int, optional
        Refuse images with more pixels than this (default 2**30).
    """

    name: ClassVar[str] = "pil"

    @classmethod
    @override
    def claims(cls, path: Path, header: bytes, /) -> bool:
        return header.startswith(IMAGE_MAGIC) or (header[:4] == b"RIFF" and header[8:12] == b"WEBP")

    def __init__(
        self, path: Path, /, *, max_pixels: int = DEFAULT_MAX_PIXELS, **options: Any
    ) -> None:
        super().__init__(path, max_pixels=max_pixels, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                image = Image.open(path)
            except (OSError, Image.DecompressionBombError) as exc:
                msg = f"{path}: Pillow cannot read it: {exc}"
                raise UnsupportedFormatError(msg) from exc
        with image:
            width, height = image.size
            self._mode, channels = self._target_mode(image)
            fmt = (image.format or "image").lower()
            # EXIF Orientation (a phone's or camera's JPEG); shown upright by open_source
            orientation = _orientation(image)
            icc_profile = image.info.get("icc_profile") or None
            self._png = fmt == "png"
            if self._png:
                self._mode, channels = "", _png_bands(path, "transparency" in image.info)
        if width * height > max_pixels:
            msg = (
                f"{path} is {width} x {height} = {width * height:,} pixels, more than the "
                f"budget of {max_pixels:,}; Pillow must decode it whole. Convert it to a tiled "
                "TIFF, or pass reader_options={'max_pixels': N} if the memory is there."
            )
            raise PixelBudgetError(msg)
        # A plain image's dpi describes a printer, not a microscope: the pixel size stays unknown.
        dtype = _png_dtype(path) if self._png else _mode_dtype(self._mode)
        self.metadata = SlideMetadata(
            format=fmt,
            reader=self.name,
            levels=(
                LevelInfo(shape=(height, width), tile=(min(CHUNK, height), min(CHUNK, width))),
            ),
            dtype=dtype,
            channels=channels,
            orientation=orientation,
            icc_profile=icc_profile,
        )
        self._pixels: np.ndarray | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _target_mode(image: Image.Image) -> tuple[str, tuple[str, ...]]:
        mode = image.mode
        if mode == "P":
            mode = "RGBA" if "transparency" in image.info else "RGB"
        return MODES.get(mode, ("RGB", ("R", "G", "B")))

    def _decoded(self) -> np.ndarray:
        with self._lock:
            if self._pixels is None:
                try:
                    pixels = self._png_pixels() if self._png else self._pillow_pixels()
                except (OSError, ValueError, RuntimeError, Image.DecompressionBombError) as exc:
                    msg = f"{self.path}: the image cannot be decoded ({exc}). The file is damaged or incomplete."
                    raise CorruptTileError(msg) from exc
                self._pixels = pixels if pixels.ndim == 3 else pixels[..., np.newaxis]
            return self._pixels

    def _pillow_pixels(self) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(self.path) as image:
                image.load()
                return np.asarray(image.convert(self._mode))

    def _png_pixels(self) -> np.ndarray:
        import imagecodecs

        try:
            return imagecodecs.png_decode(self.path.read_bytes())
        except imagecodecs.PngError as exc:  # not an OSError: say it is the file's damage
            raise ValueError(str(exc)) from exc

    @override
    def read_block(self, level: int, y0: int, y1: int, x0: int, x1: int, /) -> np.ndarray:
        return self._decoded()[y0:y1, x0:x1]

    @override
    def read_associated(self, name: str, /) -> np.ndarray:
        raise KeyError(name)


def _orientation(image: Image.Image) -> int:
    """The EXIF Orientation (1 when absent). A PNG keeps its EXIF after the pixels: a cut
    file has none to read here, and its decode fails later, naming the damage."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError):
        return 1
    return value if value in range(1, 9) else 1


#: PNG colour type -> bands as libpng expands them (palette to RGB); a tRNS key adds alpha.
PNG_BANDS = {
    0: ("L",),
    2: ("R", "G", "B"),
    3: ("R", "G", "B"),
    4: ("L", "A"),
    6: ("R", "G", "B", "A"),
}
#: Where a PNG's IHDR keeps its bit depth and colour type.
PNG_BIT_DEPTH, PNG_COLOUR_TYPE = 24, 25


def _png_header(path: Path) -> tuple[int, int]:
    with path.open("rb") as fh:
        header = fh.read(PNG_COLOUR_TYPE + 1)
    return header[PNG_BIT_DEPTH], header[PNG_COLOUR_TYPE]


def _png_bands(path: Path, keyed: bool) -> tuple[str, ...]:
    bands = PNG_BANDS[_png_header(path)[1]]
    return (*bands, "A") if keyed and "A" not in bands else bands


def _png_dtype(path: Path) -> str:
    depth, colour_type = _png_header(path)
    return "uint16" if depth == 16 and colour_type != 3 else "uint8"


def _mode_dtype(mode: str) -> str:
    return {"I;16": "uint16", "I": "int32", "F": "float32"}.get(mode, "uint8")
