"""Which reader opens a file: the built-in readers, third-party ones, and sniffing the content.

Built-in readers are listed here (importing ``importlib.metadata`` to scan entry points
costs ~50 ms, which ``import wsiarray`` and the first read should not pay); third parties
register under the ``wsiarray.readers`` entry-point group, scanned only when a reader is
asked for by a name that is not built in, or when no built-in reader opens a file.
"""

from __future__ import annotations

import inspect
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from wsiarray.errors import (
    DamagedFileError,
    OptionError,
    ReaderUnavailableError,
    SlideNotFoundError,
    TruncatedFileError,
    UnsupportedFormatError,
    WsiArrayError,
)
from wsiarray.sources._base import SlideSource
from wsiarray.sources._colour import in_srgb
from wsiarray.sources._orientation import upright
from wsiarray.sources._spec import is_url
from wsiarray.sources._store import StorageOptions, redact, remote_store

__all__ = ["BUILTIN_READERS", "ENTRY_POINT_GROUP", "available_readers", "open_source"]

ENTRY_POINT_GROUP = "wsiarray.readers"
#: The built-in readers, in the order ``reader="auto"`` tries them.
BUILTIN_READERS = {
    "tifffile": "wsiarray.sources.tifffile_:TifffileSource",
    # before OpenSlide, which also reads DICOM WSI but interpolates its non-dyadic levels
    "dicom": "wsiarray.sources.dicom_:DicomSource",
    "openslide": "wsiarray.sources.openslide_:OpenSlideSource",
    "pil": "wsiarray.sources.pil_:PilSource",
    "zarr": "wsiarray.sources.zarr_:OmeZarrSource",
}
HEADER_BYTES = 512
#: A URL ending so names a zarr store: a prefix of keys, with no bytes of its own to sniff.
ZARR_SUFFIX = ".zarr"


def available_readers() -> dict[str, str]:
    """Return ``{reader name: "module:Class"}`` for built-in and entry-point readers, in try order."""
    return BUILTIN_READERS | _plugin_readers()


def _plugin_readers() -> dict[str, str]:
    """Third-party readers (a plugin cannot replace a built-in reader of the same name)."""
    from importlib.metadata import entry_points

    return {
        ep.name: ep.value
        for ep in entry_points(group=ENTRY_POINT_GROUP)
        if ep.name not in BUILTIN_READERS
    }


def _reader_targets() -> Iterator[tuple[str, str]]:
    """``(name, "module:Class")`` in try order, scanning entry points only once built-ins are tried."""
    yield from BUILTIN_READERS.items()
    yield from _plugin_readers().items()


def _reader_class(name: str, target: str | None = None) -> type[SlideSource]:
    if target is None:
        readers = BUILTIN_READERS if name in BUILTIN_READERS else available_readers()
        if name not in readers:
            msg = f"no reader named {name!r}; available readers: {', '.join(readers)}"
            raise ReaderUnavailableError(msg)
        target = readers[name]
    module_name, _, attr = target.partition(":")
    try:
        module = __import__(module_name, fromlist=[attr])
        return getattr(module, attr)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as exc:
        msg = f"the {name!r} reader ({target}) cannot be loaded: {exc}"
        raise ReaderUnavailableError(msg) from exc


