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


class OrthancServer:
    """A private Orthanc with its DICOMweb plugin, for one test session.

    ``url`` is the DICOMweb root (``http://127.0.0.1:PORT/dicom-web``), ``rest_url`` Orthanc's
    own REST API. Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, binary: Path, plugin: Path, directory: Path | None = None) -> None:
        self.binary = binary
        self.plugin = plugin
        self._own_directory = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="wsiarray-orthanc-")) if directory is None else directory
        )
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
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

    @property
    def log_path(self) -> Path:
        """Orthanc's own log (its stdout and stderr)."""
        return self.directory / "orthanc.log"

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of Orthanc's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self, timeout: float = 20.0, attempts: int = 3) -> Self:
        """Write the configuration, start Orthanc and wait until ``/system`` answers.

        A port taken between choosing it and Orthanc binding it is retried on another port.
        Raises ``RuntimeError`` with the log's tail when Orthanc exits or does not answer in
        ``timeout`` seconds.
        """
        for attempt in range(attempts):
            self.port = free_port()
            config = self.directory / "orthanc.json"
            config.write_text(json.dumps(orthanc_config(self.directory, self.port, self.plugin)))
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    [str(self.binary), str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
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

    def _terminate(self) -> None:
        """Stop the process: SIGTERM, then SIGKILL if it has not exited within 10 s."""
        self._close_connection()
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
        """Stop Orthanc and remove its temporary folder (storage, index, config, log)."""
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


def start_orthanc() -> OrthancServer:
    """A running private Orthanc with its DICOMweb plugin; skips (loudly, with the reason and
    the install command) where Orthanc or the plugin is not installed."""
    binary, plugin = find_orthanc()
    server = OrthancServer(binary, plugin)
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise
