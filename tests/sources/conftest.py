"""DICOM WSI series written by independent tools (wsidicomizer, wsidicom), made once per session.

Every series is generated into a temporary folder (none is committed) from the shared test
data, in about twelve seconds together:

======================  ===========================================================================
name                    origin
======================  ===========================================================================
``svs-jpeg``            wsidicomizer 0.31 ``WsiDicomizer.convert`` of aperio/CMU-1-Small-Region.svs
                        with its defaults: read through its tiffslide source (opentile, which would
                        copy the JPEG tiles, needs the libturbojpeg system library), so the tiles
                        are decoded and re-encoded as JPEG baseline, 512 px (lossy)
``svs-jpeg-concat``     the same conversion split into concatenations of at most 8 frames
                        (``concatenation=ConcatenationByFrames(8)``): the level is 4 files
``svs-htj2k``           the same SVS converted to HTJ2K lossless (``HTJpeg2000Settings(levels=0)``,
                        RGB, ``force_transcoding=True``): the SVS's decoded pixels, exactly
``ndpi-jpeg``           wsidicomizer of hamamatsu/test3-DAPI-2-(387).ndpi (its 4 levels, re-encoded
                        as JPEG like ``svs-jpeg``; ~7 s, the longest to make)
``cam-j2k``             wsidicom 0.36 ``WsiDicom.save(transcoding=...)`` of
``cam-jpegls``          dicom/multiframe_camelyon_challenge_image.dcm (a YBR JPEG brightfield series)
``cam-rle``             into JPEG 2000 lossless, JPEG-LS lossless, RLE lossless and uncompressed
``cam-raw``             (explicit VR little endian) RGB: its decoded pixels, exactly
``grey16-jpegls``       wsidicomizer of a 16-bit greyscale tiled TIFF written here by tifffile
``grey16-j2k``          (900 x 700, ``GREY16_PATTERN``, 0.5 µm per pixel) into JPEG-LS lossless,
``grey16-raw``          JPEG 2000 lossless and uncompressed MONOCHROME2 16-bit series, 256 px tiles
======================  ===========================================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

SVS = "aperio/CMU-1-Small-Region.svs"
CAMELYON = "dicom/multiframe_camelyon_challenge_image.dcm"
NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"


def grey16_pattern() -> np.ndarray:
    """The 16-bit greyscale image (700 x 900) of the ``grey16-*`` series."""
    y, x = np.mgrid[0:700, 0:900]
    return ((y * 37 + x * 91) % 65521).astype(np.uint16)


@pytest.fixture(scope="session")
def dicom_corpus(
    tmp_path_factory: pytest.TempPathFactory, real_slide: Callable[[str], Path]
) -> dict[str, Path]:
    """``{name: folder}`` of the generated DICOM WSI series (see the module docstring)."""
    pytest.importorskip("wsidicom")
    wsidicomizer = pytest.importorskip("wsidicomizer")
    import tifffile
    from pydicom.uid import generate_uid
    from wsidicom import WsiDicom
    from wsidicom.codec import (
        Channels,
        Jpeg2kSettings,
        JpegLsSettings,
        NumpySettings,
        RleSettings,
    )
    from wsidicom.codec.settings import HTJpeg2000Settings
    from wsidicom.options import ConcatenationByFrames

    convert = wsidicomizer.WsiDicomizer.convert
    root = tmp_path_factory.mktemp("dicom-corpus")
    svs, camelyon = real_slide(SVS), real_slide(CAMELYON)
    corpus = {name: root / name for name in CORPUS}
    # the converters' warnings (UID lengths of the camelyon input) are about their input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert(svs, corpus["svs-jpeg"], uid_generator=generate_uid)
        convert(
            svs,
            corpus["svs-jpeg-concat"],
            uid_generator=generate_uid,
            concatenation=ConcatenationByFrames(8),
        )
        convert(real_slide(NDPI), corpus["ndpi-jpeg"], uid_generator=generate_uid)
        convert(
            svs,
            corpus["svs-htj2k"],
            uid_generator=generate_uid,
            encoding=HTJpeg2000Settings(levels=0, channels=Channels.RGB),
            force_transcoding=True,
        )
        for name, settings in {
            "cam-j2k": Jpeg2kSettings(levels=0, channels=Channels.RGB),
            "cam-jpegls": JpegLsSettings(level=0, channels=Channels.RGB),
            "cam-rle": RleSettings(channels=Channels.RGB),
            "cam-raw": NumpySettings(channels=Channels.RGB),
        }.items():
            with WsiDicom.open(camelyon) as wsi:
                wsi.save(corpus[name], uid_generator=generate_uid, transcoding=settings)
        grey_tiff = root / "grey16.tif"
        tifffile.imwrite(
            grey_tiff,
            grey16_pattern(),
            tile=(256, 256),
            resolution=(20000, 20000),
            resolutionunit="CENTIMETER",
            photometric="minisblack",
        )
        for name, settings in {
            "grey16-jpegls": JpegLsSettings(level=0, bits=16, channels=Channels.GRAYSCALE),
            "grey16-j2k": Jpeg2kSettings(levels=0, bits=16, channels=Channels.GRAYSCALE),
            "grey16-raw": NumpySettings(bits=16, channels=Channels.GRAYSCALE),
        }.items():
            convert(
                grey_tiff,
                corpus[name],
                uid_generator=generate_uid,
                encoding=settings,
                tile_size=256,
                force_transcoding=True,
            )
    return corpus


#: The generated series, by name (see the module docstring for each one's origin).
CORPUS = (
    "svs-jpeg",
    "svs-jpeg-concat",
    "svs-htj2k",
    "ndpi-jpeg",
    "cam-j2k",
    "cam-jpegls",
    "cam-rle",
    "cam-raw",
    "grey16-jpegls",
    "grey16-j2k",
    "grey16-raw",
)
