"""fsspec or obstore under the remote reader? The byte ranges of dask chunks of a slide, fetched
from S3 (moto's server) and over HTTP (the tests' Range server, 20 ms per answer) by both.

``python -m benchmarks.range_clients [--chunks N]`` (needs ``pip install obstore``; not part of
``make test``). For each of ``N`` level-0 chunks of 12 x 12 tiles (2880² px at 240-px tiles) of
the full-size benchmark slide, the ranges of its tiles are fetched:

- ``fsspec cat_ranges``: as :class:`wsiarray.sources._store.FsspecStore` does (neighbours within
  256 KB merged, one ``cat_ranges`` call, concurrent);
- ``obstore get_ranges, merged``: the same merged ranges through ``obstore.get_ranges``;
- ``obstore get_ranges, per tile``: every tile's own range, obstore coalescing them itself.

Each client fetches every chunk in turn (interleaved, the same chunks), after one warm-up
chunk; the medians per chunk are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from benchmarks.__main__ import FULL, bench_slide
from benchmarks.remote import _test_servers

TILES = 12  # tiles per chunk side: wsiarray's default chunk at 240-px tiles
MERGE_GAP = 256 * 1024


def _chunk_ranges(path: Path, count: int) -> list[list[tuple[int, int]]]:
    """The (offset, length) of each tile of ``count`` random level-0 chunks."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offsets, counts = np.asarray(page.dataoffsets), np.asarray(page.databytecounts)
        across = -(-page.imagewidth // page.tilewidth)
        down = -(-page.imagelength // page.tilelength)
    rng = np.random.default_rng(7)
    chunks = []
    for _ in range(count):
        cy, cx = rng.integers(0, down // TILES), rng.integers(0, across // TILES)
        index = [
            (cy * TILES + y) * across + cx * TILES + x for y in range(TILES) for x in range(TILES)
        ]
        chunks.append([(int(offsets[i]), int(counts[i])) for i in index])
    return chunks


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans: list[list[int]] = []
    for start, length in sorted(ranges):
        if spans and start - spans[-1][1] <= MERGE_GAP:
            spans[-1][1] = max(spans[-1][1], start + length)
        else:
            spans.append([start, start + length])
    return [(a, b) for a, b in spans]


def main(argv: list[str] | None = None) -> None:
    import fsspec
    import obstore
    from obstore.store import HTTPStore, S3Store

    parser = argparse.ArgumentParser(prog="python -m benchmarks.range_clients")
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args(argv)
    slide = bench_slide(FULL)
    chunks = _chunk_ranges(slide, args.chunks + 1)
    servers = _test_servers()
    directory = Path(tempfile.mkdtemp(prefix="wsiarray-range-clients-"))
    (directory / slide.name).symlink_to(slide)
    s3 = servers.start_moto_s3()
    try:
        [s3_url] = s3.upload("ranges", [slide])
        options = s3.storage_options
        with servers.RangeHTTPServer(directory) as http:
            http.latency = 0.020
            http_url = f"{http.url}/{slide.name}"
            s3fs_fs, s3_path = fsspec.core.url_to_fs(s3_url, **options)
            http_fs, http_path = fsspec.core.url_to_fs(http_url)
            s3_store = S3Store(
                "ranges",
                endpoint=s3.endpoint_url,
                access_key_id=options["key"],
                secret_access_key=options["secret"],
                region=options["client_kwargs"]["region_name"],
                virtual_hosted_style_request=False,
                client_options={"allow_http": True},
            )
            http_store = HTTPStore.from_url(http.url, client_options={"allow_http": True})

            def fsspec_fetch(fs, path):
                def fetch(ranges):
                    merged = _merge(ranges)
                    fs.cat_ranges(
                        [path] * len(merged), [a for a, _ in merged], [b for _, b in merged]
                    )

                return fetch

            def obstore_fetch(store, path, merge):
                def fetch(ranges):
                    spans = _merge(ranges) if merge else [(a, a + n) for a, n in ranges]
                    obstore.get_ranges(
                        store, path, starts=[a for a, _ in spans], ends=[b for _, b in spans]
                    )

                return fetch

            clients = {
                ("s3", "fsspec (s3fs) cat_ranges"): fsspec_fetch(s3fs_fs, s3_path),
                ("s3", "obstore get_ranges, merged"): obstore_fetch(s3_store, slide.name, True),
                ("s3", "obstore get_ranges, per tile"): obstore_fetch(s3_store, slide.name, False),
                ("http 20 ms", "fsspec (aiohttp) cat_ranges"): fsspec_fetch(http_fs, http_path),
                ("http 20 ms", "obstore get_ranges, merged"): obstore_fetch(
                    http_store, slide.name, True
                ),
                ("http 20 ms", "obstore get_ranges, per tile"): obstore_fetch(
                    http_store, slide.name, False
                ),
            }
            times: dict[tuple[str, str], list[float]] = {key: [] for key in clients}
            for fetch in clients.values():  # warm-up: sessions, connections, credentials
                fetch(chunks[0])
            for ranges in chunks[1:]:
                for key, fetch in clients.items():
                    started = time.perf_counter()
                    fetch(ranges)
                    times[key].append(time.perf_counter() - started)
    finally:
        s3.stop()
    mb = statistics.median(sum(n for _, n in ranges) for ranges in chunks) / 1e6
    print(
        f"{args.chunks} chunks of {TILES}x{TILES} tiles of `{slide.name}` ({mb:.2f} MB of tiles each)"
    )
    print("\n| from | client | median per chunk | MB/s |\n|---|---|---:|---:|")
    for (where, client), values in times.items():
        median = statistics.median(values)
        print(f"| {where} | {client} | {median * 1000:.0f} ms | {mb / median:.0f} |")


if __name__ == "__main__":
    main()
