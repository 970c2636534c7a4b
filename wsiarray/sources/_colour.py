"""ICC colour: pixels turned from the slide's embedded profile into sRGB, on request.

Scanners store RGB in their own colour space and embed its ICC profile (TIFF tag 34675,
OpenSlide's ``color_profile``, DICOM's ICC Profile attribute). wsiarray serves the stored
values unless asked (``wa.open(path, to_srgb=True)``); then :class:`SrgbSource` converts
each block with littleCMS (through Pillow's ``ImageCms``), with the perceptual intent, as
large_image does by default. A slide without a profile is taken to be sRGB already and
served unchanged, as large_image does.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from typing import Any

import numpy as np

from wsiarray.errors import OptionError, UnsupportedFormatError
from wsiarray.sources._base import SlideSource, WrappedSource

__all__ = ["SrgbSource", "in_srgb"]

RGB = ("R", "G", "B")


def in_srgb(source: SlideSource) -> SlideSource:
    """``source`` with its pixels converted to sRGB (itself when it embeds no profile)."""
    meta = source.metadata
    if meta.icc_profile is None:
        return source
    if meta.channels[:3] != RGB or meta.dtype != "uint8":
        msg = (
            f"{source.path}: to_srgb converts 8-bit RGB slides; this one has bands "
            f"{', '.join(meta.channels)} of {meta.dtype}. Open it without to_srgb."
        )
        raise OptionError(msg)
    return SrgbSource(source)


class SrgbSource(WrappedSource):
    """A source whose RGB blocks are converted from its ICC profile to sRGB (alpha kept).

    Parameters
    ----------
    stored : SlideSource
        An 8-bit RGB or RGBA source with ``metadata.icc_profile``.
    """

    def __init__(self, stored: SlideSource) -> None:
        from PIL import ImageCms

        # to_srgb among the options: the spec a dask graph carries reopens it converted
        super().__init__(stored, to_srgb=True)
        try:
            self._profile = ImageCms.ImageCmsProfile(io.BytesIO(stored.metadata.icc_profile))
        except (OSError, ImageCms.PyCMSError) as exc:
            msg = f"{stored.path}: its embedded ICC profile cannot be read ({exc})"
            raise UnsupportedFormatError(msg) from exc
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        self._srgb = srgb
        self.metadata = dataclasses.replace(stored.metadata, icc_profile=srgb.tobytes())
        # one transform per thread: a littleCMS transform keeps a cache of the last pixel,
        # which concurrent calls would share
        self._local = threading.local()

    def _transform(self) -> Any:
        transform = getattr(self._local, "transform", None)
        if transform is None:
            from PIL import ImageCms

            transform = ImageCms.buildTransform(
                self._profile,
                self._srgb,
                "RGB",
                "RGB",
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
            )
            self._local.transform = transform
        return transform

    def read_block(
        self, level: int, y0: int, y1: int, x0: int, x1: int, /, plane: tuple[int, ...] = ()
    ) -> np.ndarray:
        # docstring inherited
        from PIL import Image

        block = self.stored.read(level, slice(y0, y1), slice(x0, x1), plane)
        rgb = Image.fromarray(np.ascontiguousarray(block[..., :3]))
        converted = np.asarray(self._transform().apply(rgb))
        if block.shape[2] == 3:
            return converted
        return np.concatenate([converted, block[..., 3:]], axis=2)
