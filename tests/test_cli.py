"""The command line: every command on real slides, one-line errors, exit codes, progress."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import wsiarray
from wsiarray import cli, geometry
from wsiarray.cli import main

CMU = "aperio/CMU-1-Small-Region.svs"
NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"


def test_info_json(capsys: pytest.CaptureFixture[str], real_slide) -> None:
    assert main(["info", str(real_slide(NDPI)), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "hamamatsu"
    assert info["levels"] == [[4864, 3968], [2432, 1984], [1216, 992], [608, 496]]
    assert info["magnification"] == 40.0
    assert info["associated"]["macro"] == [406, 1188, 3]


def test_info_summary_and_level_table(capsys: pytest.CaptureFixture[str], real_slide) -> None:
    assert main(["info", str(real_slide(CMU))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "format         aperio (read with tifffile)" in lines
    assert "size           2220 x 2967 px (1.108 x 1.481 mm)" in lines
    assert "pixel size     0.499 x 0.499 µm" in lines
    assert "associated     thumbnail 574x768, label 387x463, macro 1280x431" in lines
    assert lines[-2].split() == ["level", "width", "height", "downsample", "mag", "µm/px", "tile"]
    assert lines[-1].split() == ["0", "2220", "2967", "1", "20", "0.499", "240x240"]


def test_info_unknown_resolution_and_exact_downsample(
    capsys: pytest.CaptureFixture[str], real_slide
) -> None:
    assert main(["info", str(real_slide("aperio/tcga-cr-7395-01a-01-ts1.svs"))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "pixel size     unknown" in lines
    assert lines[-1].split() == ["1", "2221", "1783", "2.00045", "-", "-", "256x256"]


def test_thumbnail(tmp_path: Path, capsys: pytest.CaptureFixture[str], real_slide) -> None:
    output = tmp_path / "thumb.png"
    assert main(["thumbnail", str(real_slide(NDPI)), "-o", str(output), "--size", "300"]) == 0
    with Image.open(output) as image:
        assert max(image.size) == 300
        assert image.size == (245, 300)  # 3968 x 4864 scaled to a longer side of 300
    assert "thumbnail 245 x 300 written" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".png", ".tif", ".npy"])
def test_region_writes_the_same_pixels_as_slide_region(
    tmp_path: Path, suffix: str, real_slide
) -> None:
    path = real_slide(CMU)
    output = tmp_path / f"region{suffix}"
    args = ["--left", "0.2", "--top", "0.3", "--width", "0.4", "--height", "0.25"]
    assert main(["-q", "region", str(path), *args, "--units", "mm", "--magnification", "5",
                 "-o", str(output)]) == 0  # fmt: skip
    expected = wsiarray.open(path).region(0.2, 0.3, 0.4, 0.25, units="mm", magnification=5).values
    if suffix == ".npy":
        written = np.load(output)
    elif suffix == ".tif":
        with tifffile.TiffFile(output) as tif:
            written = tif.asarray()
            x_resolution = tif.pages[0].tags["XResolution"].value
        assert x_resolution[0] / x_resolution[1] == pytest.approx(10 / (0.000499 * 4))  # px/cm
    else:
        written = np.asarray(Image.open(output))
    assert written.shape == expected.shape == (126, 201, 3)
    np.testing.assert_array_equal(written, expected)


def test_region_at_a_file_level_is_read_directly_with_the_same_pixels(
    tmp_path: Path, real_slide
) -> None:
    """A window inside a file level is read with Slide.read (no xarray): the same pixels and
    pixel size as Slide.region's, at level 0 and at a reduced level."""
    path = real_slide(NDPI)
    slide = wsiarray.open(path)
    box = {"left": 100.5, "top": 200, "width": 300, "height": 150}
    flat = [item for key, value in box.items() for item in (f"--{key}", str(value))]
    for level in (None, 2):
        output = tmp_path / f"r{level}.tif"
        extra = [] if level is None else ["--level", str(level), "--units", "level_pixels"]
        assert main(["-q", "region", str(path), *flat, *extra, "-o", str(output)]) == 0
        units = "base_pixels" if level is None else "level_pixels"
        expected = slide.region(**box, units=units, level=level)
        with tifffile.TiffFile(output) as tif:
            np.testing.assert_array_equal(tif.asarray(), expected.values)
            x_resolution = tif.pages[0].tags["XResolution"].value
        assert x_resolution[0] / x_resolution[1] == pytest.approx(10 / expected.attrs["mm_x"])


