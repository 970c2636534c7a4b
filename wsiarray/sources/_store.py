"""Where a slide's bytes live: a local file, or an object behind an fsspec URL.

A reader asks a :class:`ByteStore` for byte ranges, never for a file position: a local file
answers with ``os.pread`` on one descriptor (thread-safe, releases the GIL); a remote object
(``s3://``, ``gs://``, ``az://``, ``http(s)://``, any fsspec protocol) answers the ranges of
one dask chunk together, neighbours merged into one request and the requests sent
concurrently (fsspec's ``cat_ranges``), with retries on transient failures. Header parsers
(tifffile) get a file object from :meth:`ByteStore.open`: for a remote object it reads ahead
in large blocks, so the directories at the start of a slide cost a few round trips.
"""

from __future__ import annotations

import abc
import io
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, Self
from urllib.parse import urlsplit

from wsiarray.errors import SlideNotFoundError, WsiArrayError

__all__ = [
    "ByteStore",
    "FsspecStore",
    "LocalStore",
    "ObstoreStore",
    "RemoteStore",
    "StorageOptions",
    "is_remote",
    "object_stamp",
    "obstore_s3_config",
    "open_store",
    "redact",
    "remote_store",
]

#: A URL with a scheme of two or more letters (``C:\\`` is a Windows drive, not a scheme).
REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")
#: Ranges closer than this are fetched as one request: a request costs a round trip, the
#: bytes between two tiles of one chunk (a few kB of other tiles' data) cost almost nothing.
MERGE_GAP = 256 * 1024
#: Block size of the file object handed to header parsers: the directories of a slide sit in
#: its first and last few MB, read in a handful of requests. An object of up to two blocks
#: is one block: a 4.35 MB slide's directories reach its end, so its open took a second
#: request for the last 158 KB.
HEADER_BLOCK = 4 * 1024 * 1024
#: Attempts per request, and the first wait between them (doubling).
ATTEMPTS = 5
FIRST_WAIT = 0.05
#: Query parameters of signed URLs that grant access, never shown.
SECRET_QUERY = re.compile(
    r"(?i)([?&](?:x-amz-[^=&]*|signature|sig|se|sp|sv|token|access_token|key|"
    r"x-goog-[^=&]*|googleaccessid)=)[^&]*"
)


def is_remote(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is a URL (``s3://...``, ``https://...``), not a local path."""
    return isinstance(location, str) and REMOTE.match(location) is not None


def redact(url: str) -> str:
    """``url`` (or a message holding URLs) with users, passwords and signed-URL query values
    replaced by ``***``."""
    url = re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]+://)[^/@\s'\"]*@", r"\1***@", url)
    return SECRET_QUERY.sub(r"\1***", url)


class StorageOptions:
    """fsspec ``storage_options`` as a slide's spec carries them: hashable, never shown.

    Credentials travel with a dask graph (workers must reach the object too); its ``repr``
    and ``str`` show only the option names. ``json`` is the options as sorted JSON, what
    makes two equal.
    """

    __slots__ = ("json",)

    def __init__(self, options: Mapping[str, Any] | StorageOptions | None = None) -> None:
        import json

        if isinstance(options, StorageOptions):
            self.json: str = options.json
        else:
            self.json = json.dumps(dict(options or {}), sort_keys=True, default=str)

    def to_dict(self) -> dict[str, Any]:
        """The options, as fsspec takes them."""
        import json

        return dict(json.loads(self.json))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorageOptions) and other.json == self.json

    def __hash__(self) -> int:
        return hash(self.json)

    def __lt__(self, other: StorageOptions) -> bool:  # specs sort their options
        return self.json < other.json

    def __reduce__(self) -> tuple[Any, ...]:
        return (StorageOptions, (self.to_dict(),))

    def __repr__(self) -> str:
        names = ", ".join(self.to_dict())
        return f"StorageOptions({names}: ***)" if names else "StorageOptions()"


def open_store(
    location: str | os.PathLike[str], storage_options: StorageOptions | Mapping[str, Any] | None
) -> ByteStore:
    """The store of a local path or of a URL."""
    if is_remote(location):
        return remote_store(str(location), storage_options)
    return LocalStore(Path(location))


def remote_store(
    url: str, storage_options: StorageOptions | Mapping[str, Any] | None
) -> RemoteStore:
    """The store of an object in storage: obstore's for S3 where it can read it with these
    options (:func:`obstore_s3_config`), else fsspec's."""
    options = StorageOptions(storage_options).to_dict()
    if obstore_s3_config(url, options) is not None:
        return ObstoreStore(url, options)
    return FsspecStore(url, options)


