"""Realistic synthetic slides: Aperio-style SVS pyramids with H&E-like content.

The generator writes what a scanner writes: 240-px JPEG tiles in YCbCr 4:2:0 whose
quantisation and Huffman tables sit once in the page's JPEGTables tag (each tile is an
abbreviated JPEG stream), Aperio ImageDescriptions with ``MPP`` and ``AppMag``, reduced
levels, and thumbnail, label and macro images. OpenSlide detects the result as ``aperio``.
Content is a deterministic function of the position on the glass, generated tile by tile,
so a 40000 x 30000 slide is written in about a minute with little memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile

__all__ = ["SlideContent", "write_aperio_svs"]

BACKGROUND = np.array([243.0, 243.0, 241.0])
EOSIN = np.array([234.0, 150.0, 196.0])
HEMATOXYLIN = np.array([92.0, 58.0, 142.0])
PERIOD = 512  # texture and nuclei patterns repeat every PERIOD level-0 pixels
DESCRIPTION_HEAD = "Aperio Image Library v12.0.15"

Compression = Literal["jpeg", "jpeg2000", "lzw", "deflate", "none"]


@dataclass(frozen=True)
class SlideContent:
    """H&E-like pixels as a function of level-0 position.

    A coarse field of Gaussian tissue blobs decides where tissue is; inside it, pink stroma
    with texture and dark purple nuclei; outside, the near-white glass.
    """

    shape: tuple[int, int]
    seed: int = 0
    flat: bool = False

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        object.__setattr__(self, "_field", _tissue_field(rng, self.shape))
        object.__setattr__(self, "_texture", _texture(rng))
        object.__setattr__(self, "_nuclei", _nuclei(rng))

    def block(
        self, y0: int, x0: int, height: int, width: int, downsample: float = 1.0
    ) -> np.ndarray:
        """RGB uint8 pixels of a block whose top-left level pixel is ``(y0, x0)`` at ``downsample``."""
        ys = (y0 + np.arange(height)) * downsample
        xs = (x0 + np.arange(width)) * downsample
        tissue = _bilinear(self._field, ys / self.shape[0], xs / self.shape[1])[..., None]  # type: ignore[attr-defined]
        if self.flat:
            return np.ascontiguousarray(BACKGROUND * (1 - tissue) + EOSIN * tissue, dtype=np.uint8)
        yi = (ys.astype(np.int64) % PERIOD)[:, None]
        xi = (xs.astype(np.int64) % PERIOD)[None, :]
        texture = self._texture[yi, xi]  # type: ignore[attr-defined]
        nuclei = self._nuclei[yi, xi][..., None] * tissue  # type: ignore[attr-defined]
        stroma = EOSIN + texture
        pixels = BACKGROUND * (1 - tissue) + stroma * tissue
        pixels = pixels * (1 - nuclei) + HEMATOXYLIN * nuclei
        return np.ascontiguousarray(np.clip(pixels, 0, 255), dtype=np.uint8)


def _tissue_field(rng: np.random.Generator, shape: tuple[int, int], cells: int = 96) -> np.ndarray:
    """Tissue probability on a ``cells``-wide grid over the slide: smooth blobs, sharp-ish edges."""
    aspect = shape[0] / shape[1]
    gh, gw = max(2, round(cells * aspect)), cells
    yy, xx = np.mgrid[0:gh, 0:gw]
    field = np.zeros((gh, gw))
    for _ in range(7):
        cy, cx = rng.uniform(0.2, 0.8) * gh, rng.uniform(0.15, 0.85) * gw
        sy, sx = rng.uniform(0.06, 0.18) * gh, rng.uniform(0.06, 0.18) * gw
        field += np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
    field += 0.12 * rng.standard_normal((gh, gw))  # ragged edges
    return 1 / (1 + np.exp(-8 * (field - 0.5)))


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Periodic noise with features about ``scale`` px wide (spectral low-pass of white noise)."""
    spectrum = np.fft.fft2(rng.standard_normal((size, size)))
    f = np.fft.fftfreq(size)
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    smooth = np.real(np.fft.ifft2(spectrum * np.exp(-((radius * scale) ** 2))))
    return smooth / smooth.std()


