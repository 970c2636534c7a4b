"""Shared fixtures: the real slides in ../shared/testdata and small synthetic slides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("WSIARRAY_TEST_DATA", REPO.parent / "shared" / "testdata")).resolve()


def real_slide(relative: str) -> Path:
    """Path of a real slide in the shared test data; skips (with the reason) where absent."""
    path = TESTDATA / relative
    if not path.exists():
        pytest.skip(
            f"real test slide {relative} not found under {TESTDATA} (set WSIARRAY_TEST_DATA)"
        )
    return path


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep generated samples out of the user's cache during tests."""
    os.environ.setdefault("WSIARRAY_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def sample_svs() -> Path:
    """The built-in sample slide (6000 x 4000, levels 1/4/16, JPEG with shared tables)."""
    import wsiarray

    return wsiarray.datasets.sample_slide()
