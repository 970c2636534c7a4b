"""A read-only zarr v3 store whose chunks are produced by a Python function.

The OpenSlide and Pillow readers serve their levels through it: zarr asks for chunk
``"<level>/c/<row>/<col>/0"``, the store calls ``read_chunk(level, row, col)`` in a worker
thread (so many chunks decode in parallel) and hands the bytes back. Group and array
metadata are rendered once, at construction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import override

import numpy as np
from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype

__all__ = ["ArraySpec", "ChunkStore"]


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """Shape ``(height, width, bands)``, chunk shape ``(rows, cols)`` and dtype of one array."""

    shape: tuple[int, int, int]
    chunks: tuple[int, int]
    dtype: str
    fill_value: int = 0

    def metadata(self) -> bytes:
        """Render the array's ``zarr.json``."""
        return json.dumps(
            {
                "zarr_format": 3,
                "node_type": "array",
                "shape": list(self.shape),
                "data_type": np.dtype(self.dtype).name,
                "chunk_grid": {
                    "name": "regular",
                    "configuration": {"chunk_shape": [*self.chunks, self.shape[2]]},
                },
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": self.fill_value,
                "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
                "dimension_names": ["y", "x", "c"],
                "attributes": {},
            }
        ).encode()


ChunkReader = Callable[[int, int, int], np.ndarray]


class ChunkStore(Store):
    """Read-only zarr v3 group of arrays ``"0"``, ``"1"``, ... whose chunks come from a function.

    Parameters
    ----------
    arrays : sequence of ArraySpec
        One entry per array (pyramid level).
    read_chunk : callable
        ``read_chunk(array_index, chunk_row, chunk_col)`` returns the chunk as a
        ``(rows, cols, bands)`` array. Edge chunks may be smaller than the chunk shape; the
        store pads them with the fill value. It is called from worker threads, so it must be
        thread-safe.
    label : str
        Shown in ``repr``, usually the file name.

    Notes
    -----
    The store holds whatever ``read_chunk`` holds (usually an open file), so it is not
    picklable; wsiarray's dask graphs pickle the slide's path instead.
    """

    supports_writes = False
    supports_deletes = False
    supports_partial_writes = False
    supports_listing = True

    def __init__(self, arrays: Sequence[ArraySpec], read_chunk: ChunkReader, *, label: str) -> None:
        super().__init__(read_only=True)
        self._arrays = tuple(arrays)
        self._read_chunk = read_chunk
        self._label = label
        self._documents = {"zarr.json": self._group_metadata()}
        for i, spec in enumerate(self._arrays):
            self._documents[f"{i}/zarr.json"] = spec.metadata()

    def _group_metadata(self) -> bytes:
        return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}).encode()

    def _chunk_address(self, key: str) -> tuple[int, int, int] | None:
        parts = key.split("/")
        if len(parts) != 5 or parts[1] != "c" or parts[4] != "0":
            return None
        try:
            level, row, col = int(parts[0]), int(parts[2]), int(parts[3])
        except ValueError:
            return None
        if not 0 <= level < len(self._arrays):
            return None
        spec = self._arrays[level]
        rows = -(-spec.shape[0] // spec.chunks[0])
        cols = -(-spec.shape[1] // spec.chunks[1])
        if not (0 <= row < rows and 0 <= col < cols):
            return None
        return level, row, col

    def _padded_chunk(self, level: int, row: int, col: int) -> np.ndarray:
        """The chunk as contiguous bytes (a uint8 view, no copy unless padding is needed)."""
        spec = self._arrays[level]
        block = np.asarray(self._read_chunk(level, row, col), dtype=spec.dtype)
        full = (*spec.chunks, spec.shape[2])
        if block.shape != full:
            padded = np.full(full, spec.fill_value, dtype=spec.dtype)
            padded[: block.shape[0], : block.shape[1]] = block
            block = padded
        return np.ascontiguousarray(block).reshape(-1).view(np.uint8)

    @override
    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        # docstring inherited
        if byte_range is not None:
            msg = f"{type(self).__name__} does not serve byte ranges (asked {byte_range!r})"
            raise NotImplementedError(msg)
        if key in self._documents:
            return prototype.buffer.from_bytes(self._documents[key])
        address = self._chunk_address(key)
        if address is None:
            return None
        data = await asyncio.to_thread(self._padded_chunk, *address)
        return prototype.buffer.from_array_like(data)

    @override
    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        # docstring inherited
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    @override
    async def exists(self, key: str) -> bool:
        # docstring inherited
        return key in self._documents or self._chunk_address(key) is not None

    @override
    async def set(self, key: str, value: Buffer) -> None:
        # docstring inherited
        msg = f"{self!r} is read-only"
        raise PermissionError(msg)

    @override
    async def delete(self, key: str) -> None:
        # docstring inherited
        msg = f"{self!r} is read-only"
        raise PermissionError(msg)

    @override
    async def list(self) -> AsyncIterator[str]:
        # docstring inherited: metadata documents only (chunks are virtual)
        for key in self._documents:
            yield key

    @override
    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        # docstring inherited
        for key in self._documents:
            if key.startswith(prefix):
                yield key

    @override
    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        # docstring inherited
        prefix = prefix.rstrip("/")
        seen: set[str] = set()
        for key in self._documents:
            rest = key[len(prefix) + 1 :] if prefix else key
            if prefix and not key.startswith(prefix + "/"):
                continue
            child = rest.split("/", 1)[0]
            if child not in seen:
                seen.add(child)
                yield child

    @override
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._label!r})"
