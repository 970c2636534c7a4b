"""Reader for DICOM whole-slide images (VL Whole Slide Microscopy), over wsidicom.

A DICOM slide is a *series*: one instance (file) per pyramid level, optionally split into
a concatenation of several files, plus label, overview and thumbnail instances. It opens
from the folder that holds the series, from any one of its instance files (the other
instances of the same series in that folder are found by their SeriesInstanceUID), or from
a DICOMweb URL ``http(s)://host/prefix/studies/<StudyInstanceUID>/series/<SeriesInstanceUID>``.
The folder and the instance may also be in object storage (``s3://bucket/prefix/``, any fsspec
URL, with ``storage_options``): wsidicom reads them through fsspec (universal_pathlib paths).

Pixels come from wsidicom's decode of each level's own tiles (frames): no level is ever
resampled from another. Transfer syntaxes are those wsidicom decodes with the installed
codecs (JPEG baseline, JPEG 2000, HTJ2K, JPEG-LS, JPEG XL, RLE, uncompressed); a level in
any other is refused when the slide is opened.
"""

from __future__ import annotations

import itertools
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, override
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from wsiarray.errors import (
    CorruptTileError,
    DamagedFileError,
    DamagedFileWarning,
    OptionError,
    ReaderUnavailableError,
    TruncatedFileError,
    UnsupportedFormatError,
    WsiArrayError,
)
from wsiarray.sources import _vendor
from wsiarray.sources._base import (
    AssociatedInfo,
    LevelInfo,
    PlaneAxis,
    SlideMetadata,
    SlideSource,
)
from wsiarray.sources._store import StorageOptions, is_remote, object_stamp, redact

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydicom import Dataset
    from upath import UPath
    from wsidicom import WsiDicom
    from wsidicom.group import Level

__all__ = [
    "Credentials",
    "DicomSource",
    "holds_dicom",
    "is_dicom_header",
    "is_dicomweb_url",
    "split_credentials",
    "storage_folder",
]

#: A DICOM Part 10 file: a 128-byte preamble, then these four bytes.
DICM_OFFSET = 128
DICM_MAGIC = b"DICM"
#: The SOP class of whole-slide image instances (levels, label, overview, thumbnail).
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
#: The attributes read from every file of a folder to find the series and check it.
HEADER_TAGS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "ImageType",
    "SamplesPerPixel",
    "BitsStored",
    "PhotometricInterpretation",
    # what a TILED_FULL level's frame count must be (checked before wsidicom trusts it)
    "DimensionOrganizationType",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "TotalPixelMatrixRows",
    "TotalPixelMatrixColumns",
    "TotalPixelMatrixFocalPlanes",
    "NumberOfOpticalPaths",
    "ConcatenationUID",
)
#: ``http(s)://[user:password@]host[:port][/prefix]/studies/<uid>/series/<uid>``
DICOMWEB_URL = re.compile(
    r"^(?P<base>https?://[^/?#]+(?:/[^?#]*?)?)/studies/(?P<study>[0-9.]+)"
    r"/series/(?P<series>[0-9.]+)/?$"
)
#: (FFFE,E000) Item and (FFFE,E0DD) Sequence Delimitation Item, little endian as
#: encapsulated pixel data always is.
ITEM_TAG = b"\xfe\xff\x00\xe0"
SEQUENCE_DELIMITER_TAG = b"\xfe\xff\xdd\xe0"
#: What a DICOM image type calls the associated images, and the name wsiarray (as OpenSlide)
#: gives them.
ASSOCIATED = {"LABEL": "label", "OVERVIEW": "macro", "THUMBNAIL": "thumbnail"}
RGB_BANDS = ("R", "G", "B")
#: DICOMweb requests: attempts, and the base of the exponential wait between them (ms).
WEB_ATTEMPTS = 3
WEB_WAIT_MS = 100
INSTALL_HINT = 'pip install "wsiarray[dicom]"'
#: Block size of the reads that scan an instance in storage for its header: the DICOM
#: header of a level instance fits in a few KB; fsspec's default (s3fs 50 MB, HTTP 5 MB)
#: would fetch most of every file just to learn its series.
SCAN_BLOCK = 64 * 1024
#: Headers read at once when a folder is scanned (each a few requests in storage).
SCAN_THREADS = 8
#: Accept header of a frame request answered in the syntax the frame is stored in.
STORED_FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def _import_wsidicom() -> Any:
    try:
        import wsidicom
    except ImportError as exc:
        msg = f"the dicom reader needs wsidicom: {INSTALL_HINT}"
        raise ReaderUnavailableError(msg) from exc
    return wsidicom


def is_dicom_header(header: bytes) -> bool:
    """Whether a file's first bytes are those of a DICOM Part 10 file ("DICM" at byte 128)."""
    return header[DICM_OFFSET : DICM_OFFSET + len(DICM_MAGIC)] == DICM_MAGIC


def _files_in(folder: Path | UPath) -> list[Path | UPath]:
    """The files directly inside ``folder``, in name order."""
    return sorted((entry for entry in folder.iterdir() if entry.is_file()), key=lambda e: e.name)


def _open_dicom(path: Path | UPath) -> BinaryIO | None:
    """``path`` open for reading at its start if it is a DICOM Part 10 file; else (or when it
    cannot be read: not one of a series' files, as for any other reader) ``None``."""
    try:
        fh = _open_binary(path)
        header = fh.read(DICM_OFFSET + len(DICM_MAGIC))
    except OSError:
        return None
    if not is_dicom_header(header):
        fh.close()
        return None
    fh.seek(0)
    return fh


def _dicom_files(folder: Path | UPath) -> Iterator[Path | UPath]:
    """The DICOM Part 10 files directly inside ``folder``, in name order."""
    for entry in _files_in(folder):
        fh = _open_dicom(entry)
        if fh is not None:
            fh.close()
            yield entry


def holds_dicom(folder: Path | UPath) -> Path | UPath | None:
    """The first DICOM file directly inside ``folder``, or ``None`` when it holds none."""
    return next(_dicom_files(folder), None)


def storage_folder(url: str, storage_options: Mapping[str, Any] | None) -> UPath | None:
    """The folder (prefix) in storage that ``url`` names, or ``None`` when it is no prefix.

    Raises
    ------
    UnsupportedFormatError
        The prefix holds no DICOM files.
    ReaderUnavailableError
        wsidicom (and its universal_pathlib) is not installed.
    """
    _import_wsidicom()  # reading folders in storage needs wsidicom's universal_pathlib
    from upath import UPath

    folder = UPath(url, **dict(storage_options or {}))
    try:
        if not folder.is_dir():
            return None
        holds = holds_dicom(folder) is not None
    except (OSError, ValueError):
        return None
    if not holds:
        msg = (
            f"{redact(url)} is a folder (prefix) in storage without DICOM files, not a slide. "
            "Give the URL of the slide object itself, or of an OME-Zarr store (ending in "
            ".zarr), or of a folder of DICOM WSI instances."
        )
        raise UnsupportedFormatError(msg)
    return folder


def _open_binary(path: Path | UPath) -> BinaryIO:
    """``path`` opened for reading; in storage, in small blocks (:data:`SCAN_BLOCK`)."""
    if isinstance(path, Path):
        return path.open("rb")
    return path.open("rb", block_size=SCAN_BLOCK)  # type: ignore[call-arg,return-value]


def _identity(path: object) -> str:
    """What tells two paths of one file apart from others': a local file's resolved path, an
    object's URL."""
    text = str(path)
    return text if is_remote(text) else str(Path(text).resolve())


def is_dicomweb_url(path: object) -> bool:
    """Whether ``path`` is a DICOMweb series URL (``.../studies/<uid>/series/<uid>``)."""
    return isinstance(path, str) and DICOMWEB_URL.match(path) is not None


@dataclass(frozen=True, slots=True)
class Credentials:
    """A DICOMweb user name and password, never shown: its repr is masked.

    A URL's ``user:password@`` is moved into this option, so that the slide's path (shown in
    reprs, errors and the tree's attributes) carries no secret while the spec that dask
    pickles can still reopen the series.
    """

    username: str
    password: str

    def __repr__(self) -> str:
        return "Credentials(***)"


@dataclass(frozen=True, slots=True)
class _OpticalPath:
    """An optical path's identifier, description and objective lens power."""

    identifier: str
    description: str
    objective: float | None
    icc_profile: bytes | None = None


@dataclass(frozen=True, slots=True)
class _Instance:
    """What the folder scan learns of one DICOM file."""

    path: Path | UPath
    sop_class: str
    study: str
    series: str
    image_type: str
    transfer_syntax: Any  # pydicom UID
    samples_per_pixel: int
    bits: int
    photometric: str
    pixel_data_at: int | None
    size: int
    #: The object's version (size and ETag) for an instance in storage, else None.
    version: tuple[Any, ...] | None
    #: NumberOfFrames, and what a TILED_FULL instance's size, tile size, focal planes and
    #: optical paths make it (None where it does not say: sparse tiling, a concatenation)
    frames: int = 0
    grid_frames: int | None = None


