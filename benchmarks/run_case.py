"""Run one benchmark case in this (fresh) process and print its result as JSON.

``python -m benchmarks.run_case CASE SLIDE``
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time

from benchmarks import cases, compat_speed, remote

#: name → (function, keyword arguments); the libraries a case uses are imported untimed
CASES = {
    "raw limit, 1 thread": (cases.raw_limit, {"threads": 1}),
    "raw limit, 2 threads": (cases.raw_limit, {"threads": 2}),
    "openslide, 1 thread": (cases.openslide_mean, {"threads": 1}),
    "openslide, 2 threads": (cases.openslide_mean, {"threads": 2}),
    "tiffslide, 1 thread": (cases.tiffslide_mean, {"threads": 1}),
    "tiffslide, 2 threads": (cases.tiffslide_mean, {"threads": 2}),
    "large_image default source": (cases.large_image_mean, {"source": "default"}),
    "large_image tiff source": (cases.large_image_mean, {"source": "tiff"}),
    "wsiarray image.mean level 0": (cases.wsiarray_mean, {"level": 0}),
    "wsiarray image.mean level 1": (cases.wsiarray_mean, {"level": 1}),
    "wsiarray LocalCluster(2 procs) level 0": (None, {"work": cases.level_mean_work, "workers": 2}),
    "wsiarray tile map 10x: threads": (cases.tile_map_threads, {}),
    "wsiarray tile map 10x: LocalCluster(1 proc)": (
        None,
        {"work": cases.tile_map_work, "workers": 1},
    ),
    "wsiarray tile map 10x: LocalCluster(2 procs)": (
        None,
        {"work": cases.tile_map_work, "workers": 2},
    ),
    "wsiarray tile map 10x: LocalCluster(2 procs), no MALLOC_TRIM_THRESHOLD_": (
        None,
        {"work": cases.tile_map_work, "workers": 2, "malloc_trim": False},
    ),
    "patches: wsiarray": (cases.wsiarray_patches, {}),
    "patches: wsiarray dask slicing": (cases.wsiarray_patches_dask_slicing, {}),
    "patches: openslide": (cases.openslide_patches, {}),
    "patches: tiffslide": (cases.tiffslide_patches, {}),
    "compat tileIterator 1024: wsiarray": (cases.compat_tile_iterator, {"library": "wsiarray"}),
    "compat tileIterator 1024: large_image default source": (
        cases.compat_tile_iterator,
        {"library": "large_image"},
    ),
    "compat tileIterator 1024: large_image tiff source": (
        cases.compat_tile_iterator,
        {"library": "large_image", "source": "tiff"},
    ),
    "compat getRegion 10000² base: wsiarray": (
        cases.compat_get_region,
        {"library": "wsiarray", "scale": 1.0},
    ),
    "compat getRegion 10000² base: large_image default source": (
        cases.compat_get_region,
        {"library": "large_image", "scale": 1.0},
    ),
    "compat getRegion 10000² 1/4: wsiarray": (
        cases.compat_get_region,
        {"library": "wsiarray", "scale": 0.25},
    ),
    "compat getRegion 10000² 1/4: large_image default source": (
        cases.compat_get_region,
        {"library": "large_image", "scale": 0.25},
    ),
    "first read: wsiarray": (cases.first_pixel, {"library": "wsiarray"}),
    "first read: wsiarray slide.region (xarray)": (
        cases.first_pixel,
        {"library": "wsiarray-xarray"},
    ),
    "first read: openslide": (cases.first_pixel, {"library": "openslide"}),
    "first read: tiffslide": (cases.first_pixel, {"library": "tiffslide"}),
    "first read: large_image": (cases.first_pixel, {"library": "large_image"}),
    # a slide in object storage and over HTTP: the runner starts the servers (benchmarks/remote.py)
    **remote.cases(),
    # the compat layer against the raw limit of the level it reads (issue 14)
    **compat_speed.cases(),
}


#: substring of a case name → libraries imported before its clock starts
LIBRARIES = {
    "raw": ["tifffile", "imagecodecs"],
    "remote": ["fsspec.implementations.http", "s3fs", "aiohttp", "botocore"],
    "openslide": ["openslide"],
    "tiffslide": ["tiffslide"],
    "large_image": ["large_image"],
    # dask imports distributed (when installed) at the first compute: ~0.25 s of import
    "wsiarray": [
        "wsiarray",
        "dask.array",
        "xarray",
        "distributed",
        "simplejpeg",
        "wsiarray.compat.large_image",
    ],
}


def _preimport(name: str) -> None:
    """Import the libraries of a case untimed (first-read cases time the whole process)."""
    if name.startswith("first read"):
        return
    for key, modules in LIBRARIES.items():
        if key in name:
            for module in modules:
                importlib.import_module(module)


def _on_cluster(
    path: str, work, workers: int, malloc_trim: bool = True
) -> tuple[float, str, float]:
    """Compute ``work(path)`` on a LocalCluster of worker processes (cluster start not timed).

    ``malloc_trim=False`` drops the ``MALLOC_TRIM_THRESHOLD_=65536`` that dask's nannies give
    their workers: it makes glibc map and unmap every allocation over 128 KB.
    """
    import dask
    from distributed import Client, LocalCluster

    if not malloc_trim:
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})

    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, Client(cluster) as client:
        for module in LIBRARIES["wsiarray"]:  # workers start warm, like threads do
            client.run(importlib.import_module, module)
        lazy, megapixels = work(path)
        started = time.perf_counter()
        lazy.compute()
        seconds = time.perf_counter() - started
    return megapixels, "MP", seconds


def main() -> None:
    name, path = sys.argv[1], sys.argv[2]
    function, kwargs = CASES[name]
    _preimport(name)
    if function is None:
        work, unit, seconds = _on_cluster(path, **kwargs)
        extra = []
    else:
        started = time.perf_counter()
        work, unit, *extra = function(path, **kwargs)
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extra = dict(extra[0]) if extra else {}
    # a case that does untimed set-up (a remote case's open) reports the seconds of its work
    seconds = extra.pop("work_seconds", seconds)
    result = {"work": work, "unit": unit, "seconds": seconds, "peak_rss_mb": peak_mb}
    print(json.dumps(result | extra))


if __name__ == "__main__":
    main()
