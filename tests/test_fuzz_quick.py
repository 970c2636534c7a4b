"""The fuzzer's fixed-seed quick pass (issue 15, deliverable 2): a few hundred mutants of every
reader's formats, each opened and read in a child process with a time and an address-space
limit; any hang, memory blow-up, non-WsiArrayError exception, crash, silent wrong pixels or
silently lost levels fails it, listing each mutant's reproducer.

It runs in every ``make test`` (about 45 s on a quiet 2-core machine, 2 minutes at load 8);
``WSIARRAY_FUZZ=0`` skips it, ``WSIARRAY_FUZZ_COUNT`` changes the number of mutants. A few
mutants through the reference libraries (the report's side-by-side columns) always run.
The fuzzer runs as its own process (``python -m fuzz``): it forks a child per mutant from a
parent that must have no threads, which a pytest session that has run dask code has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEED = 15
COUNT = int(os.environ.get("WSIARRAY_FUZZ_COUNT", "300"))

needs_fuzz_switch = pytest.mark.skipif(
    os.environ.get("WSIARRAY_FUZZ") == "0",
    reason="WSIARRAY_FUZZ=0: the fuzz quick pass is switched off",
)


@needs_fuzz_switch
def test_quick_pass(tmp_path: Path) -> None:
    report = tmp_path / "fuzz-quick.md"
    command = [
        sys.executable, "-m", "fuzz", "--quick", "--seed", str(SEED), "--count", str(COUNT),
        "--timeout", "15", "--max-level-pixels", "4e6", "--jobs", "2", "--quiet",
        "--report", str(report), "--no-fail",
    ]  # fmt: skip
    data = _run(command, report, timeout=1800)
    assert data["mutants"] >= COUNT * 0.95, "mutants were not run"
    failures = [
        f"{f['outcome']}: {f['id']} ({f['kind']}: {f['detail']}) "
        f"{(f.get('failure') or {}).get('type', '')} {(f.get('failure') or {}).get('where', '')}"
        f"\n    python -m fuzz --replay {f['id']} --timeout 15 --max-level-pixels 4e6"
        for f in data["failures"]
    ]
    assert not failures, f"{len(failures)} of {data['mutants']} mutants failed:\n" + "\n".join(
        failures[:40]
    )


def test_reference_libraries_columns_count_every_mutant(tmp_path: Path) -> None:
    """Six mutants (seed 15) of an SVS every library reads, an OME-TIFF OpenSlide does not
    and a PNG only wsiarray reads: four columns, each counting every mutant once; a library is
    'unsupported' exactly on the entries whose original it does not read (~13 s)."""
    pytest.importorskip("tiffslide", reason="tiffslide (the test extra) is not installed")
    report = tmp_path / "fuzz-references.md"
    command = [
        sys.executable, "-m", "fuzz", "--seed", "15", "--count", "6", "--timeout", "15",
        "--max-level-pixels", "4e6", "--formats", "synthetic-svs-jpeg", "ome-pyramid",
        "synthetic-png", "--references", "openslide,tiffslide,tifffile", "--quiet",
        "--report", str(report), "--no-fail",
    ]  # fmt: skip
    data = _run(command, report, timeout=120)
    side = data["references"]
    assert data["mutants"] == 6
    assert side["libraries"] == ["wsiarray", "openslide", "tiffslide", "tifffile"]
    for library, counts in side["total"].items():
        assert sum(counts.values()) == data["mutants"], library
    expected_unsupported = {
        "synthetic-svs-jpeg": set(),
        "ome-pyramid": {"openslide"},
        "synthetic-png": {"openslide", "tiffslide", "tifffile"},
    }
    for out in data["outcomes"]:
        unsupported = {n for n, cls in out["references"].items() if cls == "unsupported"}
        assert unsupported == expected_unsupported[out["entry"]], out["id"]
        assert set(out["references"]) == {"openslide", "tiffslide", "tifffile"}
    text = report.read_text()
    assert "| outcome per mutant | wsiarray | OpenSlide | tiffslide | tifffile |" in text
    assert "| **total** (6 mutants) | 6 | 6 | 6 | 6 |" in text


def _run(command: list[str], report: Path, *, timeout: float) -> dict:
    """Run the fuzzer as its own process (it forks from a parent without threads) and return
    its JSON report."""
    done = subprocess.run(
        command, check=False, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(report.with_suffix(".json").read_text())
