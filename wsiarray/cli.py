"""The ``wsiarray`` command line: ``info``, ``thumbnail``, ``region``, ``convert`` and ``demo``.

Built on click. Errors print one line (``wsiarray: error: ...``) and exit with 1 (2 for a
usage error); ``--debug`` shows the traceback instead. Long work shows a dask progress bar
on standard error unless ``--quiet``.

A one-shot command imports only what it uses: ``info`` reads headers (numpy and tifffile,
never xarray or dask), and ``region`` and ``thumbnail`` read a window of up to
:data:`~wsiarray.chunks.DIRECT_READ_PIXELS` of a file level with :meth:`Slide.read
<wsiarray.Slide.read>`. Building an xarray object imports xarray, pandas, pyarrow, dask and
scipy (xarray imports ``dask.array`` to check every new variable's type): 1.5-3 s of a
fresh process on a shared 2-core machine, against ~0.1 s for the read itself.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wsiarray.chunks import DIRECT_READ_PIXELS
from wsiarray.errors import PixelBudgetError, WsiArrayError

if TYPE_CHECKING:
    import numpy as np

    from wsiarray.geometry import PixelWindow, ScalePlan
    from wsiarray.slide import Slide

__all__ = ["PROGRESS_AFTER", "main"]

#: Seconds of work before the progress bar appears.
PROGRESS_AFTER = 1.0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")


class CommandError(click.ClickException):
    """An error shown as one ``wsiarray: error: ...`` line, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"wsiarray: error: {self.format_message()}", err=True)


