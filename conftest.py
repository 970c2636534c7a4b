"""For the tests and the docstring examples alike: generated data stays out of the user's cache."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep generated samples (the built-in sample slide) out of the user's cache during tests."""
    os.environ.setdefault("WSIARRAY_CACHE", str(tmp_path_factory.mktemp("cache")))
