"""A private Orthanc DICOMweb server for the tests, started and stopped by the tests themselves.

The project's rule: a test of DICOMweb talks to a real server, Orthanc with its DICOMweb plugin
(Debian packages ``orthanc`` and ``orthanc-dicomweb``, which ``.ci/run`` installs). Where the
binary or the plugin is missing the test is skipped with a message naming what is missing and
how to install it; it never passes silently.

Each server gets a fresh temporary folder (storage, index, generated config and log), a free
HTTP port on 127.0.0.1, no DICOM (DIMSE) port and no authentication. Starting takes about
0.2 s; it is stopped (terminate, then kill) and its folder removed when the tests end.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

#: DICOMweb root inside Orthanc's HTTP server (the plugin's ``DicomWeb.Root``).
DICOMWEB_ROOT = "/dicom-web/"

#: How ``.ci/run`` installs the server; repeated in every skip message.
INSTALL_HINT = (
    "CI installs it in .ci/run with `apt-get install orthanc orthanc-dicomweb` (Debian); "
    "elsewhere install those packages or set WSIARRAY_ORTHANC / WSIARRAY_ORTHANC_DICOMWEB"
)

# Where Debian's packages put the binary and the plugin (the versioned file is the real one).
_BINARY_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc", "/usr/local/bin/Orthanc")
_PLUGIN_PATTERNS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
    "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/*/orthanc/libOrthancDicomWeb.so*",
)


def find_orthanc() -> tuple[Path, Path]:
    """The Orthanc binary and its DICOMweb plugin; skips the test, naming the missing piece.

    ``$WSIARRAY_ORTHANC`` and ``$WSIARRAY_ORTHANC_DICOMWEB`` override the search (a path each).
    """
    binary_env = os.environ.get("WSIARRAY_ORTHANC")
    binaries = [binary_env] if binary_env else [*_BINARY_CANDIDATES, shutil.which("Orthanc")]
    binary = next((Path(b) for b in binaries if b and os.access(b, os.X_OK)), None)
    if binary is None:
        looked = binary_env or f"{', '.join(_BINARY_CANDIDATES)} and `Orthanc` on PATH"
        pytest.skip(
            f"DICOMweb server missing: the Orthanc binary was not found (looked for {looked}); "
            f"{INSTALL_HINT}"
        )
    plugin_env = os.environ.get("WSIARRAY_ORTHANC_DICOMWEB")
    patterns = [plugin_env] if plugin_env else list(_PLUGIN_PATTERNS)
    plugins = [Path(p) for pattern in patterns for p in sorted(glob.glob(pattern))]
    plugin = next((p for p in plugins if p.is_file()), None)
    if plugin is None:
        pytest.skip(
            f"DICOMweb server missing: Orthanc is at {binary} but its DICOMweb plugin "
            f"libOrthancDicomWeb.so was not found (looked for {', '.join(patterns)}); "
            f"{INSTALL_HINT}"
        )
    return binary, plugin


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def orthanc_config(directory: Path, port: int, plugin: Path) -> dict[str, Any]:
    """Orthanc's JSON configuration for a private test server storing everything in
    ``directory`` and serving HTTP (REST and DICOMweb) on ``port``."""
    return {
        "Name": "wsiarray-tests",
        "StorageDirectory": str(directory / "storage"),
        "IndexDirectory": str(directory / "storage"),
        "StorageCompression": False,
        "OverwriteInstances": True,  # uploading the same file twice is harmless
        "SaveJobs": False,
        "HttpPort": port,
        "RemoteAccessAllowed": False,  # 127.0.0.1 only
        "AuthenticationEnabled": False,
        "HttpCompressionEnabled": False,  # gzip of JSON only costs time on the loopback
        "KeepAlive": True,
        "DicomServerEnabled": False,  # no DIMSE port: the tests speak HTTP only
        "LimitFindResults": 0,  # QIDO returns every instance of a series, however many
        "LimitFindInstances": 0,
        "Plugins": [str(plugin)],
        "DicomWeb": {
            "Enable": True,
            "Root": DICOMWEB_ROOT,
            "EnableWado": False,  # WADO-URI is not used
            "Ssl": False,
            # the host in the URLs the plugin writes (BulkDataURI, RetrieveURL). Without it the
            # plugin copies the request's Host header, which dicomweb-client (wsidicom's web
            # client) sends without the port, so every BulkDataURI would point at port 80
            "Host": f"127.0.0.1:{port}",
            # series/study metadata from the stored files, not only Orthanc's main tags: a WSI
            # reader needs the whole dataset (shared functional groups, optical paths, ...)
            "StudiesMetadata": "Full",
            "SeriesMetadata": "Full",
        },
    }


class ServerProcess:
    """A test server run as a subprocess on a free 127.0.0.1 port, in a temporary folder
    that holds its log: started (a taken port is retried on another), waited for, stopped
    (SIGTERM, then SIGKILL) and cleaned up. Subclasses give :meth:`_command` and
    :meth:`_wait_until_up`, and close their clients in :meth:`_close_clients`.
    """

    #: The log file's name in the server's folder.
    log_name = "server.log"

    def __init__(self, prefix: str, directory: Path | None = None) -> None:
        self._own_directory = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix=prefix)) if directory is None else directory
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """The server's own log (its stdout and stderr)."""
        return self.directory / self.log_name

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _command(self) -> tuple[list[str], dict[str, str] | None]:
        """The command line (and environment, or None for this one's) serving on ``port``."""
        raise NotImplementedError

    def _wait_until_up(self, timeout: float) -> None:
        """Return once the server answers; raise ``RuntimeError`` with the log's tail."""
        raise NotImplementedError

    def _close_clients(self) -> None:
        """Close the connections or clients kept to the server."""

    def start(self, timeout: float = 30.0, attempts: int = 3) -> Self:
        """Start the server and wait until it answers.

        A port taken between choosing it and the server binding it is retried on another
        port. Raises ``RuntimeError`` with the log's tail when the server exits or does not
        answer in ``timeout`` seconds.
        """
        for attempt in range(attempts):
            self.port = free_port()
            command, env = self._command()
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    env=env,
                )
            try:
                self._wait_until_up(timeout)
            except RuntimeError:
                self._terminate()
                if attempt + 1 < attempts and "already in use" in self.log_tail().lower():
                    continue
                raise
            return self
        msg = "unreachable"  # pragma: no cover
        raise AssertionError(msg)  # pragma: no cover

    def _terminate(self) -> None:
        """Stop the process: SIGTERM, then SIGKILL if it has not exited within 10 s."""
        self._close_clients()
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server and remove its temporary folder."""
        self._terminate()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self if self.process is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def started(server: ServerProcess) -> ServerProcess:
    """``server`` started, or stopped and cleaned up if it did not start."""
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise


class OrthancServer(ServerProcess):
    """A private Orthanc with its DICOMweb plugin, for one test session.

    ``url`` is the DICOMweb root (``http://127.0.0.1:PORT/dicom-web``), ``rest_url`` Orthanc's
    own REST API. Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    log_name = "orthanc.log"

    def __init__(self, binary: Path, plugin: Path, directory: Path | None = None) -> None:
        super().__init__("wsiarray-orthanc-", directory)
        self.binary = binary
        self.plugin = plugin
        self._connection: http.client.HTTPConnection | None = None
        self._uids: dict[str, tuple[str, str]] = {}  # Orthanc series id -> (study, series) UIDs

    @property
    def rest_url(self) -> str:
        """Orthanc's REST API root, e.g. ``http://127.0.0.1:8042``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web`` (no trailing slash)."""
        return self.rest_url + DICOMWEB_ROOT.rstrip("/")

    def _command(self) -> tuple[list[str], dict[str, str] | None]:
        config = self.directory / "orthanc.json"
        config.write_text(json.dumps(orthanc_config(self.directory, self.port, self.plugin)))
        return [str(self.binary), str(config)], None

    def _wait_until_up(self, timeout: float) -> None:
        """Poll ``GET /system`` until it answers 200; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = (
                    f"Orthanc ({self.binary}) exited with code {self.process.returncode} while "
                    f"starting on port {self.port}; the end of its log:\n{self.log_tail()}"
                )
                raise RuntimeError(msg)
            try:
                status, _ = self._request("GET", "/system")
            except OSError:
                self._close_connection()
                time.sleep(0.02)
                continue
            if status == 200:
                return
            time.sleep(0.02)
        msg = (
            f"Orthanc ({self.binary}) did not answer on {self.rest_url}/system within {timeout} s; "
            f"the end of its log:\n{self.log_tail()}"
        )
        raise RuntimeError(msg)

    def _request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, bytes]:
        """One request on a kept-alive connection to Orthanc's REST API: (status, body).

        Orthanc closes a connection left idle for a few seconds (a session fixture waits while
        other fixtures run): a request that finds it closed is sent once more on a new one.
        """
        headers = {"Content-Type": content_type} if content_type else {}
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self._connection.request(method, path, body=body, headers=headers)
                response = self._connection.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.RemoteDisconnected):
                self._close_connection()
                if attempt == 2:
                    raise
            except (http.client.HTTPException, OSError):
                self._close_connection()
                raise
        raise AssertionError  # pragma: no cover - the loop returns or raises

    def _json(self, path: str) -> Any:
        """``GET path`` on the REST API, decoded; raises with the answer on a non-200."""
        status, data = self._request("GET", path)
        if status != 200:
            msg = f"Orthanc answered {status} to GET {path}: {data[:500]!r}"
            raise RuntimeError(msg)
        return json.loads(data)

    def upload(self, paths: Iterable[str | os.PathLike[str]]) -> list[tuple[str, str]]:
        """POST each DICOM file to ``/instances``; the (study UID, series UID) of every series
        the files belong to, once each, in the order first met.

        Raises ``RuntimeError`` naming the file when Orthanc refuses one.
        """
        series: list[tuple[str, str]] = []
        for path in paths:
            status, data = self._request(
                "POST", "/instances", Path(path).read_bytes(), "application/dicom"
            )
            if status != 200:
                msg = f"Orthanc refused {path} ({status}): {data[:500]!r}\n{self.log_tail(5)}"
                raise RuntimeError(msg)
            answer = json.loads(data)
            if answer.get("Status") not in ("Success", "AlreadyStored"):
                msg = f"Orthanc did not store {path}: {answer}"
                raise RuntimeError(msg)
            uids = self._series_uids(answer["ParentSeries"])
            if uids not in series:
                series.append(uids)
        return series

    def _series_uids(self, series_id: str) -> tuple[str, str]:
        """(StudyInstanceUID, SeriesInstanceUID) of an Orthanc series id."""
        if series_id not in self._uids:
            series = self._json(f"/series/{series_id}")
            study = self._json(f"/studies/{series['ParentStudy']}")
            self._uids[series_id] = (
                study["MainDicomTags"]["StudyInstanceUID"],
                series["MainDicomTags"]["SeriesInstanceUID"],
            )
        return self._uids[series_id]

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    _close_clients = _close_connection


def start_orthanc() -> OrthancServer:
    """A running private Orthanc with its DICOMweb plugin; skips (loudly, with the reason and
    the install command) where Orthanc or the plugin is not installed."""
    binary, plugin = find_orthanc()
    return started(OrthancServer(binary, plugin))  # type: ignore[return-value]


# The test servers of remote slides (issue 13): their imports are kept here, apart from the
# Orthanc helper's above.
import contextlib
import dataclasses
import email.utils
import http.server
import mimetypes
import random
import re
import sys
import threading
import urllib.parse
from collections.abc import Mapping

# --------------------------------------------------------------------------------------------
# S3: moto's standalone server (``moto[server]``), a real HTTP S3 endpoint in its own process
# --------------------------------------------------------------------------------------------

#: How to get moto's server mode; repeated in every skip message.
MOTO_INSTALL_HINT = (
    'install it with `pip install "moto[server]"` (the `test` extra of pyproject.toml lists it)'
)

#: Credentials and region of the test S3 server (moto accepts any; clients need some).
S3_KEY = "testing"
S3_SECRET = "testing"
S3_REGION = "us-east-1"


def find_moto_server() -> None:
    """Skip the test, naming what is missing, where moto's server mode or boto3 (the uploads'
    client) cannot be imported. moto's server needs its ``server`` extra (Flask, Werkzeug,
    flask-cors) besides moto itself."""
    import importlib.util

    needed = {
        "moto": "moto",
        "flask": "Flask (moto[server])",
        "flask_cors": "flask-cors (moto[server])",
        "werkzeug": "Werkzeug (moto[server])",
        "boto3": "boto3",
    }
    missing = [name for module, name in needed.items() if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(
            f"S3 server missing: moto's server mode cannot start in {sys.executable} because "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; "
            f"{MOTO_INSTALL_HINT}"
        )


class MotoS3Server(ServerProcess):
    """moto's standalone S3 server (``python -m moto.server``) as a subprocess on a free port
    of 127.0.0.1, for one test session: real HTTP, real S3 API, state in that process only.

    ``endpoint_url`` is ``http://127.0.0.1:PORT``; ``storage_options`` are s3fs/fsspec's
    options for it; :meth:`create_bucket`, :meth:`upload` and :meth:`put` store objects over
    the S3 API with boto3; :meth:`reset` empties the server. Use as a context manager, or call
    :meth:`start` and :meth:`stop`. Starting takes about 1 s (moto's imports).
    """

    log_name = "moto.log"  # its stdout and stderr: Werkzeug's request log

    def __init__(self, directory: Path | None = None) -> None:
        super().__init__("wsiarray-moto-", directory)
        self._client: Any = None

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint, e.g. ``http://127.0.0.1:5000`` (path-style bucket addressing)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """``storage_options`` for s3fs (``fsspec.open("s3://bucket/key", **options)``)."""
        return {
            "key": S3_KEY,
            "secret": S3_SECRET,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": S3_REGION},
            # buckets as the first path segment: 127.0.0.1 has no per-bucket host names
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        }

    def _command(self) -> tuple[list[str], dict[str, str] | None]:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        return command, {**os.environ, "PYTHONUNBUFFERED": "1"}

    def _wait_until_up(self, timeout: float) -> None:
        """Poll moto's own API (``GET /moto-api/``) until it answers 200."""
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = (
                    f"moto's S3 server ({sys.executable} -m moto.server) exited with code "
                    f"{self.process.returncode} while starting on port {self.port}; the end of "
                    f"its log:\n{self.log_tail()}"
                )
                raise RuntimeError(msg)
            try:
                status = self._moto_api("GET", "/moto-api/")
            except OSError:
                time.sleep(0.02)
                continue
            if status == 200:
                return
            time.sleep(0.02)
        msg = (
            f"moto's S3 server did not answer on {self.endpoint_url}/moto-api/ within {timeout} s;"
            f" the end of its log:\n{self.log_tail()}"
        )
        raise RuntimeError(msg)

    def _moto_api(self, method: str, path: str) -> int:
        """One request to moto's own (non-S3) API; its status."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    @property
    def client(self) -> Any:
        """A boto3 S3 client of this server (made once): the uploads go over the S3 API."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=S3_KEY,
                aws_secret_access_key=S3_SECRET,
                region_name=S3_REGION,
                config=Config(s3={"addressing_style": "path"}),
            )
        return self._client

    def create_bucket(self, bucket: str) -> str:
        """Create ``bucket`` (no error if this server has it already); ``s3://bucket``."""
        client = self.client
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        return f"s3://{bucket}"

    def put(self, bucket: str, key: str, data: bytes) -> str:
        """Store ``data`` as ``s3://bucket/key`` (the bucket is created if needed)."""
        self.create_bucket(bucket)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def upload(
        self,
        bucket: str,
        files: Mapping[str, str | os.PathLike[str]] | Iterable[str | os.PathLike[str]],
        prefix: str = "",
    ) -> list[str]:
        """Upload local files into ``bucket`` (created if needed): a mapping ``{key: path}``, or
        paths stored under ``prefix + file name``. The ``s3://`` URLs, in the order given.

        Large files go up as multipart uploads (boto3's transfer manager), as real ones do.
        """
        self.create_bucket(bucket)
        items = (
            list(files.items())
            if isinstance(files, Mapping)
            else [(prefix + Path(path).name, path) for path in files]
        )
        urls = []
        for key, path in items:
            self.client.upload_file(str(path), bucket, key)
            urls.append(f"s3://{bucket}/{key}")
        return urls

    def reset(self) -> None:
        """Delete every bucket and object (moto's ``POST /moto-api/reset``)."""
        status = self._moto_api("POST", "/moto-api/reset")
        if status != 200:
            msg = f"moto answered {status} to POST /moto-api/reset"
            raise RuntimeError(msg)

    def _close_clients(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def start_moto_s3() -> MotoS3Server:
    """A running private S3 server (moto's server mode); skips (loudly, naming the missing
    package and how to install it) where moto's server mode or boto3 is not installed."""
    find_moto_server()
    return started(MotoS3Server())  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# HTTP: a static file server that honours Range, with injected latency, 503s and dropped
# connections
# --------------------------------------------------------------------------------------------

#: What :attr:`RangeHTTPServer.drop_mode` may be.
DROP_MODES = ("before-status", "mid-body", "either")

_RANGE_BOUNDARY = "wsiarray-byteranges-3f1c"
_BYTES_RANGE = re.compile(r"\s*([0-9]*)\s*-\s*([0-9]*)\s*")


def parse_byte_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """The ranges of a ``Range`` header as half-open ``(start, stop)`` byte offsets into a file
    of ``size`` bytes, clipped to it, in the order asked (RFC 9110, section 14.2).

    ``None`` when the header is not a valid ``bytes=`` range set (the server then ignores it
    and sends the whole file); ``[]`` when no range is satisfiable (416).

    >>> parse_byte_ranges("bytes=0-9, 20-, -5", 100)
    [(0, 10), (20, 100), (95, 100)]
    >>> parse_byte_ranges("bytes=100-", 100), parse_byte_ranges("bytes=5-2", 100)
    ([], None)
    """
    unit, equals, spec = header.partition("=")
    if not equals or unit.strip().lower() != "bytes" or not spec.strip():
        return None
    ranges = []
    for part in spec.split(","):
        match = _BYTES_RANGE.fullmatch(part)
        if match is None or not (match[1] or match[2]):
            return None
        if not match[1]:  # a suffix: the last N bytes
            length = int(match[2])
            if length > 0 and size > 0:
                ranges.append((max(0, size - length), size))
            continue
        start = int(match[1])
        end = int(match[2]) if match[2] else size - 1
        if match[2] and end < start:
            return None  # an invalid range makes the whole header invalid
        if start < size:
            ranges.append((start, min(end, size - 1) + 1))
    return ranges


@dataclasses.dataclass(frozen=True)
class RangeRequest:
    """One request the HTTP test server received, in :attr:`RangeHTTPServer.requests`.

    ``outcome`` is ``"served"`` (a normal answer, 200/206/304/404/416...), ``"failed"`` (an
    injected error status), ``"dropped-before-status"`` or ``"dropped-mid-body"``; ``status``
    is ``None`` when nothing was answered; ``body_bytes`` what was written of the body.
    """

    method: str
    path: str
    range: str | None
    status: int | None
    outcome: str
    body_bytes: int
    time: float


class _RangeRequestHandler(http.server.BaseHTTPRequestHandler):
    """Serves the files of :attr:`RangeHTTPServer.directory` (GET and HEAD only)."""

    server: _ThreadingRangeServer
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers and pooled clients do
    # headers and body go out in separate writes: with Nagle's algorithm the body of a small
    # answer waits for the client's delayed ACK of the headers (40 ms a request on Linux)
    disable_nagle_algorithm = True
    timeout = 30  # a kept-alive connection idle this long is closed
    server_version = "wsiarray-test-range/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the requests are in :attr:`RangeHTTPServer.requests`."""

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        owner = self.server.owner
        fate = owner._fate(head)
        if owner.latency > 0:
            time.sleep(owner.latency)
        range_header = self.headers.get("Range")
        if fate == "dropped-before-status":
            owner._record(self.command, self.path, range_header, None, fate, 0)
            self._drop()
            return
        if fate == "failed":
            body = b"injected failure (RangeHTTPServer.fail_rate)\n"
            self._send(owner.fail_status, {"Content-Type": "text/plain"}, len(body))
            if not head:
                self.wfile.write(body)
            owner._record(self.command, self.path, range_header, owner.fail_status, fate, 0)
            return
        status, headers, pieces = self._plan(owner, range_header)
        length = sum(len(p) if isinstance(p, bytes) else p[2] for p in pieces)
        self._send(status, headers, length)
        if head:
            owner._record(self.command, self.path, range_header, status, "served", 0)
            return
        limit = length // 2 if fate == "dropped-mid-body" else length
        written = self._write(pieces, limit)
        owner._record(self.command, self.path, range_header, status, fate, written)
        if fate == "dropped-mid-body":
            self._drop()

    def _plan(
        self, owner: RangeHTTPServer, range_header: str | None
    ) -> tuple[int, dict[str, str], list[bytes | tuple[Path, int, int]]]:
        """Status, headers and the body as pieces (bytes, or (file, offset, length))."""
        path = owner._resolve(self.path)
        if path is None:
            return 404, {"Content-Type": "text/plain"}, [b"not found\n"]
        stat = path.stat()
        size = stat.st_size
        etag = f'"{stat.st_mtime_ns:x}-{size:x}"'
        last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": last_modified,
            "Content-Type": mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        }
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
            return 304, {k: headers[k] for k in ("ETag", "Last-Modified")}, []
        if_range = self.headers.get("If-Range")
        if range_header is None or (if_range is not None and if_range not in (etag, last_modified)):
            return 200, headers, [(path, 0, size)]
        ranges = parse_byte_ranges(range_header, size)
        if ranges is None:
            return 200, headers, [(path, 0, size)]
        if not ranges:
            headers = {"Content-Range": f"bytes */{size}", "Content-Type": "text/plain"}
            return 416, headers, [b"range not satisfiable\n"]
        if len(ranges) == 1:
            (start, stop) = ranges[0]
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
            return 206, headers, [(path, start, stop - start)]
        pieces: list[bytes | tuple[Path, int, int]] = []
        for start, stop in ranges:
            part = (
                f"--{_RANGE_BOUNDARY}\r\nContent-Type: {headers['Content-Type']}\r\n"
                f"Content-Range: bytes {start}-{stop - 1}/{size}\r\n\r\n"
            )
            pieces += [part.encode(), (path, start, stop - start), b"\r\n"]
        pieces.append(f"--{_RANGE_BOUNDARY}--\r\n".encode())
        headers["Content-Type"] = f"multipart/byteranges; boundary={_RANGE_BOUNDARY}"
        return 206, headers, pieces

    def _send(self, status: int, headers: dict[str, str], length: int) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _write(self, pieces: list[bytes | tuple[Path, int, int]], limit: int) -> int:
        """Write the body's first ``limit`` bytes (all of it unless a drop cuts it); the
        number written. Files are read in 1 MiB blocks, so a whole large file is not held."""
        written = 0
        for piece in pieces:
            if written >= limit:
                break
            if isinstance(piece, bytes):
                chunk = piece[: limit - written]
                self.wfile.write(chunk)
                written += len(chunk)
                continue
            path, offset, length = piece
            with path.open("rb") as file:
                file.seek(offset)
                remaining = min(length, limit - written)
                while remaining > 0:
                    chunk = file.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    written += len(chunk)
                    remaining -= len(chunk)
        return written

    def _drop(self) -> None:
        """Close the connection now, without (the rest of) an answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)


class _ThreadingRangeServer(http.server.ThreadingHTTPServer):
    """One thread per connection; keeps its open connections so that stopping closes them."""

    daemon_threads = True
    # the listen backlog (socketserver's default is 5): a client opening dozens of connections
    # at once would otherwise see SYNs dropped and retried a second later
    request_queue_size = 128

    def __init__(self, owner: RangeHTTPServer) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _RangeRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut every open (kept-alive) connection down: their threads end."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is normal here (tests drop and time out)."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class RangeHTTPServer:
    """A static HTTP/1.1 file server of ``directory`` on a free port of 127.0.0.1, in a thread
    of the test process, with the faults a remote reader must survive.

    It answers ``GET`` and ``HEAD`` with ``Content-Length``, ``Accept-Ranges: bytes``, ``ETag``
    (from mtime and size: it changes when the file does) and ``Last-Modified``. ``Range:
    bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` answer 206 with ``Content-Range``; several ranges
    a ``multipart/byteranges`` 206; a range starting past the end 416 with ``bytes */size``; an
    invalid header is ignored (200, the whole file). ``If-Range`` (ETag or date) and
    ``If-None-Match`` are honoured. Directories are not listed; ``..`` is refused (404).
    Symbolic links are followed, so a test can link a large slide instead of copying it.

    Knobs, read at every request, so they can be changed while it runs:

    * ``latency``: seconds slept before each answer (also before failures and drops).
    * ``fail_rate``: the share of requests answered ``fail_status`` (503) with a short body.
    * ``drop_rate``: the share of requests whose connection is closed without an answer:
      ``drop_mode`` ``"before-status"`` (nothing sent), ``"mid-body"`` (status, headers with
      the full ``Content-Length``, half the body) or ``"either"`` (each drop picks one at
      random; HEADs and empty bodies always drop before the status).

    Which requests fail or drop is drawn from ``random.Random(seed)``, one draw per request in
    the order they arrive: the same sequence of requests meets the same faults (:meth:`reseed`
    restarts it). ``requests`` logs every GET and HEAD (method, path, Range header, status,
    outcome, body bytes written); :meth:`reset_counters` clears it, :meth:`reset` also restores
    the knobs. Starting and stopping take a few milliseconds.
    """

    def __init__(self, directory: str | os.PathLike[str], seed: int = 0) -> None:
        self.directory = Path(directory)
        self.latency = 0.0
        self.fail_status = 503
        self.drop_mode = "either"
        self._fail_rate = 0.0
        self._drop_rate = 0.0
        self._seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._requests: list[RangeRequest] = []
        self._server: _ThreadingRangeServer | None = None
        self._thread: threading.Thread | None = None

    # knobs ------------------------------------------------------------------------------
    @property
    def fail_rate(self) -> float:
        """The share of requests answered ``fail_status`` (0 to 1)."""
        return self._fail_rate

    @fail_rate.setter
    def fail_rate(self, value: float) -> None:
        self._check_rates(value, self._drop_rate)
        self._fail_rate = float(value)

    @property
    def drop_rate(self) -> float:
        """The share of requests whose connection is dropped (0 to 1)."""
        return self._drop_rate

    @drop_rate.setter
    def drop_rate(self, value: float) -> None:
        self._check_rates(self._fail_rate, value)
        self._drop_rate = float(value)

    @staticmethod
    def _check_rates(fail_rate: float, drop_rate: float) -> None:
        if not (0 <= fail_rate <= 1 and 0 <= drop_rate <= 1 and fail_rate + drop_rate <= 1):
            msg = (
                f"fail_rate ({fail_rate}) and drop_rate ({drop_rate}) must be in [0, 1] "
                "and add up to 1 at most"
            )
            raise ValueError(msg)

    def reseed(self, seed: int | None = None) -> None:
        """Restart the sequence of injected faults (with ``seed``, or the one given before)."""
        with self._lock:
            self._seed = self._seed if seed is None else seed
            self._rng = random.Random(self._seed)

    def reset(self) -> None:
        """No latency, no faults, the fault sequence restarted, the request log empty."""
        self.latency = 0.0
        self._fail_rate = self._drop_rate = 0.0
        self.fail_status = 503
        self.drop_mode = "either"
        self.reseed()
        self.reset_counters()

    # the request log ---------------------------------------------------------------------
    @property
    def requests(self) -> list[RangeRequest]:
        """Every GET and HEAD received since the last :meth:`reset_counters`, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """How many GETs and HEADs arrived (round trips, whatever their outcome)."""
        with self._lock:
            return len(self._requests)

    def count(self, method: str | None = None, outcome: str | None = None) -> int:
        """How many requests of ``method`` (``"GET"``, ``"HEAD"``) and/or ``outcome``."""
        return sum(
            (method is None or r.method == method) and (outcome is None or r.outcome == outcome)
            for r in self.requests
        )

    @property
    def bytes_served(self) -> int:
        """Body bytes written since the last :meth:`reset_counters`."""
        return sum(r.body_bytes for r in self.requests)

    def reset_counters(self) -> None:
        """Empty the request log (the knobs and the fault sequence are kept)."""
        with self._lock:
            self._requests.clear()

    def _record(
        self,
        method: str,
        path: str,
        range_header: str | None,
        status: int | None,
        outcome: str,
        body_bytes: int,
    ) -> None:
        request = RangeRequest(
            method, path, range_header, status, outcome, body_bytes, time.monotonic()
        )
        with self._lock:
            self._requests.append(request)

    def _fate(self, head: bool) -> str:
        """What happens to the next request: one draw of the seeded generator (two for a drop
        of mode "either")."""
        if self.drop_mode not in DROP_MODES:
            return "served"  # a mistyped mode must not crash the server thread
        with self._lock:
            draw = self._rng.random()
            if draw < self._drop_rate:
                mode = self.drop_mode
                if mode == "either":
                    mode = "mid-body" if self._rng.random() < 0.5 else "before-status"
                if head:
                    mode = "before-status"
                return f"dropped-{mode}"
            if draw < self._drop_rate + self._fail_rate:
                return "failed"
        return "served"

    def _resolve(self, url_path: str) -> Path | None:
        """The file a URL path names under ``directory``, or None (missing, a directory, or
        a path with ``..``)."""
        parts = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path).split("/")
        parts = [p for p in parts if p not in ("", ".")]
        if any(p == ".." or "\\" in p or "\0" in p for p in parts):
            return None
        path = self.directory.joinpath(*parts)
        return path if path.is_file() else None

    # running ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            msg = "the RangeHTTPServer is not running (call start())"
            raise RuntimeError(msg)
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:PORT`` (no trailing slash): the file
        ``directory / "a/b.svs"`` is at ``url + "/a/b.svs"``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Bind a free port of 127.0.0.1 and serve in a daemon thread."""
        self._server = _ThreadingRangeServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"RangeHTTPServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