def _texture(rng: np.random.Generator) -> np.ndarray:
    """Stroma texture: fibres and blotches, as an RGB offset (periodic, PERIOD px)."""
    coarse = _smooth_noise(rng, PERIOD, 24)
    fine = _smooth_noise(rng, PERIOD, 3)
    shade = 14 * coarse + 7 * fine
    return np.stack([0.6 * shade, shade, 0.8 * shade], axis=-1)


def _nuclei(rng: np.random.Generator, count: int = 140) -> np.ndarray:
    """Nuclei opacity 0..1: small dark ellipses with soft edges (periodic, PERIOD px)."""
    yy, xx = np.mgrid[0:PERIOD, 0:PERIOD]
    mask = np.zeros((PERIOD, PERIOD))
    for cy, cx, ry, rx, angle in zip(
        rng.uniform(0, PERIOD, count),
        rng.uniform(0, PERIOD, count),
        rng.uniform(3, 7, count),
        rng.uniform(4, 9, count),
        rng.uniform(0, np.pi, count),
        strict=True,
    ):
        dy = (yy - cy + PERIOD / 2) % PERIOD - PERIOD / 2
        dx = (xx - cx + PERIOD / 2) % PERIOD - PERIOD / 2
        u = dy * np.cos(angle) + dx * np.sin(angle)
        v = -dy * np.sin(angle) + dx * np.cos(angle)
        mask = np.maximum(mask, np.clip(1.5 - np.hypot(u / ry, v / rx), 0, 1))
    return 0.85 * mask


