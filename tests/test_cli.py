"""The command line: info, demo, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import real_slide
from wsiarray.cli import main


def test_info_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(real_slide("hamamatsu/test3-DAPI-2-(387).ndpi")), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "hamamatsu"
    assert info["levels"] == [[4864, 3968], [2432, 1984], [1216, 992], [608, 496]]
    assert info["magnification"] == 40.0
    assert info["associated"]["macro"] == [406, 1188, 3]


def test_info_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(real_slide("aperio/CMU-1-Small-Region.svs"))]) == 0
    out = capsys.readouterr().out
    assert "format: aperio (reader tifffile)" in out
    assert "    0    2220    2967          1      20   0.000499   240x240" in out


def test_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["info", str(tmp_path / "missing.svs")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("wsiarray: error: no such file")


def test_demo_writes_a_thumbnail(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    output = tmp_path / "thumb.png"
    assert main(["demo", "-o", str(output)]) == 0
    out = capsys.readouterr().out
    assert "level 0 mean colour: R=" in out
    assert output.stat().st_size > 10_000
