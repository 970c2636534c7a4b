"""One-shot commands import only what they use (issue 14): each case runs in a fresh process.

A fresh process pays for every module it imports: on a shared 2-core machine numpy costs
~0.2 s, and xarray with what it pulls in (pandas, pyarrow, dask, scipy) 1.5-3 s, against
~0.15 s for OpenSlide to print a slide's facts. These tests keep the modules out of the
commands that do not need them (``python -m benchmarks.oneshot`` measures the times).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: what building an xarray object imports (xarray imports dask.array to check every new
#: variable's type), and the cloud and plotting stacks
HEAVY = {
    "xarray",
    "pandas",
    "pyarrow",
    "dask",
    "distributed",
    "scipy",
    "zarr",
    "numcodecs",
    "fsspec",
    "s3fs",
    "wsidicom",
    "openslide",
    "large_image",
    "matplotlib",
}

REPORT = "import json, sys; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"


def _imported(code: str, *args: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported after running ``code``."""
    completed = subprocess.run(
        [sys.executable, "-c", f"{code}\n{REPORT}", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(completed.stdout.strip().splitlines()[-1]))


def _command(*argv: str) -> set[str]:
    """The packages imported by ``wsiarray ARGV`` (exit status 0 asserted)."""
    code = (
        "import sys\nfrom wsiarray.cli import main\n"
        "status = main(sys.argv[1:])\nassert status == 0, status"
    )
    return _imported(code, *argv)


def test_import_wsiarray_imports_neither_numpy_nor_the_array_stack() -> None:
    imported = _imported("import wsiarray")
    assert imported.isdisjoint(HEAVY | {"numpy", "tifffile", "PIL", "click"})


def test_lazy_names_load_on_first_use() -> None:
    code = (
        "import wsiarray\n"
        "assert callable(wsiarray.open) and wsiarray.Slide.__name__ == 'Slide'\n"
        "assert wsiarray.geometry.region_to_base\n"
        "from wsiarray import open_datatree"
    )
    assert "numpy" in _imported(code)


def test_help_and_version_import_no_numpy() -> None:
    for argv in (["--help"], ["--version"]):
        assert _command(*argv).isdisjoint(HEAVY | {"numpy", "tifffile", "PIL"})


def test_info_reads_headers_only(sample_svs: Path) -> None:
    imported = _command("info", str(sample_svs))
    assert imported.isdisjoint(HEAVY | {"PIL"})
    assert "tifffile" in imported


def test_region_at_a_file_level_reads_without_xarray(sample_svs: Path, tmp_path: Path) -> None:
    box = ["--left", "1000", "--top", "1000", "--width", "512", "--height", "512"]
    for name in ("r.npy", "r.png"):
        imported = _command("region", str(sample_svs), *box, "-o", str(tmp_path / name))
        assert imported.isdisjoint(HEAVY | {"PIL"})


@pytest.mark.parametrize("suffix", [".png", ".npy"])
def test_thumbnail_reads_without_xarray(sample_svs: Path, tmp_path: Path, suffix: str) -> None:
    imported = _command("thumbnail", str(sample_svs), "-o", str(tmp_path / f"t{suffix}"))
    assert imported.isdisjoint(HEAVY)
    assert "PIL" in imported  # Lanczos, and the PNG