def _check_path(path: Path) -> bytes:
    """The first bytes of a file, for ``claims``; for a directory, those of the zarr store's
    root metadata or of the first DICOM file in it. Anything else that is not a regular
    file (a FIFO, a device, a socket) is refused before it is opened: reading a FIFO
    blocks until a writer comes, forever (``wa.open`` of one hung until killed)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        msg = f"no such file: {path}"
        raise SlideNotFoundError(msg) from None
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(mode), "special file")
        msg = f"{path} is a {kind}, not a slide file; pass the path of the slide file itself"
        raise UnsupportedFormatError(msg)
    if stat.S_ISDIR(mode):
        from wsiarray.ngff import root_metadata
        from wsiarray.sources.dicom_ import holds_dicom

        metadata = root_metadata(path) or holds_dicom(path)
        if metadata is None:
            msg = (
                f"{path} is a directory, not a slide file. Pass the slide file itself: for "
                "MIRAX the .mrxs file beside its data folder. The only directories wsiarray "
                "opens are OME-Zarr stores (zarr.json at the top) and folders of DICOM WSI "
                "instance files."
            )
            raise UnsupportedFormatError(msg)
        path = metadata
    with path.open("rb") as fh:
        header = fh.read(HEADER_BYTES)
    if not header:
        msg = f"{path} is empty (0 bytes); it is not a slide. Copy it again."
        raise UnsupportedFormatError(msg)
    return header


#: What a path that is neither a file nor a directory is, for the message.
_FILE_KINDS = {
    stat.S_IFIFO: "FIFO (named pipe)",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
}


def open_source(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    /,
    *,
    reader: str = "auto",
    options: Mapping[str, Any] | None = None,
) -> SlideSource:
    """Open ``path`` with the named reader, or with the first reader that can read it.

    With ``reader="auto"`` each reader that recognises the file's first bytes is tried in
    order (tifffile, dicom, openslide, pil, zarr, then third-party readers); the first that
    opens the file wins. A directory is tried only when it is a zarr store or holds DICOM
    files (its root metadata, or its first DICOM file, stands in for the first bytes). An
    ``http(s)://`` URL is not a local path: by "auto" a DICOMweb series URL
    (``.../studies/<uid>/series/<uid>``) opens with the dicom reader, its ``user:password@``
    moved into the ``credentials`` option. The caller owns the returned source and closes it.
    A local path may be ``bytes`` or a path-like object, as :func:`open` takes it.

    ``options`` go to the reader, but for one that is wsiarray's own, for every reader:
    ``to_srgb=True`` converts the pixels from the file's ICC profile to sRGB
    (:mod:`wsiarray.sources._colour`).

    Raises
    ------
    SlideNotFoundError
        The path does not exist.
    UnsupportedFormatError
        No reader can read the file; the message says what each reader answered.
    TruncatedFileError
        The file is cut short.
    ReaderUnavailableError
        The named reader does not exist or cannot be imported.
    """
    options = dict(options or {})
    to_srgb = options.pop("to_srgb", False)
    if to_srgb not in (True, False):
        msg = f"to_srgb must be True or False, not {to_srgb!r}"
        raise OptionError(msg)
    if isinstance(path, bytes) or (
        isinstance(path, os.PathLike) and isinstance(os.fspath(path), bytes)
    ):
        path = os.fsdecode(path)  # as open() and os take them
    if is_url(path):
        source = _open_url(str(path), reader, options)
    else:
        file = Path(path).expanduser()
        source = _open_with(reader, file, _check_path(file), options)
    if not to_srgb:
        return source
    try:
        return in_srgb(source)
    except WsiArrayError:
        source.close()
        raise


def _open_with(reader: str, file: Path, header: bytes, options: dict[str, Any]) -> SlideSource:
    """The source of the named reader, or of the first reader that opens the file."""
    if reader != "auto":
        return _try_open(_reader_class(reader), file, options)
    return _first_reader(
        file,
        file,
        header,
        options,
        f"{file} is not a slide any reader can open (first bytes {header[:8]!r})",
    )


def _first_reader(
    location: Path | str, named: Path, header: bytes, options: dict[str, Any], failure: str
) -> SlideSource:
    """The source of the first reader that recognises ``header`` and opens ``location``; a
    URL is offered only to readers that read from storage. ``named`` is what readers'
    ``claims`` see of the location; ``failure`` heads the message listing every answer."""
    remote = isinstance(location, str)
    answers = []
    error: type[WsiArrayError] = UnsupportedFormatError
    for name, target in _reader_targets():
        cls = _reader_class(name, target)
        if remote and not cls.remote:
            answers.append(f"{name}: reads local files only")
        elif not cls.claims(named, header):
            answers.append(f"{name}: does not recognise the content")
        else:
            unknown = _unknown_options(cls, options)
            if unknown:
                answers.append(f"{name}: takes no option {', '.join(map(repr, unknown))}")
                error = OptionError  # a reader that knows the file was not tried: say why
                continue
            try:
                return _try_open(cls, location, options)
            except (TruncatedFileError, DamagedFileError):  # damaged: no other reader
                raise
            except UnsupportedFormatError as exc:
                answers.append(f"{name}: {exc}")
    given = " with the options given" if error is OptionError else ""
    msg = f"{failure}{given}. " + "; ".join(answers)
    raise error(msg)


def _open_url(url: str, reader: str, options: dict[str, Any]) -> SlideSource:
    """Open a URL: a DICOMweb series with the dicom reader, an object in storage (any fsspec
    URL) with the named reader or the first remote-capable reader that recognises its bytes."""
    from wsiarray.sources.dicom_ import is_dicomweb_url, split_credentials, storage_folder

    if is_dicomweb_url(url):
        # a secret in the URL would show in every message and repr: it travels as an option
        url, credentials = split_credentials(url, options.get("credentials"))
        if credentials is not None:
            options["credentials"] = credentials
        return _try_open(_reader_class("dicom" if reader == "auto" else reader), url, options)
    if reader != "auto":
        return _try_open(_reader_class(reader), url, options)
    if urlsplit(url).path.rstrip("/").endswith(ZARR_SUFFIX):  # a prefix, not an object
        return _try_open(_reader_class("zarr"), url, options)
    storage_options = StorageOptions(options.get("storage_options")).to_dict()
    try:
        store = remote_store(url, storage_options)
    except SlideNotFoundError:
        # no object: perhaps a prefix (obstore's S3 does not tell the two apart)
        try:
            folder = storage_folder(url, storage_options)
        except ReaderUnavailableError:
            folder = None
        if folder is None:
            raise
        return _try_open(_reader_class("dicom"), url, options)
    if store.kind == "directory":  # a prefix: the only folders read are of DICOM files
        store.close()
        storage_folder(url, storage_options)  # says so when it holds none
        return _try_open(_reader_class("dicom"), url, options)
    try:
        header = store.peek(HEADER_BYTES)
    finally:
        store.close()
    return _first_reader(
        url,
        PurePosixPath(urlsplit(url).path),
        header,
        options,
        f"{redact(url)} is not a slide any reader can open from storage",
    )


def _taken_options(cls: type[SlideSource]) -> list[str]:
    """The options a reader takes: its ``__init__``'s keyword-only parameters. Others are
    refused: ``{"bogus": 99}`` (or tifffile's ``series`` given to OpenSlide) opened the
    slide as if not given, so a misspelt option was silently ignored."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return sorted(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _unknown_options(cls: type[SlideSource], options: Mapping[str, Any]) -> list[str]:
    # storage_options is wsiarray's, for every reader: a cohort passes it with each path,
    # local ones included, where a reader of local files has no use for it. A third-party
    # reader may take its options through **options, as the base class does: it gets all
    if f"{cls.__module__}:{cls.__qualname__}" not in BUILTIN_READERS.values():
        return []
    return sorted(set(options) - {"storage_options", *_taken_options(cls)})


def _try_open(cls: type[SlideSource], path: Path | str, options: dict[str, Any]) -> SlideSource:
    unknown = _unknown_options(cls, options)
    if unknown:
        msg = (
            f"the {cls.name} reader takes no option {', '.join(map(repr, unknown))}; it takes "
            f"{', '.join(map(repr, _taken_options(cls))) or 'none'}"
        )
        raise OptionError(msg)
    try:
        return upright(cls(path, **options))
    except WsiArrayError:
        raise
    except Exception as exc:  # a reader library's own error: say which reader and why
        where = redact(path) if isinstance(path, str) else path
        msg = f"{cls.name} cannot read {where}: {type(exc).__name__}: {redact(str(exc))}"
        raise UnsupportedFormatError(msg) from exc
