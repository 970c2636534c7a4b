"""The notebook display of a slide (``Slide._repr_html_``) and the shared summary rows."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import pytest
from PIL import Image

import wsiarray
from wsiarray import _display


def _preview_size(html: str) -> tuple[int, int]:
    data = html.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        return image.size


def test_html_has_preview_summary_and_levels(real_slide) -> None:
    slide = wsiarray.open(real_slide("hamamatsu/test3-DAPI-2-(387).ndpi"))
    started = time.perf_counter()
    html = slide._repr_html_()
    elapsed = time.perf_counter() - started
    assert _preview_size(html) == (209, 256)  # the 496 x 608 level, longer side 256
    assert (
        '<th style="text-align:left">magnification</th><td style="text-align:left">40x</td>' in html
    )
    assert html.count("<tr><td>") == 4  # one row per file level
    assert "<td>3968</td><td>4864</td>" in html
    assert elapsed < 5  # small and fast: decodes only the smallest level


def test_large_single_level_uses_the_vendor_thumbnail(
    monkeypatch: pytest.MonkeyPatch, real_slide
) -> None:
    slide = wsiarray.open(real_slide("aperio/CMU-1-Small-Region.svs"))
    monkeypatch.setattr(_display, "PREVIEW_MAX_PIXELS", 1000)
    assert _preview_size(slide._repr_html_()) == (191, 256)  # the 574 x 768 thumbnail


def test_no_preview_when_nothing_is_cheap(monkeypatch: pytest.MonkeyPatch, real_slide) -> None:
    slide = wsiarray.open(real_slide("ome-tiff/OS-2-ndpi.ome.tif"))
    monkeypatch.setattr(_display, "PREVIEW_MAX_PIXELS", 1000)
    html = slide._repr_html_()
    assert "no level small enough for a quick preview" in html
    assert "<td>2202</td><td>2202</td>" in html


def test_fluorescence_preview_and_escaping(real_slide) -> None:
    slide = wsiarray.open(real_slide("qptiff/small_vectra.qptiff"))
    html = slide._repr_html_()
    assert _preview_size(html) == (256, 192)
    assert "DAPI, FITC, Cy3 (uint8)" in html
    assert "derived from the pixel size" in html


def test_corrupt_tile_gives_a_message_not_an_exception(damaged_ndpi) -> None:
    path = damaged_ndpi(level=3, interval=0)
    html = wsiarray.open(path)._repr_html_()
    assert "preview unavailable:" in html
    assert "row 0, column 0 of level 3 cannot be decoded" in html
    assert "<td>3968</td><td>4864</td>" in html  # the rest of the display is still there


def test_preview_never_decodes_a_large_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # levels 4200² and 100²: a 256-px thumbnail would need the 17.6 MP level 0
    import numpy as np
    import tifffile

    path = tmp_path / "gap.ome.tif"
    base = np.zeros((4200, 4200), np.uint8)
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(base, tile=(256, 256), subifds=1)
        tif.write(base[::42, ::42], tile=(16, 16), subfiletype=1)
    slide = wsiarray.open(path)
    assert slide.level_shapes == ((4200, 4200), (100, 100))
    reads: list[int] = []
    monkeypatch.setattr(slide, "image", lambda level=0: reads.append(level))
    html = slide._repr_html_()
    assert "no level small enough for a quick preview" in html
    assert reads == []
