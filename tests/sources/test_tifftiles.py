"""The TIFF tile reader: every decode path gives tifffile's pixels."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from wsiarray._jpeg_markers import SOI
from wsiarray.errors import CorruptTileError
from wsiarray.sources._jpeg import ADOBE_RGB
from wsiarray.sources._store import LocalStore
from wsiarray.sources._tifftiles import LevelTiles
from wsiarray.synthetic import write_aperio_svs


@pytest.fixture
def level_tiles() -> Iterator[Callable[[Path], tuple[LevelTiles, tifffile.TiffPageSeries]]]:
    """Opens level 0 of a TIFF as :class:`LevelTiles` (and closes the files afterwards)."""
    opened: list[tifffile.TiffFile] = []

    def open_level(path: Path) -> tuple[LevelTiles, tifffile.TiffPageSeries]:
        tif = tifffile.TiffFile(path)
        opened.append(tif)
        series = tif.series[0].levels[0]
        return LevelTiles(
            path, LocalStore(path, fd=tif.filehandle.fileno()), 0, series, fill=255
        ), series

    yield open_level
    for tif in opened:
        tif.close()


def _assert_reads_like_tifffile(tiles: LevelTiles, series: tifffile.TiffPageSeries) -> None:
    height, width = tiles.shape
    expected = series.asarray().reshape(height, width, -1)  # YX or YXS
    np.testing.assert_array_equal(tiles.read(0, height, 0, width), expected)
    # a block that starts and ends inside tiles
    y0, x0 = tiles.tile[0] // 3, tiles.tile[1] // 2
    y1, x1 = min(height, y0 + 2 * tiles.tile[0] + 7), min(width, x0 + tiles.tile[1] + 11)
    np.testing.assert_array_equal(tiles.read(y0, y1, x0, x1), expected[y0:y1, x0:x1])


@pytest.mark.parametrize(
    ("relative", "components"),
    [
        ("aperio/CMU-1-Small-Region.svs", "RGB"),  # Aperio: JPEG of untransformed R, G, B
        ("ome-tiff/OS-2-ndpi.ome.tif", "YCbCr"),  # JFIF
    ],
)
def test_real_rgb_jpeg_tiles_decode_as_rgbx(
    relative: str, components: str, level_tiles, real_slide
) -> None:
    tiles, series = level_tiles(real_slide(relative))
    assert tiles.jpeg is not None
    header = tiles.jpeg.header
    assert header.startswith(SOI)
    assert (ADOBE_RGB in header) == (components == "RGB")
    _assert_reads_like_tifffile(tiles, series)


def test_synthetic_ycbcr_420_tiles_decode_as_rgbx(tmp_path: Path, level_tiles) -> None:
    path = tmp_path / "odd.svs"
    write_aperio_svs(path, size=(1000, 1333), tile=240, downsamples=(1, 4), quality=80)
    tiles, series = level_tiles(path)
    assert tiles.jpeg is not None
    _assert_reads_like_tifffile(tiles, series)


def _grey_jpeg(path: Path) -> np.ndarray:
    blocks = np.random.default_rng(3).integers(0, 255, (32, 44), dtype=np.uint8)
    image = np.kron(blocks, np.ones((16, 16), np.uint8))[:500, :700]  # compresses like tissue
    tifffile.imwrite(path, image, tile=(256, 256), compression="jpeg")
    return image


def test_grey_jpeg_tiles_decode_strictly(tmp_path: Path, level_tiles) -> None:
    path = tmp_path / "grey.tif"
    _grey_jpeg(path)
    tiles, series = level_tiles(path)
    assert tiles.jpeg is not None
    _assert_reads_like_tifffile(tiles, series)


def test_a_grey_tile_zeroed_inside_is_refused(tmp_path: Path, level_tiles) -> None:
    # libjpeg (and imagecodecs) decode it with only a warning, most of the tile wrong
    path = tmp_path / "grey.tif"
    _grey_jpeg(path)
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages.first.dataoffsets[1], tif.pages.first.databytecounts[1]
    data = bytearray(path.read_bytes())
    data[offset + count // 2 : offset + count - 2] = bytes(count - count // 2 - 2)
    path.write_bytes(bytes(data))
    tiles, _series = level_tiles(path)
    assert tiles.read(0, 256, 0, 256).shape == (256, 256, 1)  # the tile before it reads
    with pytest.raises(CorruptTileError, match="row 0, column 1 of level 0"):
        tiles.read(0, 256, 256, 512)


def _copy_with_tile(real_slide, tmp_path: Path, edit) -> tuple[Path, np.ndarray]:
    """CMU-1 with tile 5 edited in place; and that tile's intact pixels."""
    source = real_slide("aperio/CMU-1-Small-Region.svs")
    with tifffile.TiffFile(source) as tif:
        page = tif.pages.first
        offset, count = page.dataoffsets[5], page.databytecounts[5]
        intact = tif.series[0].asarray()[:240, 1200:1440]
    data = bytearray(source.read_bytes())
    tile = bytearray(data[offset : offset + count])
    edit(tile)
    data[offset : offset + count] = tile
    target = tmp_path / "edited.svs"
    target.write_bytes(bytes(data))
    return target, intact