class DicomSource(SlideSource):
    """A DICOM whole-slide image series read with wsidicom.

    Parameters
    ----------
    path : Path or str
        The folder of the series, one of its instance files, or a DICOMweb series URL. The
        folder or instance may be a URL in storage (``s3://bucket/prefix/``, any fsspec URL).
    pyramid : int, optional
        Which pyramid of the series to read when it holds several (wsidicom groups levels
        into pyramids by their image origin and extent); the first by default.
    z : float, optional
        Read only this focal plane (in µm, as the dataset states it). By default a z-stack
        whose every level holds the same focal planes is read whole, its planes the
        dimension ``z`` (in mm); any other series reads wsidicom's default plane: the only
        one, or the middle one.
    credentials : Credentials, optional
        DICOMweb user and password; set from a URL's ``user:password@``.
    storage_options : mapping, optional
        For a folder or instance in storage: the fsspec filesystem's options (credentials,
        endpoint, ...); never shown.

    Notes
    -----
    * Levels are the levels of the selected pyramid that hold the focal plane and every
      optical path read; a level missing one of them is left out.
    * A colour (RGB or YBR) series reads its first optical path as channels R, G, B. A
      greyscale (MONOCHROME2) series reads every optical path as one channel, named by the
      optical path's description (or its identifier where descriptions are missing or
      repeat), in the order of the OpticalPathSequence; a single unnamed path is ``L``.
    * Tiles that a TILED_SPARSE instance does not store read as wsidicom's blank tile, the
      background: white for colour series, 0 for MONOCHROME2 (fluorescence).
    * In storage, an instance cut short is found when a lost frame is read (a
      :class:`~wsiarray.errors.CorruptTileError` naming it), not at open: finding it at open
      means walking every frame's item header, a request per frame or the whole file.
    * Associated images: LABEL instances as ``label``, OVERVIEW as ``macro`` and THUMBNAIL as
      ``thumbnail`` (OpenSlide's names); one whose transfer syntax no installed codec
      decodes is left out, as wsidicom leaves it.
    """

    name: ClassVar[str] = "dicom"
    remote: ClassVar[bool] = True

    @classmethod
    @override
    def claims(cls, path: Path, header: bytes, /) -> bool:
        return is_dicomweb_url(path) or is_dicom_header(header)

    def __init__(
        self,
        path: Path | str,
        /,
        *,
        pyramid: int = 0,
        z: float | None = None,
        credentials: Credentials | None = None,
        storage_options: StorageOptions | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        wsidicom = _import_wsidicom()
        location: Path | UPath | None = None
        if is_dicomweb_url(path):
            path, credentials = split_credentials(str(path), credentials)
            label = path
        elif is_remote(path):
            from upath import UPath

            options["storage_options"] = StorageOptions(storage_options)
            location = UPath(str(path), **StorageOptions(storage_options).to_dict())
            label = redact(str(path))
        else:
            path = location = Path(path)
            label = str(path)
        extra = {"credentials": credentials} if credentials is not None else {}
        super().__init__(path, pyramid=pyramid, z=z, **extra, **options)  # type: ignore[arg-type]
        self._label = label
        self._read_lock = threading.Lock()
        self._version: tuple[Any, ...] | None = None
        try:
            if location is None:
                self._wsi = _open_web(wsidicom, str(path), credentials)
            else:
                self._wsi, self._version = _open_files(wsidicom, location)
            try:
                self._select(pyramid, z)
                self.metadata = self._read_metadata()
            except BaseException:
                self.close()
                raise
        except (WsiArrayError, OSError):
            raise
        except Exception as exc:
            # wsidicom opened the series, and what it then cannot make sense of in its
            # instances is damage; a DamagedFileError ends 'auto' (fuzz 2026.376: TILED_FULL
            # relabelled TILED_SPARSE, "Undetermined tile type", then crashed OpenSlide's open)
            msg = redact(
                f"{label}: wsidicom cannot read the series' instances: {type(exc).__name__}: "
                f"{exc}. {_NO_FALLBACK}"
            )
            raise DamagedFileError(msg) from exc

    # -- choosing the pyramid, focal plane and optical paths ----------------------------------

    def _select(self, pyramid: int, z: float | None) -> None:
        count = len(self._wsi.pyramids)
        if not 0 <= pyramid < count:
            msg = f"pyramid={pyramid!r}: {self._label} has {count} pyramid(s), 0 to {count - 1}"
            raise OptionError(msg)
        self._pyramid = pyramid
        self._wsi.set_selected_pyramid(pyramid)
        base = self._wsi.pyramids[pyramid].base_level
        if z is not None and z not in base.focal_planes:
            msg = f"z={z!r}: the focal planes of {self._label} are {sorted(base.focal_planes)} µm"
            raise OptionError(msg)
        self._z = z
        image_data = base.default_instance.image_data
        self._samples = image_data.samples_per_pixel
        self._dtype = np.dtype(image_data.dtype)
        self._photometric = image_data.photometric_interpretation
        self._optical_paths = self._read_optical_paths()
        ordered = [p.identifier for p in self._optical_paths]
        paths = [p for p in ordered if p in base.optical_paths]
        paths += [p for p in base.optical_paths if p not in paths]
        # colour: the first optical path's R, G, B; grey: one channel per optical path
        self._paths = paths[:1] if self._samples > 1 else paths
        self._levels: list[Level] = [
            level
            for level in self._wsi.pyramids[pyramid].levels
            if all(p in level.optical_paths for p in self._paths)
            and (z is None or z in level.focal_planes)
        ]
        for index, level in enumerate(self._levels):
            self._check_concatenation(index, level)
        # a z-stack is a dimension only where every level holds the same planes: a plane
        # missing from a level could not be read at that level
        planes = {tuple(sorted(level.focal_planes)) for level in self._levels}
        self._planes: tuple[float, ...] = ()
        if z is None and len(planes) == 1 and len(next(iter(planes))) > 1:
            self._planes = next(iter(planes))

    def _check_concatenation(self, index: int, level: Level) -> None:
        """Refuse a level split into a concatenation of which wsidicom holds only some parts.

        wsidicom 0.36's DICOMweb source keeps one instance of a concatenation (one of four
        parts, for a series wsidicomizer wrote with ConcatenationByFrames(8)) and reads the
        frames of the others from it: wrong pixels, without an error.
        """
        parts = [dataset.as_dataset() for dataset in level.datasets]
        total = parts[0].get("InConcatenationTotalNumber")
        if "ConcatenationUID" not in parts[0] or total is None:
            return
        held = {part.get("InConcatenationNumber") for part in parts}
        if len(held) < int(total):
            msg = (
                f"{self._label}: level {index} is a concatenation of {int(total)} instances, of "
                f"which wsidicom reads {len(held)}; its other frames would read wrong. Open the "
                "series from its files, or from a server whose metadata wsidicom reads whole."
            )
            raise UnsupportedFormatError(msg)

    # -- metadata ------------------------------------------------------------------------------

    def _read_metadata(self) -> SlideMetadata:
        spacing = self._levels[0].pixel_spacing
        mm_x = mm_y = None
        if spacing is not None and spacing.width > 0 and spacing.height > 0:
            mm_x, mm_y = float(spacing.width), float(spacing.height)
        objective = next(
            (
                p.objective
                for p in self._optical_paths
                if p.identifier in self._paths and p.objective is not None
            ),
            None,
        )
        magnification, derived = _vendor.magnification_or_derived(objective, mm_x)
        fill = 0 if self._photometric == "MONOCHROME2" else 255
        channels = self._channel_names()
        damage = self._relabelled_levels()
        for message in damage:
            warnings.warn(message, DamagedFileWarning, stacklevel=3)
        return SlideMetadata(
            format="dicom",
            reader=self.name,
            levels=tuple(
                LevelInfo(
                    shape=(level.size.height, level.size.width),
                    tile=(level.tile_size.height, level.tile_size.width),
                )
                for level in self._levels
            ),
            dtype=self._dtype.name,
            channels=channels,
            mm_x=mm_x,
            mm_y=mm_y,
            magnification=magnification,
            magnification_derived=derived,
            background=(fill,) * len(channels) if self._samples == 1 else (fill,) * 3,
            properties=self._properties(),
            associated=tuple(self._associated_info()),
            icc_profile=self._icc_profile(),
            planes=(PlaneAxis("z", tuple(z / 1000 for z in self._planes), "mm"),)
            if self._planes
            else (),
            warnings=damage,
        )

    def _relabelled_levels(self) -> tuple[str, ...]:
        """Warn of a label, overview or thumbnail the size of a level the pyramid lacks.

        wsidicom sorts instances by their ImageType: a level whose VOLUME became LABEL or
        OVERVIEW is that image, and the pyramid is a level short, without a word (fuzz seeds
        424242 and 8675309: BPAEC's 9_0 and 12_0, 7 of 8 levels). Such an image is the size
        of a missing step: between two levels a step too far apart, or one step past either
        end, stored in the levels' frame size (a real label or thumbnail is its own frame).
        A warning, not an error: a series may hold a thumbnail of any size.
        """
        widths = [level.size.width for level in self._levels]
        steps = [upper / lower for upper, lower in itertools.pairwise(widths)]
        if len(steps) < 2 or min(steps) < 1.5:
            return ()
        step, base = min(steps), self._levels[0].size
        tile = self._levels[0].tile_size
        # the widths a missing level would have: inside a gap, or past either end
        missing = [
            (upper / step, f"between {upper} and {lower} pixels wide")
            for upper, lower in itertools.pairwise(widths)
            if upper / lower > 1.5 * step
        ]
        ends = [
            (widths[0] * step, f"above its {widths[0]} pixel wide base"),
            (widths[-1] / step, f"below its {widths[-1]} pixel wide last level"),
        ]
        series = (
            self._wsi.labels,
            self._wsi.overviews,
            self._wsi.pyramids[self._pyramid].thumbnails,
        )
        found = []
        for group in (group for images in series if images for group in images.groups):
            width, height = group.size.width, group.size.height
            if abs(base.width * height - width * base.height) >= base.width + base.height:
                continue  # not the scan's aspect: a label or overview of its own
            framed = group.default_instance.image_data.tile_size == tile
            for expected, where in missing + (ends if framed else []):
                if abs(expected - width) <= 1:
                    kind = group.default_instance.image_type.value
                    found.append(
                        f"{self._label}: an instance of image type {kind}, {width} x {height} "
                        f"pixels, is the size of a level the pyramid lacks, {where} (its "
                        f"levels are {step:g}x apart): a level may have been labelled {kind}, "
                        f"and the slide has {len(widths)} levels. If one is missing, the file "
                        "is damaged"
                    )
        return tuple(found)

    def _icc_profile(self) -> bytes | None:
        """The colour series' optical path's ICC profile (a greyscale series' channels are not
        the colours a profile describes; over DICOMweb the profile is bulk data wsidicom
        does not fetch, so None)."""
        if self._samples == 1:
            return None
        return next(
            (p.icc_profile for p in self._optical_paths if p.identifier in self._paths), None
        )

    def _channel_names(self) -> tuple[str, ...]:
        if self._samples > 1:
            return RGB_BANDS
        described = {p.identifier: p.description for p in self._optical_paths}
        names = [described.get(p, "") for p in self._paths]
        if all(names) and len(set(names)) == len(names):
            return tuple(names)
        if len(self._paths) == 1:
            return ("L",)
        return tuple(self._paths)

    def _properties(self) -> dict[str, str]:
        base = self._levels[0].default_instance.image_data
        uids = self._wsi.uids
        values: dict[str, object] = {
            "StudyInstanceUID": uids.study_instance if uids else None,
            "SeriesInstanceUID": uids.series_instance if uids else None,
            "TransferSyntaxUID": base.transfer_syntax,
            "PhotometricInterpretation": self._photometric,
            "BitsStored": base.bits,
            "pyramid": self._pyramid,
            "pyramid-count": len(self._wsi.pyramids),
            "focal-planes": ",".join(str(z) for z in self._levels[0].focal_planes),
        }
        values |= self._slide_properties()
        for index, path in enumerate(self._optical_paths):
            values[f"OpticalPath[{index}].Identifier"] = path.identifier
            values[f"OpticalPath[{index}].Description"] = path.description
            values[f"OpticalPath[{index}].ObjectiveLensPower"] = path.objective
        for index, level in enumerate(self._levels):
            image_data = level.default_instance.image_data
            values[f"level[{index}].TransferSyntaxUID"] = image_data.transfer_syntax
            values[f"level[{index}].pixel-spacing-mm"] = (
                f"{level.pixel_spacing.height},{level.pixel_spacing.width}"
                if level.pixel_spacing is not None
                else None
            )
        return {
            f"dicom.{key}": str(value)
            for key, value in values.items()
            if value is not None and value != ""
        }

    def _read_optical_paths(self) -> list[_OpticalPath]:
        """The optical paths of the selected pyramid, in the OpticalPathSequence's order."""
        pyramid = self._wsi.pyramids[self._pyramid]
        try:
            return [
                _OpticalPath(
                    p.identifier,
                    (p.description or "").strip(),
                    p.objective.objective_power if p.objective else None,
                    p.icc_profile or None,
                )
                for p in pyramid.metadata.optical_paths
            ]
        except Exception:  # noqa: BLE001 - read the sequence itself, as below
            # wsidicom's optical path model fails on a palette LUT whose data a DICOMweb
            # server left out as bulk data (Orthanc does): the plain attributes are there
            dataset = pyramid.base_level.datasets[0].as_dataset()
            return [
                _OpticalPath(
                    str(item.get("OpticalPathIdentifier", "")),
                    str(item.get("OpticalPathDescription", "") or "").strip(),
                    item.get("ObjectiveLensPower"),
                )
                for item in dataset.get("OpticalPathSequence", [])
            ]

    def _slide_properties(self) -> dict[str, object]:
        """Equipment, series and slide attributes, where wsidicom's slide metadata parses."""
        try:
            meta = self._wsi.metadata
        except Exception:  # noqa: BLE001 - the same bulk data as above, in the label's
            return {}
        equipment, series, slide = meta.equipment, meta.series, meta.slide
        return {
            "AcquisitionDateTime": meta.pyramid.image.acquisition_datetime,
            "Manufacturer": equipment.manufacturer if equipment else None,
            "ManufacturerModelName": equipment.model_name if equipment else None,
            "DeviceSerialNumber": equipment.device_serial_number if equipment else None,
            "SoftwareVersions": "\\".join(equipment.software_versions or []) if equipment else None,
            "SeriesDescription": series.description if series else None,
            "ContainerIdentifier": slide.identifier if slide else None,
        }

    def _associated_groups(self) -> dict[str, Any]:
        """The first label, overview and stored thumbnail of the series, by wsiarray name."""
        groups = {
            "label": self._wsi.labels,
            "macro": self._wsi.overviews,
            "thumbnail": self._wsi.pyramids[self._pyramid].thumbnails,
        }
        return {name: series.groups[0] for name, series in groups.items() if series}

    def _associated_info(self) -> Iterator[AssociatedInfo]:
        for name, group in self._associated_groups().items():
            samples = group.default_instance.image_data.samples_per_pixel
            yield AssociatedInfo(name, (group.size.height, group.size.width, samples))

    # -- pixels ----------------------------------------------------------------------------------

    @override
    def read_block(
        self, level: int, y0: int, y1: int, x0: int, x1: int, /, plane: tuple[int, ...] = ()
    ) -> np.ndarray:
        wsi_level = self._levels[level]
        z = self._planes[plane[0]] if plane else self._z
        planes = []
        for path in self._paths:
            try:
                # the level's own scale (``Level.level``, wsidicom's log2 of the downsample)
                # reads that level's tiles stitched, never scaled from another level. One
                # call at a time: concurrent calls for two focal planes of one instance
                # returned the other plane's frames now and then (2 of 25 tiles, in full
                # test runs); each call decodes its tiles on wsidicom's own threads
                with self._read_lock:
                    pixels = self._wsi.read_region(
                        (x0, y0),
                        wsi_level.level,
                        (x1 - x0, y1 - y0),
                        z=z,
                        path=path,
                        pyramid=self._pyramid,
                        as_array=True,
                    )
            except Exception as exc:
                files = _files_of(wsi_level) or self._label
                msg = (
                    f"{files}: pixels y={y0}:{y1}, x={x0}:{x1} of level {level} (optical path "
                    f"{path!r}) cannot be read: {type(exc).__name__}: {exc}. The file is "
                    "damaged or incomplete."
                )
                raise CorruptTileError(msg) from exc
            pixels = np.asarray(pixels)
            if pixels.size != (y1 - y0) * (x1 - x0) * self._samples:
                # a tampered Rows/Columns: wsidicom stitches frames of another size
                msg = (
                    f"{_files_of(wsi_level) or self._label}: pixels y={y0}:{y1}, x={x0}:{x1} "
                    f"of level {level} read as {pixels.shape}, not {y1 - y0} x {x1 - x0} x "
                    f"{self._samples}: the instance's frame size (Rows, Columns) does not match "
                    "its frames. The file is damaged."
                )
                raise CorruptTileError(msg)
            planes.append(pixels)
        if self._samples > 1:
            return planes[0].reshape(y1 - y0, x1 - x0, self._samples)
        return np.stack([p.reshape(y1 - y0, x1 - x0) for p in planes], axis=-1)

    @override
    def read_associated(self, name: str, /) -> np.ndarray:
        if name not in self._associated_groups():
            msg = f"{self._label} has no associated image {name!r}"
            raise KeyError(msg)
        try:
            if name == "label":
                image = self._wsi.read_label(as_array=True)
            elif name == "macro":
                image = self._wsi.read_overview(as_array=True)
            else:
                group = self._associated_groups()[name]
                image = self._wsi.read_thumbnail(
                    (group.size.width, group.size.height), pyramid=self._pyramid, as_array=True
                )
        except Exception as exc:
            msg = f"{self._label}: the associated image {name!r} cannot be decoded ({exc})"
            raise CorruptTileError(msg) from exc
        image = np.asarray(image)
        return image if image.ndim == 3 else image[..., np.newaxis]

    @override
    def close(self) -> None:
        self._wsi.close()

    @override
    def stamp(self) -> tuple[Any, ...] | None:
        return self._version


# -- opening ------------------------------------------------------------------------------------


def split_credentials(url: str, given: Credentials | None) -> tuple[str, Credentials | None]:
    """The URL without ``user:password@``, and the credentials (from the URL or ``given``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, given
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, Credentials(parts.username or "", parts.password or "")


def _open_web(wsidicom: Any, url: str, credentials: Credentials | None) -> WsiDicom:
    """Open the series of a DICOMweb URL (the URL carries no credentials here)."""
    match = DICOMWEB_URL.match(url)
    if match is None:  # pragma: no cover - claims() checked the pattern
        msg = f"{url} is not a DICOMweb series URL (.../studies/<uid>/series/<uid>)"
        raise UnsupportedFormatError(msg)
    from dicomweb_client.api import DICOMwebClient
    from requests import Session

    session = Session()
    if credentials is not None:
        session.auth = (credentials.username, credentials.password)
    try:
        client = DICOMwebClient(match["base"], session=session)
        # dicomweb-client retries any failed request 5 times, waiting 1, 2, 4, 8 and 16 s: a
        # server that is down would take half a minute to say so
        client.set_http_retry_params(
            retry=True, max_attempts=WEB_ATTEMPTS, wait_exponential_multiplier=WEB_WAIT_MS
        )
        web_client = wsidicom.WsiDicomWebClient(client)
        try:
            return wsidicom.WsiDicom.open_web(web_client, match["study"], match["series"])
        except Exception:
            # wsidicom asks for frames in the syntaxes it prefers and takes only 406 for "not
            # available": Orthanc 1.10 answers 500 for a JPEG 2000 or RLE series. Ask for the
            # series' own syntax, which every server can send.
            stored = _stored_transfer_syntax(session, match)
            if stored is None:
                raise
            return wsidicom.WsiDicom.open_web(
                web_client, match["study"], match["series"], requested_transfer_syntax=stored
            )
    except Exception as exc:
        text = str(exc)
        if credentials is not None and credentials.password:
            text = text.replace(credentials.password, "***")
        msg = f"{url}: the DICOMweb series cannot be opened: {type(exc).__name__}: {text}"
        raise UnsupportedFormatError(msg) from exc


def _stored_transfer_syntax(session: Any, match: re.Match[str]) -> str | None:
    """The transfer syntax of the series' first frame as stored, or None if the server will
    not say: frame 1 asked for "as stored" (``transfer-syntax=*``, DICOM PS3.18) names it in
    its Content-Type."""
    series = f"{match['base']}/studies/{match['study']}/series/{match['series']}"
    try:
        listing = session.get(
            f"{series}/instances", headers={"Accept": "application/dicom+json"}, timeout=30
        )
        instance = listing.json()[0]["00080018"]["Value"][0]
        frame = session.get(
            f"{series}/instances/{instance}/frames/1",
            headers={"Accept": STORED_FRAMES},
            timeout=30,
            stream=True,
        )
        frame.close()
        found = re.search(r'transfer-syntax="?([0-9.]+)', frame.headers.get("Content-Type", ""))
    except (OSError, ValueError, LookupError):  # requests' errors are OSErrors
        return None
    return found.group(1) if found else None


def _open_files(wsidicom: Any, path: Path | UPath) -> tuple[WsiDicom, tuple[Any, ...] | None]:
    """Find the series of ``path`` (a folder or an instance file), check it, and open it;
    with the version of the series' objects when they are in storage."""
    folder = path if path.is_dir() else path.parent
    instances = _scan_folder(folder)
    members = _series_members(path, instances)
    from wsidicom.codec import Codec

    readable = []
    for instance in members:
        supported = Codec.is_supported(
            instance.transfer_syntax,
            instance.samples_per_pixel,
            instance.bits,
            instance.photometric,
        )
        if supported:
            if instance.image_type == "VOLUME":  # BPAEC's label says 3 optical paths in 1
                _check_frame_grid(instance)
            if instance.version is None:
                _check_complete(instance)
            readable.append(instance)
        elif instance.image_type == "VOLUME":
            raise UnsupportedFormatError(_undecodable_message(instance, wsidicom.__version__))
    remote = any(i.version is not None for i in readable)
    version = tuple(sorted((i.path.name, *i.version) for i in readable if i.version)) or None
    wsi = _open_files_of(wsidicom, path, readable)
    try:
        clashes = _clashing_instances(wsi)
    except BaseException:
        wsi.close()
        raise
    if clashes:
        wsi.close()
        named = _identity(path) if path.is_file() else None
        if named is not None and all(named in group for group in clashes):
            # the user named one of the copies: read it, without the others
            others = {file for group in clashes for file in group if file != named}
            kept = [i for i in readable if _identity(i.path) not in others]
            if remote:
                version = tuple(sorted((i.path.name, *i.version) for i in kept if i.version))
            return _open_files_of(wsidicom, path, kept), version
        listed = "; ".join(" and ".join(str(file) for file in sorted(group)) for group in clashes)
        msg = (
            f"{path}: instances of the series hold the same level, optical path and focal "
            f"plane: {listed}. wsidicom would read whichever it met first; open the instance "
            "file to read, or keep one of each in the folder."
        )
        raise UnsupportedFormatError(msg)
    # the files of the pyramids' levels: wsidicom keeps a file open that it did not place
    opened = {
        _identity(file)
        for pyramid in wsi.pyramids
        for level in pyramid.levels
        for instance in level.instances.values()
        for file in getattr(instance.image_data, "files", None) or []
    }
    # a level, or an instance whose ImageType lacks the value that says what it is, that
    # wsidicom leaves out would make a quietly smaller pyramid (a tampered ImageType lost
    # BPAEC's base level); others it leaves out (an associated image, BPAEC's
    # REGIONLOCALIZER map) are only those images missing
    dropped = [
        f"{i.path} ({i.image_type or 'no'} image type)"
        for i in readable
        if i.image_type in ("VOLUME", "") and _identity(i.path) not in opened
    ]
    if dropped:
        wsi.close()
        msg = (
            f"{path}: wsidicom leaves out instance(s) {', '.join(dropped)} of the series (a "
            "level needs image type VOLUME, and a tile size and UIDs that match the base "
            "level's): the pyramid would be incomplete. The file is damaged or not of this "
            f"series. {_NO_FALLBACK}"
        )
        raise DamagedFileError(msg)
    return wsi, version


#: Why a DICOM WSI series wsidicom refuses is not offered to OpenSlide by ``reader="auto"``.
_NO_FALLBACK = (
    "OpenSlide was not tried: its DICOM reader crashed the process on such a file (a "
    "TILED_FULL instance relabelled TILED_SPARSE); reader='openslide' tries it"
)


def _open_files_of(wsidicom: Any, path: Path | UPath, instances: Sequence[_Instance]) -> WsiDicom:
    try:
        return wsidicom.WsiDicom.open([i.path for i in instances])
    except Exception as exc:
        # not damage: wsidicom refuses some sets of good files (highdicom's pair sharing one
        # SOPInstanceUID), which OpenSlide reads, file by file
        msg = redact(f"{path}: wsidicom cannot open the series: {type(exc).__name__}: {exc}")
        raise UnsupportedFormatError(msg) from exc


def _clashing_instances(wsi: WsiDicom) -> list[set[str]]:
    """Files of instances that hold the same level, optical path and focal plane.

    wsidicom keeps all of them and reads the first it was given: a folder holding two copies
    of a level (highdicom's test files, a re-export beside the original) would read one of
    them whichever file was named.
    """
    clashes = []
    for pyramid in wsi.pyramids:
        for level in pyramid.levels:
            holders: dict[tuple[str, float], list[Any]] = {}
            for instance in level.instances.values():
                for optical_path in instance.optical_paths:
                    for plane in instance.focal_planes:
                        holders.setdefault((optical_path, plane), []).append(instance)
            for instances in holders.values():
                if len(instances) > 1:
                    files = {
                        _identity(file)
                        for instance in instances
                        for file in getattr(instance.image_data, "files", None) or []
                    }
                    if files not in clashes:
                        clashes.append(files)
    return clashes


def _scan_folder(folder: Path | UPath) -> list[_Instance]:
    """The DICOM files directly inside ``folder``, in name order, their headers read a few at
    a time: in storage each costs about 3 requests (BPAEC's 10 files from S3, moto's server:
    41 requests, 1.2 s one after the other)."""
    with ThreadPoolExecutor(SCAN_THREADS) as pool:
        return [i for i in pool.map(_scan, _files_in(folder)) if i is not None]


def _scan(path: Path | UPath) -> _Instance | None:
    """Read the header of one DICOM file (not its pixel data); None if it is no DICOM file."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    fh = _open_dicom(path)
    if fh is None:
        return None
    try:
        with fh:
            dataset = dcmread(fh, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
            # pydicom stops at the Pixel Data element's tag: where the frames start
            pixel_data_at = fh.tell()
    except (EOFError, OSError) as exc:
        msg = f"{path} is truncated: its DICOM header ends early ({exc}). Copy it again."
        raise TruncatedFileError(msg) from exc
    except (InvalidDicomError, ValueError, KeyError, TypeError) as exc:
        msg = f"{path} is not a readable DICOM file: {type(exc).__name__}: {exc}"
        raise UnsupportedFormatError(msg) from exc
    if isinstance(path, Path):
        size, version = path.stat().st_size, None
    else:
        info = path.fs.info(path.path)
        size, version = int(info["size"]), object_stamp(info)
    return _instance(path, dataset, pixel_data_at, size, version)


def _instance(
    path: Path | UPath,
    dataset: Dataset,
    pixel_data_at: int,
    size: int,
    version: tuple[Any, ...] | None,
) -> _Instance:
    image_type = list(dataset.get("ImageType") or [])
    meta = dataset.file_meta
    return _Instance(
        path=path,
        sop_class=str(dataset.get("SOPClassUID", meta.get("MediaStorageSOPClassUID", ""))),
        study=str(dataset.get("StudyInstanceUID", "")),
        series=str(dataset.get("SeriesInstanceUID", "")),
        image_type=str(image_type[2]) if len(image_type) > 2 else "",
        transfer_syntax=meta.get("TransferSyntaxUID"),
        samples_per_pixel=int(dataset.get("SamplesPerPixel", 1)),
        bits=int(dataset.get("BitsStored", 8)),
        photometric=str(dataset.get("PhotometricInterpretation", "")),
        pixel_data_at=pixel_data_at if pixel_data_at < size else None,
        size=size,
        version=version,
        frames=int(dataset.get("NumberOfFrames", 1) or 1),
        grid_frames=_grid_frames(dataset),
    )


def _grid_frames(dataset: Dataset) -> int | None:
    """The frames a TILED_FULL instance's matrix, tile size, focal planes and optical paths
    call for, or None where that is not stated (sparse tiling, a concatenation's part)."""
    if str(dataset.get("DimensionOrganizationType", "")) != "TILED_FULL":
        return None
    if "ConcatenationUID" in dataset:
        return None
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        matrix = int(dataset.TotalPixelMatrixRows), int(dataset.TotalPixelMatrixColumns)
    except (AttributeError, TypeError, ValueError):
        return None
    if rows <= 0 or columns <= 0:
        return 0
    planes = int(dataset.get("TotalPixelMatrixFocalPlanes", 1) or 1)
    paths = int(dataset.get("NumberOfOpticalPaths", 1) or 1)
    return -(-matrix[0] // rows) * -(-matrix[1] // columns) * planes * paths


def _series_members(path: Path | UPath, instances: Sequence[_Instance]) -> list[_Instance]:
    """The whole-slide instances of the series ``path`` names (or the folder's only series)."""
    wsi = [i for i in instances if i.sop_class == WSI_SOP_CLASS]
    if path.is_file():
        chosen = next((i for i in instances if i.path == path), None)
        if chosen is None or chosen.sop_class != WSI_SOP_CLASS:
            sop = chosen.sop_class if chosen else "unknown"
            msg = (
                f"{path} is a DICOM file but not a whole-slide image (SOP class {sop}, not VL "
                f"Whole Slide Microscopy Image {WSI_SOP_CLASS})"
            )
            raise UnsupportedFormatError(msg)
        key = (chosen.study, chosen.series)
    else:
        keys = sorted({(i.study, i.series) for i in wsi if i.image_type == "VOLUME"})
        if not keys:
            msg = f"{path} holds no DICOM whole-slide image level (VOLUME) instance"
            raise UnsupportedFormatError(msg)
        if len(keys) > 1:
            listed = "; ".join(
                f"series {series} (e.g. {next(i.path.name for i in wsi if i.series == series)})"
                for _, series in keys
            )
            msg = (
                f"{path} holds {len(keys)} whole-slide series: {listed}. Open one instance "
                "file of the series to read."
            )
            raise UnsupportedFormatError(msg)
        key = keys[0]
    # a member of the series whose SOP class is no UID at all is damage, not another kind of
    # object: a flipped bit in it made wsidicom skip the instance, one level fewer, silently
    garbled = [i.path for i in instances if (i.study, i.series) == key and not _is_uid(i.sop_class)]
    if garbled:
        msg = (
            f"{path}: instance(s) {', '.join(map(str, garbled))} of the series have a SOP class "
            "UID that is not a UID; the series would be read without them. The files are "
            "damaged: copy them again"
        )
        raise DamagedFileError(msg)
    return [i for i in wsi if (i.study, i.series) == key]


def _is_uid(value: str) -> bool:
    """Whether ``value`` is a DICOM UID: digits in dot-separated parts, at most 64 long."""
    parts = value.split(".")
    return 0 < len(value) <= 64 and all(part.isdigit() and part.isascii() for part in parts)


def _undecodable_message(instance: _Instance, version: str) -> str:
    syntax = instance.transfer_syntax
    name = getattr(syntax, "name", "") or "an unknown transfer syntax"
    return (
        f"{instance.path}: its pixel data is encoded as {name} ({syntax}; "
        f"{instance.samples_per_pixel} sample(s) of {instance.bits} bits, "
        f"{instance.photometric}), which wsidicom {version} cannot decode with the installed "
        "codecs. wsidicom decodes JPEG, JPEG 2000, HTJ2K, JPEG-LS, JPEG XL, RLE and "
        "uncompressed pixel data with imagecodecs (pip install imagecodecs) or the pylibjpeg "
        "plugins (pip install pylibjpeg-openjpeg pylibjpeg-rle pyjpegls)."
    )


def _check_frame_grid(instance: _Instance) -> None:
    """Raise :class:`DamagedFileError` if a TILED_FULL instance's frames are not its grid's.

    wsidicom trusts TotalPixelMatrixRows and Columns: a tampered one (2³² - 1) opened as a
    level of that size, and building its coordinates ran out of memory.
    """
    expected = instance.grid_frames
    if expected is not None and expected != instance.frames:
        msg = (
            f"{instance.path}: its TILED_FULL pixel matrix, tile size, focal planes and "
            f"optical paths call for {expected:,} frames, but it holds {instance.frames:,}, "
            "so the file is damaged"
        )
        raise DamagedFileError(msg)


def _check_complete(instance: _Instance) -> None:
    """Raise :class:`TruncatedFileError` if the pixel data runs past the end of the file.

    wsidicom opens a cut-off instance without a word and fails on the first read of a lost
    frame; walking the frames' item headers (8 bytes each) finds the cut at open.
    """
    path, start, size = instance.path, instance.pixel_data_at, instance.size
    if start is None:
        msg = f"{path} is truncated: it has {size:,} bytes and ends before its pixel data"
        raise TruncatedFileError(msg)
    syntax = instance.transfer_syntax
    implicit = bool(getattr(syntax, "is_implicit_VR", False))
    order = "little" if getattr(syntax, "is_little_endian", True) else "big"
    with _open_binary(path) as fh:
        fh.seek(start)
        header = fh.read(8 if implicit else 12)
        length = int.from_bytes(header[-4:], order)
        position = start + len(header)
        if length != 0xFFFFFFFF:  # native pixel data: one value of stated length
            end = position + length
        else:  # encapsulated: an offset table item, then one item per fragment
            end = position
            while True:
                fh.seek(end)
                item = fh.read(8)
                if len(item) < 8:
                    end = size + 1
                    break
                if item[:4] == SEQUENCE_DELIMITER_TAG:
                    end += 8
                    break
                if item[:4] != ITEM_TAG:
                    msg = (
                        f"{path}: its encapsulated pixel data is damaged (no item at byte {end:,}). "
                        "Copy the file again."
                    )
                    raise UnsupportedFormatError(msg)
                end += 8 + int.from_bytes(item[4:], "little")
    if len(header) < 8 or end > size:
        msg = (
            f"{path} is truncated: it has {size:,} bytes but its pixel data reaches byte "
            f"{end:,}. Copy the file again completely."
        )
        raise TruncatedFileError(msg)


def _files_of(level: Level) -> str:
    """The files a level is read from (for messages), or "" when not from files."""
    files = getattr(level.default_instance.image_data, "files", None) or []
    return ", ".join(redact(str(file)) for file in files)