class ByteStore(abc.ABC):
    """The bytes of one slide file, read by range; thread-safe."""

    #: The file's path or its URL with secrets redacted, for messages.
    location: str
    #: The file's size in bytes.
    size: int

    @abc.abstractmethod
    def read(self, offset: int, count: int) -> bytes:
        """``count`` bytes from ``offset`` (fewer only where the file ends)."""

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes of each ``(offset, count)``, in order."""
        return [self.read(offset, count) for offset, count in ranges]

    @abc.abstractmethod
    def open(self) -> BinaryIO:
        """A new file object over the bytes, for header parsers; the caller closes it."""

    @abc.abstractmethod
    def stamp(self) -> tuple[Any, ...]:
        """What changes when the file is replaced or modified (size and mtime, or ETag)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the file descriptor or connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalStore(ByteStore):
    """A local file, read with ``pread`` on one descriptor.

    Parameters
    ----------
    path : Path
        The file.
    fd : int, optional
        A descriptor of the file already open (a TIFF parser's): used, and left open by
        :meth:`close`, so a slide holds one descriptor. By default the store opens its own.
    """

    def __init__(self, path: Path, fd: int | None = None) -> None:
        self.path = path
        self.location = str(path)
        self._owned = fd is None
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0)) if fd is None else fd
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, count: int) -> bytes:
        # docstring inherited
        return os.pread(self._fd, count, offset)

    def open(self) -> BinaryIO:
        # docstring inherited: a file object on the store's own descriptor (not closing it),
        # so a slide holds one descriptor; pread ignores the position the parser moves
        return os.fdopen(self._fd, "rb", closefd=False)

    def stamp(self) -> tuple[Any, ...]:
        # docstring inherited
        stat = os.stat(self.path)
        return stat.st_size, stat.st_mtime_ns

    def close(self) -> None:
        # docstring inherited
        if self._owned and self._fd >= 0:
            os.close(self._fd)
        self._fd = -1


class RemoteStore(ByteStore):
    """An object in storage, read in merged, concurrent range requests: what the transports
    (:class:`FsspecStore`, :class:`ObstoreStore`) share. :func:`open_store` picks one.

    Parameters
    ----------
    url : str
        ``s3://bucket/key``, ``https://host/path``, or any URL fsspec opens.
    storage_options : mapping, optional
        The filesystem's options (credentials, endpoint, ...), as fsspec takes them; never
        shown.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.location = redact(url)
        self._key = key = (url, StorageOptions(storage_options).json)
        handed = _RECENT.get(key)
        info = handed.info if handed else self._head()
        self.size = int(info["size"])
        #: "file", or "directory" for a prefix (a folder of objects) in storage
        self.kind = str(info.get("type", "file"))
        self._stamp = object_stamp(info)
        self._info = info
        self._block = self.size if self.size <= 2 * HEADER_BLOCK else HEADER_BLOCK
        self._handed_blocks = handed.blocks if handed else {}
        if handed is None:
            _RECENT.put(key, _Handoff(info, {}))

    @abc.abstractmethod
    def _head(self) -> Mapping[str, Any]:
        """The object's info now: ``size``, its ETag or mtime, ``type`` (one request).

        Raises :class:`SlideNotFoundError` for a missing object and a :class:`WsiArrayError`
        naming the URL for any other failure, after retries."""

    @abc.abstractmethod
    def _fetch(self, starts: list[int], ends: list[int]) -> Sequence[Any]:
        """The bytes of each ``[start, end)``, fetched concurrently (buffers), after retries."""

    def read(self, offset: int, count: int) -> bytes:
        # docstring inherited
        return self.read_ranges([(offset, count)])[0]

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        # docstring inherited
        merged = _merge(ranges)
        blobs = self._fetch([start for start, _ in merged], [end for _, end in merged])
        out = []
        for offset, count in ranges:
            index = _containing(merged, offset)
            start = offset - merged[index][0]
            out.append(bytes(memoryview(blobs[index])[start : start + count]))
        return out

    def open(self) -> BinaryIO:
        # docstring inherited: the first file object starts with the blocks a look at the
        # object's first bytes (:meth:`peek`) fetched just before
        blocks, self._handed_blocks = self._handed_blocks, {}
        return io.BufferedReader(_BlockFile(self, self._block, blocks), buffer_size=64 * 1024)

    def peek(self, count: int) -> bytes:
        """The object's first ``count`` bytes, fetched as the first block of :meth:`open`.

        The next store that opens the object within seconds (the reader, after the
        registry's look at a URL's first bytes) is handed that block with the object's info,
        so the look costs no request of its own.
        """
        file = _BlockFile(self, self._block, {})
        head = file.read(count)
        _RECENT.put(self._key, _Handoff(self._info, file.blocks))
        return head

    def stamp(self) -> tuple[Any, ...]:
        # docstring inherited
        return self._stamp

    def _error(self, what: str, exc: BaseException) -> WsiArrayError:
        # the first line: obstore appends its whole debug rendering of the error after it
        first = next(iter(str(exc).splitlines()), "")
        text = redact(f"{type(exc).__name__}: {first}")
        return WsiArrayError(f"{self.location}: {what} ({text})")


class FsspecStore(RemoteStore):
    """An object behind any fsspec URL, its ranges fetched by ``cat_ranges`` and retried here
    with backoff on transient failures (5xx, resets, timeouts)."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        import fsspec

        try:
            self._fs, self._path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        except Exception as exc:
            msg = redact(f"{url}: cannot be opened ({type(exc).__name__}: {exc})")
            raise WsiArrayError(msg) from exc
        super().__init__(url, storage_options)

    def _head(self) -> Mapping[str, Any]:
        try:
            return self._retrying(self._fs.info, self._path)
        except FileNotFoundError as exc:
            msg = f"no such object: {self.location}"
            raise SlideNotFoundError(msg) from exc
        except WsiArrayError:
            raise
        except Exception as exc:
            what = "cannot be opened"
            raise self._error(what, exc) from exc

    def _fetch(self, starts: list[int], ends: list[int]) -> Sequence[Any]:
        paths = [self._path] * len(starts)
        return self._retrying(self._fs.cat_ranges, paths, starts, ends, on_error="raise")

    def _retrying(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """``call(*args)``, retried with backoff on transient failures (5xx, resets, timeouts)."""
        wait = FIRST_WAIT
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return call(*args, **kwargs)
            except Exception as exc:
                reason: BaseException = exc
                if isinstance(exc, FileNotFoundError):
                    # fsspec's HTTP filesystem says "not found" for any failed request: only
                    # one caused by a transient failure is one
                    cause = exc.__cause__ or exc.__context__
                    if cause is None or not _transient(cause):
                        raise
                    reason = cause
                if attempt == ATTEMPTS or not _transient(reason):
                    what = f"reading failed after {attempt} attempt(s)"
                    raise self._error(what, exc) from exc
                time.sleep(wait)
                wait *= 2
        raise AssertionError  # pragma: no cover - the loop returns or raises


class ObstoreStore(RemoteStore):
    """An object in S3 read through obstore (Rust's ``object_store``), when the options say
    all it needs (:func:`obstore_s3_config`).

    Measured against s3fs on moto's S3 server (``python -m benchmarks.range_clients``, a
    loaded 2-core machine): one 60 KB range 8.6 ms against 62 ms, and the 12 tile rows of a
    2880² chunk 0.49 s against 3.5 s. The difference is s3fs/aiobotocore's Python work per
    request (signing, parsing), which also holds the interpreter lock that the tile decoders
    need. Retries are obstore's, set to the same policy as :class:`FsspecStore`'s.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        from obstore.store import S3Store

        config = obstore_s3_config(url, storage_options or {})
        if config is None:
            msg = f"{redact(url)}: these storage options need s3fs (obstore_s3_config)"
            raise WsiArrayError(msg)
        parts = urlsplit(url)
        bucket, self._path = parts.netloc, parts.path.lstrip("/")
        self._store = S3Store(bucket, **config)
        super().__init__(url, storage_options)

    def _head(self) -> Mapping[str, Any]:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            meta = obstore.head(self._store, self._path)
        except (NotFoundError, FileNotFoundError) as exc:  # obstore raises the latter
            msg = f"no such object: {self.location}"
            raise SlideNotFoundError(msg) from exc
        except Exception as exc:
            what = "cannot be opened"
            raise self._error(what, exc) from exc
        return {"size": meta["size"], "ETag": meta.get("e_tag"), "type": "file"}

    def _fetch(self, starts: list[int], ends: list[int]) -> Sequence[Any]:
        import obstore

        try:
            # the ranges come merged (MERGE_GAP); obstore is asked not to merge them again
            return obstore.get_ranges(self._store, self._path, starts=starts, ends=ends, coalesce=0)
        except Exception as exc:
            what = f"reading failed after {ATTEMPTS} attempt(s)"
            raise self._error(what, exc) from exc


#: The s3fs options :func:`obstore_s3_config` translates; any other sends the URL to s3fs.
S3FS_OPTIONS = frozenset(
    {"key", "secret", "token", "anon", "endpoint_url", "client_kwargs", "config_kwargs"}
)


def obstore_s3_config(url: str, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """obstore's ``S3Store`` settings for an ``s3://`` URL and s3fs-style ``storage_options``,
    or None where s3fs should read it: obstore is not installed, an option has no
    translation here, or the options leave to s3fs what obstore does not do the same way —
    no credentials given (s3fs follows botocore's whole chain: profiles, SSO, instance roles)
    or neither a region nor an endpoint (s3fs finds a bucket's region itself)."""
    if not url.startswith("s3://") or set(options) - S3FS_OPTIONS:
        return None
    try:
        import obstore  # noqa: F401 - only whether it is there
    except ImportError:
        return None
    client = dict(options.get("client_kwargs") or {})
    addressing = (options.get("config_kwargs") or {}).get("s3", {}).get("addressing_style")
    if set(client) - {"endpoint_url", "region_name"} or set(options.get("config_kwargs") or {}) - {
        "s3"
    }:
        return None
    anon = bool(options.get("anon"))
    if not anon and not (options.get("key") and options.get("secret")):
        return None
    endpoint = options.get("endpoint_url") or client.get("endpoint_url")
    region = client.get("region_name")
    if endpoint is None and region is None:
        return None
    config: dict[str, Any] = {
        "retry_config": {
            "max_retries": ATTEMPTS - 1,
            "backoff": {
                "init_backoff": timedelta(seconds=FIRST_WAIT),
                "max_backoff": timedelta(seconds=FIRST_WAIT * 2 ** (ATTEMPTS - 1)),
                "base": 2,
            },
            "retry_timeout": timedelta(seconds=60),
        },
    }
    if anon:
        config["skip_signature"] = True
    else:
        config["access_key_id"] = options["key"]
        config["secret_access_key"] = options["secret"]
        if options.get("token"):
            config["session_token"] = options["token"]
    if region:
        config["region"] = region
    if endpoint:
        config["endpoint"] = endpoint
        config["client_options"] = {"allow_http": endpoint.startswith("http://")}
    if addressing == "path":
        config["virtual_hosted_style_request"] = False
    elif addressing not in (None, "auto", "virtual"):
        return None
    return config


@dataclass(frozen=True, slots=True)
class _Handoff:
    """What one store learned of an object that the next store opening it may reuse."""

    info: Mapping[str, Any]
    blocks: dict[int, bytes]


class _RecentInfo:
    """Objects' info (size, ETag) and first block handed from one store to the next that
    opens the same object within a few seconds, once: the registry's look at a URL's first
    bytes and the reader that then opens it would each ask for them (a HEAD and a GET each).
    Taken once, so a later open (after the object may have changed) asks the server again.
    At most ``size`` are kept (each up to 8 MB of blocks)."""

    def __init__(self, seconds: float = 5.0, size: int = 16) -> None:
        self.seconds, self.size = seconds, size
        self._items: dict[tuple[str, str], tuple[float, _Handoff]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> _Handoff | None:
        with self._lock:
            item = self._items.pop(key, None)
        if item is None or time.monotonic() - item[0] > self.seconds:
            return None
        return item[1]

    def put(self, key: tuple[str, str], handoff: _Handoff) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), handoff)
            while len(self._items) > self.size:
                self._items.pop(next(iter(self._items)))


_RECENT = _RecentInfo()


class _BlockFile(io.RawIOBase):
    """A read-only file over a store, fetched in blocks (kept: a slide's directories sit in
    a few of them) through the store's retrying reads."""

    def __init__(self, store: ByteStore, block: int, blocks: dict[int, bytes]) -> None:
        super().__init__()
        self._store, self._block, self._position = store, block, 0
        #: the blocks fetched (and those it was given), by index
        self.blocks = blocks

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._store.size}
        self._position = max(0, base[whence] + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._position < self._store.size:
            index, start = divmod(self._position, self._block)
            block = self.blocks.get(index)
            if block is None:
                block = self.blocks[index] = self._store.read(index * self._block, self._block)
            piece = block[start : start + len(view) - done]
            if not piece:
                break
            view[done : done + len(piece)] = piece
            done += len(piece)
            self._position += len(piece)
        return done


def object_stamp(info: Mapping[str, Any]) -> tuple[Any, ...]:
    """Size and the object's version: ETag where the server gives one, else its mtime."""
    version = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
    return int(info["size"]), str(version or "")


def _merge(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(start, end)`` spans covering ``ranges``, neighbours within :data:`MERGE_GAP` joined."""
    spans: list[list[int]] = []
    for offset, count in sorted(ranges):
        end = offset + count
        if spans and offset <= spans[-1][1] + MERGE_GAP:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([offset, end])
    return [(start, end) for start, end in spans]


def _containing(spans: list[tuple[int, int]], offset: int) -> int:
    """Index of the span holding ``offset`` (spans are sorted and disjoint)."""
    low, high = 0, len(spans) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if spans[middle][0] <= offset:
            low = middle
        else:
            high = middle - 1
    return low


def _transient(exc: BaseException) -> bool:
    """A failure worth retrying: a server error (5xx), a dropped or timed-out connection."""
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status >= 500 or status == 429
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None) or (
        response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    )
    if isinstance(code, int) or (isinstance(code, str) and code.isdigit()):
        return int(code) >= 500 or int(code) == 429
    if isinstance(code, str):
        return code in {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        word in text
        for word in ("timeout", "reset", "disconnect", "payload", "incomplete", "closed", "503")
    )