def test_a_harmless_libjpeg_warning_is_not_taken_for_damage(
    tmp_path: Path, level_tiles, real_slide
) -> None:
    # Se = 0 in a baseline scan header: libjpeg warns "Invalid SOS parameters for sequential
    # JPEG" (some encoders write it) and decodes the right pixels, as tifffile does
    def zero_spectral_end(tile: bytearray) -> None:
        sos = tile.find(b"\xff\xda")
        components = tile[sos + 4]
        tile[sos + 5 + 2 * components + 1] = 0

    path, intact = _copy_with_tile(real_slide, tmp_path, zero_spectral_end)
    tiles, _series = level_tiles(path)
    np.testing.assert_array_equal(tiles.read(0, 240, 1200, 1440), intact)


def test_a_jfif_marker_among_the_tables_does_not_turn_rgb_components_into_ycbcr(
    tmp_path: Path, level_tiles, real_slide
) -> None:
    # tifffile reads the tables as a stream of their own, so its JFIF marker does not make
    # libjpeg treat Aperio's R, G, B components as YCbCr; the spliced stream must not either
    path = tmp_path / "jfif-tables.svs"
    path.write_bytes(real_slide("aperio/CMU-1-Small-Region.svs").read_bytes())
    jfif = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    with tifffile.TiffFile(path, mode="r+") as tif:
        tag = tif.pages.first.tags["JPEGTables"]
        tag.overwrite(tag.value[:2] + jfif + tag.value[2:])
    tiles, series = level_tiles(path)
    assert series.keyframe.jpegtables[2:4] == b"\xff\xe0"
    assert ADOBE_RGB in tiles.jpeg.header
    _assert_reads_like_tifffile(tiles, series)
    expected = tifffile.imread(real_slide("aperio/CMU-1-Small-Region.svs"))
    np.testing.assert_array_equal(tiles.read(0, 480, 0, 480), expected[:480, :480])


NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"  # 3968 x 4864, restart intervals of 8 x 3968 px


def test_ndpi_restart_intervals_decode_in_runs_as_tifffile_decodes_each(
    level_tiles, real_slide
) -> None:
    tiles, series = level_tiles(real_slide(NDPI))
    assert tiles.jpeg is not None
    assert tiles.jpeg.intervals
    assert tiles.jpeg.runs
    assert tiles.tile == (8, 3968)
    _assert_reads_like_tifffile(tiles, series)
    expected = series.asarray()
    # runs that start at every interval number (RST1 first, ...), and end in an interval
    for y0, y1 in ((8, 77), (13, 301), (4800, 4864), (4000, 4001)):
        np.testing.assert_array_equal(tiles.read(y0, y1, 5, 3001), expected[y0:y1, 5:3001])


def test_intervals_sampled_2x2_are_not_decoded_in_runs(real_slide) -> None:
    # chroma upsampling would read across an interval's edge in a run, not in the interval
    from wsiarray.sources._jpeg import JpegTileDecoder

    with tifffile.TiffFile(real_slide(NDPI)) as tif:
        header = bytearray(tif.series[0].levels[0].keyframe.jpegheader)
    sof = header.find(b"\xff\xc0")
    assert header[sof + 11] == 0x11  # Y sampled 1x1, as Cb and Cr: 4:4:4
    assert JpegTileDecoder((8, 3968), 3, False, None, bytes(header)).runs
    header[sof + 11] = 0x22  # Y 2x2: 4:2:0
    assert not JpegTileDecoder((8, 3968), 3, False, None, bytes(header)).runs