def _bilinear(grid: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """Sample ``grid`` at fractional positions (0..1 of its extent) on the outer product of fy, fx."""
    gy = np.clip(fy * (grid.shape[0] - 1), 0, grid.shape[0] - 1)
    gx = np.clip(fx * (grid.shape[1] - 1), 0, grid.shape[1] - 1)
    y0, x0 = (
        np.minimum(gy.astype(int), grid.shape[0] - 2),
        np.minimum(gx.astype(int), grid.shape[1] - 2),
    )
    wy, wx = (gy - y0)[:, None], (gx - x0)[None, :]
    a, b = grid[y0][:, x0], grid[y0][:, x0 + 1]
    c, d = grid[y0 + 1][:, x0], grid[y0 + 1][:, x0 + 1]
    return (a * (1 - wx) + b * wx) * (1 - wy) + (c * (1 - wx) + d * wx) * wy


# -- JPEG with shared tables --------------------------------------------------------------

_TABLE_MARKERS = {0xDB, 0xC4}  # DQT, DHT


def _split_jpeg(stream: bytes) -> tuple[bytes, bytes]:
    """Split a JPEG into (tables-only stream, abbreviated stream without DQT/DHT)."""
    from wsiarray._jpeg_markers import EOI, SOI, segments

    header = segments(stream)
    scan = stream[2 + sum(map(len, header)) :]  # start of scan, entropy-coded data and EOI
    tables = [s for s in header if s[1] in _TABLE_MARKERS]
    image = [s for s in header if s[1] not in _TABLE_MARKERS]
    return SOI + b"".join(tables) + EOI, SOI + b"".join(image) + scan


class _JpegTiles:
    """Encode tiles as abbreviated JPEG streams; collects the one shared tables stream."""

    def __init__(self, quality: int) -> None:
        self.quality = quality
        self.tables: bytes | None = None

    def encode(self, tile: np.ndarray) -> bytes:
        import imagecodecs

        stream = imagecodecs.jpeg8_encode(
            tile, level=self.quality, colorspace="rgb", outcolorspace="ycbcr", subsampling="420"
        )
        tables, abbreviated = _split_jpeg(bytes(stream))
        if self.tables is None:
            self.tables = tables
        elif tables != self.tables:  # pragma: no cover - libjpeg's standard tables never vary
            msg = "JPEG tables differ between tiles; cannot share one JPEGTables tag"
            raise RuntimeError(msg)
        return abbreviated


def _tiles(
    content: SlideContent, shape: tuple[int, int], tile: int, downsample: float
) -> Iterator[np.ndarray]:
    height, width = shape
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            block = content.block(y, x, min(tile, height - y), min(tile, width - x), downsample)
            if block.shape[:2] != (tile, tile):  # edge tiles are stored full size, padded
                padded = np.full((tile, tile, 3), 255, np.uint8)
                padded[: block.shape[0], : block.shape[1]] = block
                block = padded
            yield block


def _description(
    size: tuple[int, int],
    tile: int,
    quality: int,
    mpp: float | None,
    mag: float | None,
    suffix: str,
) -> str:
    height, width = size
    fields = [f"AppMag = {mag:g}"] if mag is not None else []
    fields += [f"MPP = {mpp:.4f}"] if mpp is not None else []
    fields += [
        "ScanScope ID = SYNTH01",
        "Filename = synthetic",
        "Date = 01/01/26",
        "Time = 00:00:00",
    ]
    head = f"{DESCRIPTION_HEAD} \r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}){suffix} JPEG/RGB Q={quality}"
    return "|".join([head, *fields])


def _write_level(
    tif: tifffile.TiffWriter,
    content: SlideContent,
    shape: tuple[int, int],
    downsample: float,
    tile: int,
    compression: Compression,
    quality: int,
    description: str,
) -> None:
    common = {
        "shape": (*shape, 3),
        "dtype": np.uint8,
        "tile": (tile, tile),
        "description": description,
        "metadata": None,
    }
    tiles = _tiles(content, shape, tile, downsample)
    if compression == "jpeg":
        encoder = _JpegTiles(quality)
        first = encoder.encode(next(tiles))  # learn the tables before the page is written

        def encoded() -> Iterator[bytes]:
            yield first
            for block in tiles:
                yield encoder.encode(block)

        tables = encoder.tables or b""
        tif.write(
            encoded(),
            compression="jpeg",
            photometric="ycbcr",
            subsampling=(2, 2),
            extratags=[(347, 7, len(tables), tables, True)],
            **common,
        )
        return
    codec = {
        "jpeg2000": ("jpeg2000", {"level": quality}),
        "lzw": ("lzw", None),
        "deflate": ("zlib", None),
        "none": (None, None),
    }[compression]
    tif.write(tiles, compression=codec[0], compressionargs=codec[1], photometric="rgb", **common)


def _label(content: SlideContent, seed: int) -> np.ndarray:
    """A slide label: white card with a barcode and text-like marks."""
    rng = np.random.default_rng(seed + 1)
    label = np.full((400, 380, 3), 250, np.uint8)
    bars = np.repeat(rng.integers(0, 2, 95), 3)[:285]
    label[40:160, 40:325][:, bars == 1] = 20
    for row in range(200, 360, 32):
        widths = rng.integers(10, 40, 8)
        x = 40
        for w in widths:
            label[row : row + 16, x : x + w] = 40
            x += w + 8
    return label


def _macro(content: SlideContent) -> np.ndarray:
    """A photo of the whole glass slide: label area on the left, the scanned area at right."""
    height, width = 430, 1280
    macro = np.full((height, width, 3), 200, np.uint8)
    macro[:, :300] = (235, 235, 225)
    inner_h, inner_w = height - 40, width - 340
    thumb = content.block(
        0, 0, inner_h, inner_w, max(content.shape[0] / inner_h, content.shape[1] / inner_w)
    )
    macro[20 : 20 + thumb.shape[0], 320 : 320 + thumb.shape[1]] = thumb[: height - 40]
    return macro


def _write_thumbnail(tif: tifffile.TiffWriter, content: SlideContent, description: str) -> None:
    scale = max(content.shape) / 1024
    shape = (max(1, round(content.shape[0] / scale)), max(1, round(content.shape[1] / scale)))
    thumb = content.block(0, 0, *shape, downsample=content.shape[1] / shape[1])
    tif.write(
        thumb,
        compression="jpeg",
        compressionargs={"level": 90},
        metadata=None,
        photometric="rgb",
        description=description.replace("{thumb}", f" -> {shape[1]}x{shape[0]} -"),
    )


def _write_label_and_macro(tif: tifffile.TiffWriter, content: SlideContent, seed: int) -> None:
    label = _label(content, seed)
    tif.write(
        label,
        metadata=None,
        compression="lzw",
        photometric="rgb",
        subfiletype=1,
        description=f"{DESCRIPTION_HEAD}\r\nlabel {label.shape[1]}x{label.shape[0]}",
    )
    macro = _macro(content)
    tif.write(
        macro,
        compression="jpeg",
        compressionargs={"level": 90},
        metadata=None,
        photometric="rgb",
        subfiletype=9,
        description=f"{DESCRIPTION_HEAD}\r\nmacro {macro.shape[1]}x{macro.shape[0]}",
    )


def write_aperio_svs(
    path: str | os.PathLike[str],
    /,
    *,
    size: tuple[int, int] = (4000, 6000),
    tile: int = 240,
    downsamples: Sequence[int] = (1, 4, 16),
    compression: Compression = "jpeg",
    quality: int = 80,
    mpp: float | None = 0.499,
    magnification: float | None = 20.0,
    associated: bool = True,
    content: Literal["tissue", "flat"] = "tissue",
    seed: int = 0,
) -> Path:
    """Write a synthetic Aperio SVS slide.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write; written to a temporary file beside it, then renamed (atomic).
    size : tuple of int
        ``(height, width)`` of level 0 in pixels.
    tile : int
        Tile side in pixels (a multiple of 16 for JPEG).
    downsamples : sequence of int
        One level per entry, the first 1; level sizes are ``size // d`` as Aperio writes them.
    compression : {"jpeg", "jpeg2000", "lzw", "deflate", "none"}
        JPEG tiles are YCbCr 4:2:0 with shared JPEGTables, as real SVS files.
    quality : int
        JPEG / JPEG 2000 quality.
    mpp : float or None
        Micrometres per pixel written as ``MPP``; ``None`` leaves it out.
    magnification : float or None
        Objective power written as ``AppMag``; ``None`` leaves it out.
    associated : bool
        Write label and macro images. The thumbnail is always written, second, as Aperio
        does (tifffile takes the second page of an SVS to be the thumbnail).
    content : {"tissue", "flat"}
        H&E-like texture and nuclei, or cheap smooth colour (for huge, fast slides).
    seed : int
        Seed of the content.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if not downsamples or downsamples[0] != 1:
        msg = f"downsamples must start with 1, got {list(downsamples)}"
        raise ValueError(msg)
    content_ = SlideContent(size, seed=seed, flat=content == "flat")
    levels = [(max(1, size[0] // d), max(1, size[1] // d)) for d in downsamples]
    bigtiff = sum(h * w for h, w in levels) * 3 > 2**32 * 0.8
    handle, temporary = tempfile.mkstemp(suffix=".svs.part", dir=path.parent)
    os.close(handle)
    try:
        with tifffile.TiffWriter(temporary, bigtiff=bigtiff) as tif:
            for index, ((height, width), d) in enumerate(zip(levels, downsamples, strict=True)):
                suffix = f" -> {width}x{height}" if index else ""
                description = _description(size, tile, quality, mpp, magnification, suffix)
                _write_level(
                    tif,
                    content_,
                    (height, width),
                    float(d),
                    tile,
                    compression,
                    quality,
                    description,
                )
                if index == 0:  # Aperio puts the thumbnail second; readers rely on it
                    _write_thumbnail(
                        tif,
                        content_,
                        _description(size, tile, quality, mpp, magnification, "{thumb}"),
                    )
            if associated:
                _write_label_and_macro(tif, content_, seed)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
