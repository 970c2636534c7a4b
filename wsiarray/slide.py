"""The user-facing :class:`Slide`: a slide's DataTree plus the metadata around it."""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from wsiarray import geometry
from wsiarray.chunks import DIRECT_READ_PIXELS, ChunksLike, default_chunk
from wsiarray.errors import LevelError, OptionError, RegionError, ScaleError
from wsiarray.resample import lanczos_thumbnail
from wsiarray.sources import SlideMetadata, SourceSpec, redact, source_cache

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["Slide"]


class Slide:
    """An opened whole-slide image.

    Create it with :func:`wsiarray.open`. :meth:`image` gives the slide at any resolution as
    a lazy, dask-backed :class:`xarray.DataArray` with dims ``(y, x, c)`` and ``y``/``x`` in
    millimetres at pixel centres; :attr:`tree` gathers the file's levels. Nothing is
    decoded until computed. A slide pickles (as its path and options).

    Tuples are in numpy order, rows before columns: ``shape`` is ``(height, width)``.

    A slide with focal planes or time points (OME-TIFF ``Z``/``T``) shows them all in
    :attr:`tree` (``image`` dims ``(z, y, x, c)``, ``(t, y, x, c)`` or ``(t, z, y, x, c)``);
    the other methods read one plane, the first unless :meth:`at_plane` picks another.

    Attributes
    ----------
    metadata : SlideMetadata
        Normalised metadata (pixel size in mm, magnification, levels, associated images).
    """

    def __init__(
        self,
        spec: SourceSpec,
        metadata: SlideMetadata,
        *,
        chunks: ChunksLike = None,
        plane: tuple[int, ...] | None = None,
    ) -> None:
        self.metadata = metadata
        self._spec = spec
        self._chunks = chunks
        self._plane = (0,) * len(metadata.planes) if plane is None else plane

    @property
    def planes(self) -> dict[str, tuple[float, ...]]:
        """Coordinates of the planes beyond ``(y, x, c)`` by dimension (``z`` in mm, ``t`` in
        seconds, or indices where the file does not say); empty for a 2-D slide."""
        return {axis.name: axis.values for axis in self.metadata.planes}

    @property
    def plane(self) -> dict[str, int]:
        """The index, along each plane dimension, of the plane this slide's methods read."""
        return {axis.name: i for axis, i in zip(self.metadata.planes, self._plane, strict=True)}

    def at_plane(self, **indices: int) -> Slide:
        """The same slide reading another plane, e.g. ``slide.at_plane(z=3)``.

        Dimensions not named keep their index. Raises :class:`~wsiarray.OptionError` for a
        dimension the slide does not have, :class:`~wsiarray.LevelError` for an index out of range.
        """
        chosen = self.plane
        for name, index in indices.items():
            if name not in chosen:
                msg = (
                    f"{self.path} has no plane dimension {name!r}; it has {list(chosen) or 'none'}"
                )
                raise OptionError(msg)
            count = len(self.planes[name])
            if not 0 <= index < count:
                msg = f"{name}={index!r} out of range: {self.path} has {count} (0..{count - 1})"
                raise LevelError(msg)
            chosen[name] = index
        return Slide(self._spec, self.metadata, chunks=self._chunks, plane=tuple(chosen.values()))

    @functools.cached_property
    def tree(self) -> xr.DataTree:
        """``/level0`` (full resolution) ... ``/levelN`` and ``/associated/<name>``, lazy.

        Built on first use (importing xarray and dask), so that :meth:`read` alone stays light.
        """
        from wsiarray.tree import build_tree

        return build_tree(self._spec, self.metadata, chunks=self._chunks)

    @property
    def path(self) -> str:
        """Absolute path of the slide file, or its URL (user, password and signed-URL query
        values shown as ``***``)."""
        return redact(self._spec.path)

    @property
    def level_count(self) -> int:
        """Number of pyramid levels in the file."""
        return len(self.metadata.levels)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of level 0 in pixels."""
        return self.metadata.levels[0].shape

    @property
    def level_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(height, width)`` of every level, full resolution first."""
        return self.metadata.level_shapes

    @property
    def level_downsamples(self) -> tuple[tuple[float, float], ...]:
        """``(downsample_y, downsample_x)`` of every level: exact ratios of level 0's size."""
        base_h, base_w = self.shape
        return tuple((base_h / h, base_w / w) for h, w in self.level_shapes)

    @property
    def mm_x(self) -> float | None:
        """Width of a level-0 pixel in millimetres, or ``None`` when the file does not say."""
        return self.metadata.mm_x

    @property
    def mm_y(self) -> float | None:
        """Height of a level-0 pixel in millimetres, or ``None`` when the file does not say."""
        return self.metadata.mm_y

    @property
    def magnification(self) -> float | None:
        """Native (objective) magnification, or ``None``; see ``metadata.magnification_derived``."""
        return self.metadata.magnification

    @property
    def background_pixel(self) -> tuple[int, ...]:
        """The background colour as one value per channel (0 for channels it does not name)."""
        bands = len(self.metadata.channels)
        return tuple((list(self.metadata.background) + [0] * bands)[:bands])

    @property
    def properties(self) -> Mapping[str, str]:
        """All vendor properties, as strings."""
        return self.metadata.properties

    @property
    def icc_profile(self) -> bytes | None:
        """The ICC profile of the pixels served, or ``None`` when the file embeds none.

        That is the file's own profile, or the sRGB profile when opened with ``to_srgb=True``.
        ``PIL.ImageCms.ImageCmsProfile(io.BytesIO(slide.icc_profile))`` reads it.
        """
        return self.metadata.icc_profile

    @property
    def associated(self) -> dict[str, xr.DataArray]:
        """Associated images (label, macro, thumbnail, ...) by name, lazy."""
        if "associated" not in self.tree.children:
            return {}
        return {name: node["image"] for name, node in self.tree["associated"].children.items()}

    def image(
        self,
        level: int | None = None,
        *,
        magnification: float | None = None,
        mpp: float | None = None,
        downsample: float | None = None,
        upsample: bool = False,
        chunks: ChunksLike = None,
        dask: bool = True,
    ) -> xr.DataArray:
        """The lazy ``(y, x, c)`` image of the slide at a resolution: full resolution by default.

        Give the resolution one way at most: a file ``level``, a ``magnification``, a pixel
        size ``mpp`` or a ``downsample``.

        Parameters
        ----------
        level : int, optional
            A level of the file (0 is full resolution), as stored.
        magnification : float, optional
            Objective magnification, e.g. ``10`` for 10x.
        mpp : float, optional
            Pixel size in micrometres (µm per pixel), e.g. ``0.5``.
        downsample : float, optional
            Level-0 pixels per output pixel (``4`` is a quarter of the full resolution).
        upsample : bool
            Allow a resolution finer than level 0 (pixels are replicated).
        chunks : int or (int, int), optional
            Dask chunk side in pixels for this image (default: the slide's, see
            :func:`wsiarray.open`).
        dask : bool
            ``False`` gives xarray's lazily indexed array instead of a dask array: indexing
            stays lazy, and ``.values`` reads just the selection in the calling thread,
            without dask's per-compute overhead (the fastest way to small pieces).

        Returns
        -------
        xarray.DataArray
            The file's level where one matches (within 0.1 %); otherwise the coarsest finer
            level, area-averaged to the exact resolution (block means for integer factors,
            antialiased area weights otherwise; seam-free across dask chunks), in the
            stored dtype (rounded). Coordinates and attrs (``downsample_x/y``,
            ``magnification``, ``mm_x``, ``mm_y``, and ``level`` or ``read_level``)
            describe the result.

        Raises
        ------
        LevelError
            No such file level.
        MissingResolutionError
            ``magnification`` or ``mpp`` on a slide that does not record them.
        ScaleError
            Finer than level 0 without ``upsample=True``.
        """
        plan = self._plan(level, magnification, mpp, downsample, upsample)
        return self._image(plan, chunks=chunks, dask=dask)

    def read(self, left: int, top: int, width: int, height: int, *, level: int = 0) -> np.ndarray:
        """Pixels of a rectangle of a file level as a plain ``(height, width, c)`` numpy array.

        The fastest way to one patch: no xarray, no dask (neither is even imported). The
        rectangle is in pixels of ``level``, clipped to the level.

        Raises
        ------
        LevelError
            No such level.
        RegionError
            The rectangle is empty or outside the level, or an edge or size is not a whole
            number (NaN, infinite, 2.5).
        PixelBudgetError
            The rectangle, clipped, holds more than :data:`wsiarray.geometry.MAX_PIXELS`.
        """
        level_height, level_width = self.level_shapes[self._check_level(level)]
        x, y, w, h = (
            int(geometry.check_number(value, name, error=RegionError, integer=True))
            for value, name in ((left, "left"), (top, "top"), (width, "width"), (height, "height"))
        )
        window = geometry.PixelWindow(y, y + h, x, x + w).clipped(level_height, level_width)
        if window.shape[0] <= 0 or window.shape[1] <= 0:
            msg = (
                f"the rectangle left={left}, top={top}, width={width}, height={height} is empty or "
                f"outside level {level}, which is {level_width} x {level_height} pixels"
            )
            raise RegionError(msg)
        geometry.check_pixels(*window.shape, "the rectangle read")
        with source_cache.use(self._spec) as source:
            return source.read(
                level, slice(window.y0, window.y1), slice(window.x0, window.x1), self._plane
            )

    def region_window(
        self,
        left: float,
        top: float,
        width: float,
        height: float,
        *,
        units: str = "base_pixels",
        level: int | None = None,
        magnification: float | None = None,
        mpp: float | None = None,
        upsample: bool = False,
    ) -> tuple[geometry.ScalePlan, geometry.PixelWindow]:
        """The resolution :meth:`region` reads a rectangle at, and the rectangle's window in
        that resolution's pixels (maybe empty, or reaching outside it); arguments as
        :meth:`region`'s. A caller that reads the window itself (``Slide.read`` when it lies
        inside a file level) gets :meth:`region`'s pixels."""
        plan = self._plan(level, magnification, mpp, None, upsample)
        box = geometry.region_to_base(
            left,
            top,
            width,
            height,
            units,
            base_shape=self.shape,
            mm_x=self.mm_x,
            mm_y=self.mm_y,
            downsample=plan.downsample,
        )
        return plan, geometry.window_at(box, *plan.downsample)

    def region(
        self,
        left: float,
        top: float,
        width: float,
        height: float,
        *,
        units: str = "base_pixels",
        level: int | None = None,
        magnification: float | None = None,
        mpp: float | None = None,
        pad: bool = False,
        upsample: bool = False,
    ) -> xr.DataArray:
        """A rectangle of the slide at any resolution, as a labelled ``(y, x, c)`` DataArray.

        Parameters
        ----------
        left, top, width, height : float
            The rectangle, in ``units``.
        units : str
            ``"base_pixels"`` are level-0 pixels; ``"level_pixels"`` are pixels at the asked
            resolution; ``"fraction"`` is a fraction of the slide's width and height; or a
            length unit: ``"mm"``, ``"um"``, ``"nm"`` ... (:mod:`wsiarray.units`). Aliases:
            ``base``, ``px``, ``pixels``, ``µm``, ``micron`` ...
        level : int, optional
            Output at this file level (default: full resolution).
        magnification : float, optional
            Output magnification, as in :meth:`image`.
        mpp : float, optional
            Output pixel size in micrometres, as in :meth:`image`.
        pad : bool
            Pad the parts outside the slide with the background colour instead of clipping.
        upsample : bool
            Allow an output resolution finer than level 0, as in :meth:`image`.

        Returns
        -------
        xarray.DataArray
            Lazy. Up to 4096 x 4096 output pixels it reads directly (``.values`` decodes
            just the tiles it needs, in the calling thread, without dask); larger regions
            are dask arrays read in parallel. Pixel bounds are floor of the start and
            ceil of the end, so the asked area is always covered.

        Raises
        ------
        RegionError
            The rectangle is empty, entirely outside the slide (without ``pad``), or an edge
            or size is not a finite number.
        ScaleError
            ``magnification`` or ``mpp`` is not a finite positive number, or is finer than
            level 0 without ``upsample``.
        PixelBudgetError
            With ``pad``, the padded rectangle holds more pixels than the slide's level 0 and
            :data:`wsiarray.geometry.MAX_PIXELS`.
        UnitError
            Unknown unit.
        MissingResolutionError
            Physical units or magnification on a slide that does not record them.
        """
        plan, window = self.region_window(
            left,
            top,
            width,
            height,
            units=units,
            level=level,
            magnification=magnification,
            mpp=mpp,
            upsample=upsample,
        )
        if window.shape[0] <= 0 or window.shape[1] <= 0:
            msg = f"the region {width!r} x {height!r} {units} is empty at this resolution"
            raise RegionError(msg)
        inside = window.clipped(*plan.shape)
        if (inside.shape[0] == 0 or inside.shape[1] == 0) and not pad:
            msg = (
                f"the region left={left!r}, top={top!r}, width={width!r}, height={height!r} "
                f"({units}) lies outside the slide, which is {self.shape[1]} x "
                f"{self.shape[0]} base pixels; pass pad=True for background pixels"
            )
            raise RegionError(msg)
        output = window if pad else inside
        # lazy, but its coordinates and graph grow with it: 1e9 x 1e9 padded ran > 30 s
        geometry.check_pixels(*output.shape, "the region", budget=self._lazy_budget)
        direct = window.shape[0] * window.shape[1] <= DIRECT_READ_PIXELS
        image = self._image(plan, dask=not direct)
        result = image.isel(y=slice(inside.y0, inside.y1), x=slice(inside.x0, inside.x1))
        if pad and inside != window:
            result = self._pad(result, window, inside, plan.downsample)
        return result

    def thumbnail_level(self, max_size: int = 512) -> int:
        """The file level :meth:`thumbnail` reads: the smallest with a side of ``max_size``.

        Returns
        -------
        int
            The coarsest level whose longer side is at least ``max_size`` pixels (0 if none).

        Raises
        ------
        OptionError
            ``max_size`` is not a positive whole number.
        """
        geometry.check_number(max_size, "max_size", positive=True, integer=True)
        return next(
            (i for i in reversed(range(self.level_count)) if max(self.level_shapes[i]) >= max_size),
            0,
        )

    def thumbnail(self, max_size: int = 512) -> np.ndarray:
        """Return an RGB(A) thumbnail whose longer side is at most ``max_size`` pixels.

        It is read from the smallest level at least ``max_size`` pixels on its longer side and
        reduced with Pillow's Lanczos filter. A level of more than
        :data:`~wsiarray.chunks.DIRECT_READ_PIXELS` (a slide without a pyramid) is first
        area-averaged to about twice ``max_size``, chunk by chunk with dask, so it is never
        held in memory whole. Its size follows the level's shape either way.

        Raises
        ------
        OptionError
            ``max_size`` is not a positive whole number.
        PixelBudgetError
            The level is read whole (too small to be worth reducing first) and is over the
            pixel budget.
        """
        level = self.thumbnail_level(max_size)
        height, width = self.level_shapes[level]
        factor = max(height, width) // (2 * max_size)
        if height * width > DIRECT_READ_PIXELS and factor > 1:
            # whole, a level holds 3 bytes a pixel (9 GB at 3 Gpx): it was refused over the
            # pixel budget, and under it could take all the memory a worker has
            downsample = factor * max(self.level_downsamples[level])
            pixels = np.asarray(self.image(downsample=downsample).values)
        else:
            geometry.check_pixels(height, width, f"level {level}, the thumbnail's read")
            pixels = np.asarray(self.image(level).values)
        return lanczos_thumbnail(pixels, max_size, shape=(height, width))

    def close(self) -> None:
        """Nothing to release: reading happens through a per-process cache of open files."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _repr_html_(self) -> str:
        """Notebook display: a small preview, the summary and the level table."""
        from wsiarray._display import slide_html

        return slide_html(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (self._spec, self._chunks, self._plane))

    def __repr__(self) -> str:
        meta = self.metadata
        mpp_x, mpp_y = meta.resolution.mpp
        rows = [
            f"<wsiarray.Slide {self.path!r}>",
            f"  format: {meta.format} (reader {meta.reader}), dtype {meta.dtype}, channels {list(meta.channels)}",
            f"  pixel size: {_number(mpp_x)} x {_number(mpp_y)} µm, magnification {meta.magnification}"
            + (" (derived)" if meta.magnification_derived else ""),
        ]
        for i, ((h, w), (dy, dx)) in enumerate(
            zip(self.level_shapes, self.level_downsamples, strict=True)
        ):
            rows.append(f"  level{i}: {w} x {h} px, downsample {dx:.4g} x {dy:.4g}")
        if meta.planes:
            rows.append(
                "  planes: "
                + ", ".join(f"{a.name} {len(a.values)} ({a.units})" for a in meta.planes)
                + f"; reading {self.plane}"
            )
        if meta.associated:
            rows.append("  associated: " + ", ".join(a.name for a in meta.associated))
        return "\n".join(rows)

    # -- planning ------------------------------------------------------------------------------

    def _plan(
        self,
        level: int | None,
        magnification: float | None,
        mpp: float | None,
        downsample: float | None,
        upsample: bool,
    ) -> geometry.ScalePlan:
        """How to make the image at the asked resolution (one way of asking at most)."""
        level_downsample = None
        if level is not None:
            level_downsample = self.level_downsamples[self._check_level(level)][1]
        # called with level= too: it refuses a second way of asking (level= with mpp=, say)
        wanted = geometry.target_downsample(
            level_downsample=level_downsample,
            magnification=magnification,
            mpp=mpp,
            downsample=downsample,
            resolution=self.metadata.resolution,
        )
        if level is not None:  # that level as stored, even where another has the same size
            return geometry.ScalePlan.of_level(self.level_shapes, level)
        if wanted < 1 - 1e-9 and not upsample:
            msg = (
                f"that resolution is {1 / wanted:.3g} times finer than the slide's full "
                "resolution; pass upsample=True (--upsample) to replicate pixels"
            )
            raise ScaleError(msg)
        plan = geometry.plan_scale(self.level_shapes, wanted)
        # only an upsampled image outgrows level 0; its coordinates alone are 8 bytes a row
        geometry.check_pixels(*plan.shape, "the image at that resolution", budget=self._lazy_budget)
        return plan

    @property
    def _lazy_budget(self) -> int:
        """Pixels a lazy image may hold: as many as level 0 (each file level is one), or
        :data:`wsiarray.geometry.MAX_LAZY_PIXELS` when that is larger. Not the in-memory
        budget: a 512^2 region upsampled 2x from a 1.5 Gpx slide (6 Gpx at that scale) was
        refused by it, though it reads 512^2 pixels."""
        return max(self.shape[0] * self.shape[1], geometry.MAX_LAZY_PIXELS)

    def _image(
        self, plan: geometry.ScalePlan, *, chunks: ChunksLike = None, dask: bool = True
    ) -> xr.DataArray:
        """The (cached) lazy image of a plan: building one costs more than a patch read."""
        chunks = self._chunks if chunks is None else chunks
        if chunks is None and dask:  # the default follows the scheduler (a client may start)
            chunks = default_chunk()
        key = (plan, chunks, dask)
        cache: dict[tuple[Any, ...], xr.DataArray] = self.__dict__.setdefault("_images", {})
        if key not in cache:
            from wsiarray.tree import image_at

            cache[key] = image_at(
                self._spec, self.metadata, plan, chunks=chunks, dask=dask, plane=self._plane
            )
        return cache[key]

    def _pad(
        self,
        image: xr.DataArray,
        window: geometry.PixelWindow,
        inside: geometry.PixelWindow,
        downsample: tuple[float, float],
    ) -> xr.DataArray:
        """Pad with the background colour out to ``window``, extending the coordinates."""
        import xarray as xr

        from wsiarray.arrays import pad_background
        from wsiarray.tree import image_coords

        data = image.data
        widths = (
            (inside.y0 - window.y0, window.y1 - inside.y1),
            (inside.x0 - window.x0, window.x1 - inside.x1),
        )
        if inside.shape[0] == 0 or inside.shape[1] == 0:  # wholly outside: only background
            data, widths = data[:0, :0], ((0, window.shape[0]), (0, window.shape[1]))
        return xr.DataArray(
            pad_background(data, widths, self.background_pixel),
            dims=("y", "x", "c"),
            coords=image_coords(
                self.metadata, downsample, (window.y0, window.y1), (window.x0, window.x1)
            ),
            name=image.name,
            attrs=image.attrs,
        )

    def _check_level(self, level: int) -> int:
        try:
            operator.index(level)
        except TypeError:
            msg = f"level must be an integer, not {type(level).__name__} ({level!r})"
            raise TypeError(msg) from None
        if not 0 <= level < self.level_count:
            msg = (
                f"level={level!r} out of range: {self.path} has {self.level_count} level(s) "
                f"(0..{self.level_count - 1})"
            )
            raise LevelError(msg)
        return level


def _reopen(spec: SourceSpec, chunks: ChunksLike, plane: tuple[int, ...]) -> Slide:
    """Rebuild a pickled :class:`Slide` from its spec (reopening the file in this process)."""
    with source_cache.use(spec) as source:
        return Slide(spec, source.metadata, chunks=chunks, plane=plane)


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:.4g}"