@pytest.mark.parametrize("how", ["flipped", "early marker"])
def test_a_damaged_interval_in_a_run_reads_as_it_would_on_its_own(
    how: str, tmp_path: Path, level_tiles, real_slide
) -> None:
    """A run that does not decode cleanly is decoded interval by interval: the damaged one
    raises or decodes (leniently) exactly as it does alone."""
    source = real_slide(NDPI)
    with tifffile.TiffFile(source) as tif:
        page = tif.series[0].levels[0].keyframe
        offset, count = page.dataoffsets[20], page.databytecounts[20]
    data = bytearray(source.read_bytes())
    if how == "flipped":  # entropy data changed mid-interval
        data[offset + count // 2 : offset + count // 2 + 8] = b"\x5a" * 8
    else:  # a restart marker mid-interval: its entropy data ends early
        data[offset + count // 2 : offset + count // 2 + 2] = b"\xff\xd3"
    path = tmp_path / "damaged.ndpi"
    path.write_bytes(bytes(data))
    tiles, _series = level_tiles(path)
    assert tiles._runs

    def read() -> np.ndarray | str:
        try:
            return tiles.read(0, 512, 0, 3968)
        except CorruptTileError as exc:
            return str(exc)

    in_runs = read()
    tiles._runs = False
    alone = read()
    if isinstance(alone, str):
        assert in_runs == alone
        assert "row 20, column 0 of level 0" in alone
    else:
        np.testing.assert_array_equal(in_runs, alone)


def test_a_large_read_is_shared_with_an_idle_core() -> None:
    import threading

    from wsiarray.sources._tifftiles import _Crew

    crew = _Crew()
    crew._cores = 2
    both = threading.Barrier(2, timeout=10)  # passes only when two threads work at once
    threads: set[str] = set()

    def work(unit: object) -> None:
        name = threading.current_thread().name
        if name not in threads:  # each thread's first unit waits for the other's
            threads.add(name)
            both.wait()

    crew.run(list(range(50)), work)
    assert len(threads) == 2
    assert any(name.startswith("wsiarray-decode") for name in threads)
    assert crew._busy == 0


def test_a_helper_error_is_raised_in_the_reading_thread() -> None:
    import threading

    from wsiarray.sources._tifftiles import _Crew

    crew = _Crew()
    crew._cores = 2
    both = threading.Barrier(2, timeout=10)
    done: list[object] = []

    def work(unit: object) -> None:
        if unit in (0, 1):
            both.wait()  # the first two units are taken by the reader and the helper
        if threading.current_thread().name.startswith("wsiarray-decode"):
            msg = f"helper failed on unit {unit}"
            raise ValueError(msg)
        done.append(unit)

    with pytest.raises(ValueError, match="helper failed"):
        crew.run(list(range(20)), work)
    assert len(done) < 20  # units after the failure were not worked on
    assert crew._busy == 0


def test_no_helpers_where_omp_num_threads_is_1(monkeypatch: pytest.MonkeyPatch) -> None:
    # dask's nanny sets it in each worker process of a cluster: the worker's threads have
    # the cores
    from wsiarray.sources._tifftiles import _cores, _Crew

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _cores() == 1
    crew = _Crew()
    crew.run(list(range(50)), lambda unit: None)
    assert crew._pool is None


def test_a_forked_child_starts_with_no_readers_and_no_helpers() -> None:
    import os
    import warnings

    from wsiarray.sources._tifftiles import _CREW

    _CREW.run(list(range(40)), lambda unit: None)
    read, write = os.pipe()
    with warnings.catch_warnings():  # "multi-threaded, fork() may deadlock": the child only
        warnings.simplefilter("ignore", DeprecationWarning)  # writes to a pipe and exits
        pid = os.fork()
    if pid == 0:  # the child: report its crew's state, then leave without cleanup
        os.write(write, f"{_CREW._busy} {_CREW._pool is None}".encode())
        os._exit(0)
    os.close(write)
    assert os.read(read, 100) == b"0 True"
    os.close(read)
    os.waitpid(pid, 0)
