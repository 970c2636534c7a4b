"""Types and defaults shared across modules (kept free of heavy imports)."""

from __future__ import annotations

__all__ = ["DEFAULT_CHUNK", "ChunksLike"]

#: Default dask chunk side in pixels: whole native tiles adding up to about this much.
DEFAULT_CHUNK = 4096

#: A dask chunk side in pixels, ``(rows, columns)``, or None for :data:`DEFAULT_CHUNK`.
ChunksLike = int | tuple[int, int] | None