def test_region_pad_outside_uses_background(tmp_path: Path, real_slide) -> None:
    output = tmp_path / "pad.npy"
    args = ["--left", "2200", "--top", "0", "--width", "40", "--height", "10", "--pad"]
    assert main(["-q", "region", str(real_slide(CMU)), *args, "-o", str(output)]) == 0
    written = np.load(output)
    assert written.shape == (10, 40, 3)
    assert (written[:, 20:] == 255).all()  # past the right edge: white background


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--units", "parsecs"], "wsiarray: error: unknown unit 'parsecs'"),
        (["--left", "99999"], "wsiarray: error: the region left=99999.0"),
        (["--magnification", "80"], "wsiarray: error: that resolution is 4 times finer"),
    ],
)
def test_region_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str, real_slide
) -> None:
    base = {"--left": "0", "--top": "0", "--width": "100", "--height": "100"}
    base.update(zip(args[::2], args[1::2], strict=True))
    flat = [item for pair in base.items() for item in pair]
    output = tmp_path / "r.png"
    assert main(["region", str(real_slide(CMU)), *flat, "-o", str(output)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(message)
    assert not output.exists()


def test_region_too_big_for_one_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, real_slide
) -> None:
    monkeypatch.setattr(geometry, "MAX_PIXELS", 100 * 100)
    args = ["--left", "0", "--top", "0", "--width", "101", "--height", "100"]
    assert main(["region", str(real_slide(CMU)), *args, "-o", str(tmp_path / "r.npy")]) == 1
    assert "more than the 10,000 one image file takes" in capsys.readouterr().err


def test_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], real_slide
) -> None:
    assert main(["frobnicate"]) == 2
    args = ["--left", "0", "--top", "0", "--width", "10", "--height", "10"]
    assert main(["region", str(real_slide(CMU)), *args, "-o", str(tmp_path / "r.bmpx")]) == 2
    assert "unknown output type" in capsys.readouterr().err
    assert main(["thumbnail", str(real_slide(CMU)), "-o", str(tmp_path / "no" / "t.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["info", str(tmp_path / "missing.svs")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("wsiarray: error: no such file")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(wsiarray.SlideNotFoundError):
        main(["--debug", "info", str(tmp_path / "missing.svs")])


def test_non_slide_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.svs"
    text.write_text("not a slide\n")
    assert main(["info", str(text)]) == 1
    assert "is not a slide any reader can open" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert wsiarray.__version__ in capsys.readouterr().out


def test_demo_writes_a_thumbnail(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    output = tmp_path / "thumb.png"
    assert main(["demo", "-o", str(output)]) == 0
    out = capsys.readouterr().out
    assert "level 0 mean colour: R=" in out
    assert output.stat().st_size > 10_000


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_on_stderr_unless_quiet(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    quiet: bool,
    real_slide,
) -> None:
    monkeypatch.setattr(cli, "PROGRESS_AFTER", 0.0)
    monkeypatch.setattr(cli, "DIRECT_READ_PIXELS", 0)  # through dask, not a direct read
    output = tmp_path / "thumb.png"
    args = [*(["--quiet"] if quiet else []), "thumbnail", str(real_slide(NDPI)), "-o", str(output)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert ("100% Completed" in captured.err) is not quiet
    assert (captured.out == "") is quiet
    assert output.exists()


def test_convert_round_trips_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], real_slide
) -> None:
    source = real_slide(NDPI)
    output = tmp_path / "slide.ome.zarr"
    assert main(["convert", str(source), str(output), "--chunks", "512"]) == 0
    assert "wrote " in capsys.readouterr().out
    copy, slide = wsiarray.open(output), wsiarray.open(source)
    assert copy.level_shapes == slide.level_shapes
    assert copy.magnification == 40.0
    np.testing.assert_array_equal(copy.image(0).values, slide.image(0).values)
    assert main(["convert", str(source), str(output)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    expected = f"{output} already exists and is not empty; pass overwrite=True (or --overwrite)"
    assert err == [f"wsiarray: error: {expected} to replace it"]
    assert main(["-q", "convert", str(source), str(output), "--overwrite", "--pyramid",
                 "power_of_two", "--compressor", "jpeg", "--no-associated"]) == 0  # fmt: skip
    assert capsys.readouterr().out == ""
    copy = wsiarray.open(output)
    assert copy.level_shapes[1] == (2432, 1984)
    assert copy.metadata.associated == ()


@pytest.mark.parametrize(
    "relative",
    [
        "aperio/CMU-1-Small-Region.svs",
        "aperio/tcga-cr-7395-01a-01-ts1.svs",
        "hamamatsu/test3-TRITC 2 (560).ndpi",
        "dicom/multiframe_camelyon_challenge_image.dcm",
        "ome-tiff/OS-2-ndpi.ome.tif",
        "ome-tiff/test_pyramid.ome.tif",
        "qptiff/small_vectra.qptiff",
    ],
)
def test_every_command_on_every_real_slide(tmp_path: Path, relative: str, real_slide) -> None:
    path = str(real_slide(relative))
    slide = wsiarray.open(path)
    assert main(["-q", "info", path]) == 0
    suffix = ".png" if slide.metadata.dtype == "uint8" else ".tif"
    assert main(["-q", "thumbnail", path, "-o", str(tmp_path / f"t{suffix}"), "--size", "64"]) == 0
    # the command reads a small level directly, Slide.thumbnail through xarray: same pixels
    assert main(["-q", "thumbnail", path, "-o", str(tmp_path / "t.npy"), "--size", "64"]) == 0
    expected = slide.thumbnail(64)
    written = np.load(tmp_path / "t.npy")
    np.testing.assert_array_equal(written, expected[..., None] if expected.ndim == 2 else expected)
    region = ["--left", "0.25", "--top", "0.25", "--width", "0.5", "--height", "0.5"]
    npy = tmp_path / "r.npy"
    assert main(["-q", "region", path, *region, "--units", "fraction", "-o", str(npy)]) == 0
    np.testing.assert_array_equal(
        np.load(npy), slide.region(0.25, 0.25, 0.5, 0.5, units="fraction").values
    )
    store = tmp_path / "s.ome.zarr"
    assert main(["-q", "convert", path, str(store), "--chunks", "256"]) == 0
    copy = wsiarray.open(store)
    assert copy.level_shapes == slide.level_shapes
    assert copy.metadata.channels == slide.metadata.channels
    last = slide.level_count - 1
    np.testing.assert_array_equal(copy.image(last).values, slide.image(last).values)


def test_conflicting_options_upsample_and_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], real_slide
) -> None:
    path = str(real_slide(CMU))
    box = ["--left", "0", "--top", "0", "--width", "10", "--height", "10"]
    out = str(tmp_path / "r.npy")
    assert main(["region", path, *box, "--level", "0", "--magnification", "10", "-o", out]) == 1
    assert capsys.readouterr().err.strip() == (
        "wsiarray: error: give at most one of level=, magnification=, mpp= and downsample="
    )
    assert main(["-q", "region", path, *box, "--magnification", "40", "--upsample", "-o", out]) == 0
    assert np.load(out).shape == (20, 20, 3)
    assert main(["thumbnail", path, "-o", str(tmp_path / "t.png"), "--size", "0"]) == 2
