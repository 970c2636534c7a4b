"""Cohorts: headers of many slides as a table, and per-tile features written per slide."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import wsiarray as wa

pytest.importorskip("pyarrow", reason="pyarrow (a test dependency) writes the Parquet parts")

CMU = "aperio/CMU-1-Small-Region.svs"
NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"


def _mean(tile: np.ndarray) -> np.ndarray:
    return tile.reshape(-1, tile.shape[-1]).mean(axis=0)


@pytest.fixture
def cohort_files(real_slide, tmp_path: Path) -> list[Path]:
    folder = tmp_path / "slides"
    folder.mkdir()
    files = [folder / "cmu.svs", folder / "ndpi.ndpi", folder / "broken.svs"]
    shutil.copy(real_slide(CMU), files[0])
    shutil.copy(real_slide(NDPI), files[1])
    files[2].write_bytes(real_slide(CMU).read_bytes()[:5000])  # cut short
    return files


def test_open_cohort_lists_every_slide_and_the_errors(cohort_files) -> None:
    table = wa.open_cohort([*cohort_files, cohort_files[0].with_name("missing.svs")])
    assert list(table["id"]) == ["cmu", "ndpi", "broken", "missing"]
    cmu = table.set_index("id").loc["cmu"]
    slide = wa.open(cohort_files[0])
    assert (cmu["width"], cmu["height"]) == (slide.shape[1], slide.shape[0])
    assert cmu["mm_x"] == slide.mm_x
    assert cmu["levels"] == slide.level_count
    assert cmu["error"] == ""
    errors = table.set_index("id")["error"]
    assert "TruncatedFileError" in errors["broken"]
    assert "SlideNotFoundError" in errors["missing"]
    with pytest.raises(wa.TruncatedFileError):
        wa.open_cohort(cohort_files, errors="raise")


def test_map_tiles_equals_single_slide_maps_and_resumes(cohort_files, tmp_path: Path) -> None:
    table = wa.open_cohort(cohort_files)
    out = tmp_path / "features"
    status = wa.map_tiles(table, _mean, out, size=256, progress=False).set_index("id")
    assert status.loc["cmu", "status"] == "written"
    assert status.loc["ndpi", "status"] == "written"
    assert status.loc["broken", "status"] == "failed"
    assert "TruncatedFileError" in status.loc["broken", "error"]
    features = pd.read_parquet(out)
    for name, path in [("cmu", cohort_files[0]), ("ndpi", cohort_files[1])]:
        grid = wa.TileGrid(wa.open(path), 256)
        expected = grid.map(_mean).values
        part = features[features["slide"] == name].sort_values(["tile_row", "tile_col"])
        assert len(part) == expected.shape[0] * expected.shape[1] == status.loc[name, "tiles"]
        got = part[[c for c in part.columns if c.startswith("f")]].to_numpy()
        np.testing.assert_allclose(got, expected.reshape(-1, expected.shape[-1]))
        np.testing.assert_allclose(
            part["x_mm"].to_numpy()[: expected.shape[1]], grid.map(_mean).tile_x.values
        )
    # resume: complete parts are skipped, not recomputed
    before = (out / "cmu.parquet").stat().st_mtime_ns
    again = wa.map_tiles(table, _mean, out, size=256, progress=False).set_index("id")
    assert again.loc["cmu", "status"] == "skipped"
    assert again.loc["cmu", "tiles"] == status.loc["cmu", "tiles"]
    assert (out / "cmu.parquet").stat().st_mtime_ns == before
    assert not list(out.glob(".*partial"))  # no half-written part is left


def test_map_tiles_keeps_only_tissue_tiles(cohort_files, tmp_path: Path) -> None:
    table = wa.open_cohort(cohort_files[:1])
    status = wa.map_tiles(
        table, _mean, tmp_path / "tissue", size=256, tissue=True, progress=False
    ).set_index("id")
    slide = wa.open(cohort_files[0])
    grid = wa.TileGrid(slide, 256, mask=wa.tissue_mask(slide))
    assert status.loc["cmu", "tiles"] == int(grid.keep.sum()) < grid.keep.size


def test_tissue_on_a_slide_without_a_pixel_size(real_slide, tmp_path: Path) -> None:
    # TCGA's JPEG 2000 SVS records no pixel size: its mask comes from its smallest level
    table = wa.open_cohort([real_slide("aperio/tcga-cr-7395-01a-01-ts1.svs")])
    status = wa.map_tiles(table, _mean, tmp_path / "out", size=512, tissue=True, progress=False)
    assert status["status"].tolist() == ["written"], status["error"].tolist()
    assert status["tiles"].item() > 0


def test_a_cohort_in_s3_keeps_its_storage_options(s3_server, real_slide, tmp_path: Path) -> None:
    s3_server.create_bucket("cohort-options")
    urls = s3_server.upload("cohort-options", [real_slide(CMU)])
    table = wa.open_cohort(urls, storage_options=s3_server.storage_options)
    assert table["error"].tolist() == [""]
    assert s3_server.storage_options["secret"] not in repr(table.attrs)
    status = wa.map_tiles(table, _mean, tmp_path / "s3", size=512, progress=False)  # no options
    assert status["status"].tolist() == ["written"], status["error"].tolist()