class _Group(click.Group):
    """Turns any failure inside a command into one line, unless ``--debug``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get("wsiarray.debug"):
                raise
            if isinstance(exc, WsiArrayError):
                message = str(exc)
            elif isinstance(exc, OSError):
                message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
            else:
                message = f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)"
            raise CommandError(message) from exc


@contextlib.contextmanager
def _progress(ctx: click.Context) -> Iterator[None]:
    """A dask progress bar on standard error for work that takes over a second."""
    if ctx.meta.get("wsiarray.quiet"):
        yield
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(minimum=PROGRESS_AFTER, out=sys.stderr):
        yield


def _say(ctx: click.Context, text: str) -> None:
    if not ctx.meta.get("wsiarray.quiet"):
        click.echo(text)


def _open(path: str) -> Slide:
    import wsiarray

    return wsiarray.open(path)


def _describe(slide: Slide) -> str:
    """The summary and level table that ``info`` and ``demo`` print."""
    from wsiarray._display import LEVEL_COLUMNS, level_rows, summary_rows, text_table

    rows = summary_rows(slide)
    width = max(len(label) for label, _ in rows)
    summary = "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
    return f"{summary}\n\n{text_table(LEVEL_COLUMNS, level_rows(slide))}"


def _write_image(pixels: np.ndarray, output: Path, mm: tuple[float | None, float | None]) -> None:
    """Write ``(y, x, c)`` pixels as PNG/JPEG (Pillow), TIFF (tifffile, with the pixel size) or NPY."""
    import numpy as np

    suffix = output.suffix.lower()
    if suffix == ".npy":
        np.save(output, pixels)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        from wsiarray.units import from_mm

        resolution = None
        if mm[0] and mm[1]:  # pixels per centimetre (x, y)
            resolution = (1 / from_mm(mm[1], "cm"), 1 / from_mm(mm[0], "cm"))
        tifffile.imwrite(
            output,
            pixels,
            photometric="rgb" if pixels.shape[2] in (3, 4) else "minisblack",
            planarconfig="contig",
            resolution=resolution,
            resolutionunit="CENTIMETER" if resolution else None,
            compression="zlib",
            tile=(256, 256) if min(pixels.shape[:2]) >= 256 else None,
        )
    else:
        if pixels.dtype != np.uint8 or pixels.shape[2] not in (1, 3, 4):
            msg = (
                f"{output.name}: {suffix} holds 8-bit grey, RGB or RGBA, but these pixels are "
                f"{pixels.dtype} with {pixels.shape[2]} channels; write .tif or .npy instead"
            )
            raise CommandError(msg)
        bands = pixels[..., 0] if pixels.shape[2] == 1 else pixels
        if suffix in (".jpg", ".jpeg") and bands.ndim == 3 and bands.shape[2] == 4:
            bands = bands[..., :3]
        bands = np.ascontiguousarray(bands)
        import imagecodecs  # loaded already: tifffile imports it

        if suffix == ".png" and imagecodecs.PNG.available:
            # imagecodecs' libpng, not Pillow: importing Pillow is ~0.45 x numpy's import, a
            # sixth of a one-shot `wsiarray region` (same pixels; zlib's default level, as
            # Pillow's)
            output.write_bytes(imagecodecs.png_encode(bands))
            return
        from PIL import Image

        Image.fromarray(bands).save(output)


def _direct_window(
    slide: Slide,
    left: float,
    top: float,
    width: float,
    height: float,
    units: str,
    level: int | None,
) -> tuple[ScalePlan, PixelWindow] | None:
    """The file level and window that :meth:`Slide.region` reads for a region at a file
    level (``level``, or full resolution), if the window lies inside the level and is small
    enough to be read directly; else ``None`` (and ``Slide.region`` does the work, and
    raises what it raises). The same plan and window as ``Slide.region``'s, so the same pixels
    (tests/test_cli.py compares them)."""
    from wsiarray import geometry

    index = 0 if level is None else level
    if not 0 <= index < slide.level_count:
        return None
    plan, window = slide.region_window(left, top, width, height, units=units, level=index)
    rows, cols = window.shape
    if rows <= 0 or cols <= 0 or rows * cols > min(DIRECT_READ_PIXELS, geometry.MAX_PIXELS):
        return None
    return (plan, window) if window.clipped(*plan.shape) == window else None


def _small_thumbnail(slide: Slide, size: int) -> np.ndarray | None:
    """:meth:`Slide.thumbnail`'s pixels, read with :meth:`Slide.read` (no xarray, no dask)
    when its level is small enough to be read directly; else ``None``."""
    from wsiarray.resample import lanczos_thumbnail

    level = slide.thumbnail_level(size)
    height, width = slide.level_shapes[level]
    if height * width > DIRECT_READ_PIXELS:
        return None
    return lanczos_thumbnail(slide.read(0, 0, width, height, level=level), size)


def _check_output(output: str) -> Path:
    path = Path(output)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        msg = f"{output}: unknown output type; end the name in {', '.join(IMAGE_SUFFIXES)}"
        raise click.BadParameter(msg, param_hint="'-o'")
    if not path.parent.exists():
        msg = f"{output}: the folder {path.parent} does not exist"
        raise click.BadParameter(msg, param_hint="'-o'")
    return path


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wsiarray")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors (no progress bar).")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, debug: bool) -> None:
    """Whole-slide images as arrays: inspect, cut out, convert."""
    ctx.meta["wsiarray.quiet"] = quiet
    ctx.meta["wsiarray.debug"] = debug


@cli.command()
@click.argument("slide")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(slide: str, as_json: bool) -> None:
    """Metadata of SLIDE: format, reader, pixel size, magnification, levels, associated images."""
    opened = _open(slide)
    meta = opened.metadata
    if as_json:
        import json

        payload = {
            **opened.tree.attrs,
            "channels": list(meta.channels),
            "dtype": meta.dtype,
            "levels": [list(level.shape) for level in meta.levels],
            "associated": {a.name: list(a.shape) for a in meta.associated},
        }
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(_describe(opened))


@cli.command()
@click.argument("slide")
@click.option("-o", "--output", required=True, help="Image file to write (.png, .jpg, .tif, .npy).")
@click.option(
    "--size",
    default=512,
    show_default=True,
    type=click.IntRange(min=1),
    help="Longer side in pixels.",
)
@click.pass_context
def thumbnail(ctx: click.Context, slide: str, output: str, size: int) -> None:
    """Write a thumbnail of SLIDE whose longer side is at most --size pixels."""
    path = _check_output(output)
    opened = _open(slide)
    pixels = _small_thumbnail(opened, size)
    if pixels is None:
        with _progress(ctx):
            pixels = opened.thumbnail(size)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    _write_image(pixels, path, (None, None))
    _say(ctx, f"thumbnail {pixels.shape[1]} x {pixels.shape[0]} written to {path}")


@cli.command()
@click.argument("slide")
@click.option("--left", type=float, required=True, help="Left edge, in --units.")
@click.option("--top", type=float, required=True, help="Top edge, in --units.")
@click.option("--width", type=float, required=True, help="Width, in --units.")
@click.option("--height", type=float, required=True, help="Height, in --units.")
@click.option(
    "--units",
    default="base_pixels",
    show_default=True,
    help="base_pixels, level_pixels, fraction, or a length: mm, um ...",
)
@click.option("--magnification", type=float, help="Output magnification, e.g. 10 (default: full).")
@click.option(
    "--mpp", type=float, help="Output pixel size in micrometres (instead of --magnification)."
)
@click.option("--level", type=int, help="Output at this file level (instead of --magnification).")
@click.option(
    "--pad", is_flag=True, help="Fill parts outside the slide with the background colour."
)
@click.option("--upsample", is_flag=True, help="Allow a resolution finer than the slide's.")
@click.option("-o", "--output", required=True, help="Image file to write (.png, .jpg, .tif, .npy).")
@click.pass_context
def region(
    ctx: click.Context,
    slide: str,
    left: float,
    top: float,
    width: float,
    height: float,
    units: str,
    magnification: float | None,
    mpp: float | None,
    level: int | None,
    pad: bool,
    upsample: bool,
    output: str,
) -> None:
    """Cut a rectangle out of SLIDE at any resolution and write it to an image file."""
    path = _check_output(output)
    opened = _open(slide)
    if magnification is None and mpp is None:
        direct = _direct_window(opened, left, top, width, height, units, level)
        if direct is not None:  # a window inside a file level: read it, no xarray
            plan, window = direct
            pixels = opened.read(
                window.x0, window.y0, window.shape[1], window.shape[0], level=plan.level
            )
            resolution = opened.metadata.resolution.at(*plan.downsample)
            _write_image(pixels, path, (resolution.mm_y, resolution.mm_x))
            _say(ctx, f"region {pixels.shape[1]} x {pixels.shape[0]} px written to {path}")
            return
    image = opened.region(
        left,
        top,
        width,
        height,
        units=units,
        level=level,
        magnification=magnification,
        mpp=mpp,
        pad=pad,
        upsample=upsample,
    )
    from wsiarray import geometry

    budget = geometry.MAX_PIXELS  # the library's one budget, read now: it may be changed
    if image.shape[0] * image.shape[1] > budget:
        msg = (
            f"the region is {image.shape[1]} x {image.shape[0]} pixels, more than the "
            f"{budget:,} one image file takes (wsiarray.geometry.MAX_PIXELS); ask for a "
            "lower --magnification or use `wsiarray convert` for the whole slide"
        )
        raise PixelBudgetError(msg)
    with _progress(ctx):
        values = image.values
    _write_image(values, path, (image.attrs.get("mm_y"), image.attrs.get("mm_x")))
    _say(ctx, f"region {values.shape[1]} x {values.shape[0]} px written to {path}")


@cli.command()
@click.argument("slide")
@click.argument("output")
@click.option("--chunks", default=1024, show_default=True, help="Chunk side in pixels.")
@click.option(
    "--compressor",
    type=click.Choice(["zstd", "jpeg", "none"]),
    default="zstd",
    show_default=True,
    help="zstd is lossless; jpeg is lossy (8-bit grey or RGB only).",
)
@click.option(
    "--pyramid",
    type=click.Choice(["levels", "power_of_two"]),
    default="levels",
    show_default=True,
    help="The slide's own levels, or downsamples 1, 2, 4, ... by area averaging.",
)
@click.option("--no-associated", is_flag=True, help="Leave out label, macro, thumbnail.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.pass_context
def convert(
    ctx: click.Context,
    slide: str,
    output: str,
    chunks: int,
    compressor: str,
    pyramid: str,
    no_associated: bool,
    overwrite: bool,
) -> None:
    """Convert SLIDE to an OME-Zarr (OME-NGFF 0.5, zarr v3) multiscale image at OUTPUT."""
    from wsiarray.export import write_ome_zarr

    opened = _open(slide)
    started = time.perf_counter()
    with _progress(ctx):
        written = write_ome_zarr(
            opened,
            output,
            pyramid=pyramid,  # type: ignore[arg-type]
            chunks=chunks,
            compressor=compressor,  # type: ignore[arg-type]
            associated=not no_associated,
            overwrite=overwrite,
        )
    size = sum(f.stat().st_size for f in Path(written).rglob("*") if f.is_file())
    _say(
        ctx,
        f"wrote {written} ({size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s",
    )


@cli.command()
@click.option(
    "-o",
    "--output",
    default="wsiarray-demo-thumbnail.png",
    show_default=True,
    help="Thumbnail PNG.",
)
@click.pass_context
def demo(ctx: click.Context, output: str) -> None:
    """Open the built-in sample slide, compute its mean colour in parallel, write a thumbnail."""
    import wsiarray

    started = time.perf_counter()
    path = wsiarray.datasets.sample_slide()
    click.echo(
        f"sample slide: {path} ({path.stat().st_size / 1e6:.1f} MB, "
        f"ready in {time.perf_counter() - started:.1f} s)"
    )
    started = time.perf_counter()
    slide = wsiarray.open(path)
    click.echo(f"opened in {(time.perf_counter() - started) * 1000:.1f} ms")
    click.echo(_describe(slide))
    # the thumbnail first: dask's one-time start-up (it imports distributed, ~0.25 s) is then
    # not counted in the throughput below
    pixels = slide.thumbnail(512)
    _write_image(pixels, _check_output(output), (None, None))
    click.echo(f"thumbnail {pixels.shape[1]}x{pixels.shape[0]} written to {Path(output).resolve()}")
    image = slide.tree["level0"].image
    started = time.perf_counter()
    with _progress(ctx):
        mean = image.mean(("y", "x")).compute()
    seconds = time.perf_counter() - started
    megapixels = image.shape[0] * image.shape[1] / 1e6
    colour = ", ".join(f"{c}={v:.1f}" for c, v in zip(mean.c.values, mean.values, strict=True))
    click.echo(
        f"level 0 mean colour: {colour}  ({megapixels:.1f} MP in {seconds:.2f} s, "
        f"{megapixels / seconds:.0f} MP/s, {image.data.npartitions} dask chunks)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 for an error (a slide that cannot be read, a bad region ...), 2 for
        a usage error.
    """
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="wsiarray",
            standalone_mode=False,
        )
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        click.echo("wsiarray: aborted", err=True)
        return 1
    return 0
