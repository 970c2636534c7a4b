"""How a slide presents itself to people: the summary and level table shared by the
command line (``wsiarray info``) and the notebook display (``Slide._repr_html_``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from wsiarray.errors import WsiArrayError

if TYPE_CHECKING:
    from wsiarray.slide import Slide

__all__ = [
    "LEVEL_COLUMNS",
    "PREVIEW_MAX_PIXELS",
    "level_rows",
    "slide_html",
    "summary_rows",
    "text_table",
]

LEVEL_COLUMNS = ("level", "width", "height", "downsample", "mag", "µm/px", "tile")
#: The notebook preview decodes a file level only up to this many pixels (else the
#: associated thumbnail, else no picture), so that displaying a slide stays fast.
PREVIEW_MAX_PIXELS = 4096 * 4096
PREVIEW_SIZE = 256


def summary_rows(slide: Slide) -> list[tuple[str, str]]:
    """``(label, value)`` rows describing a slide: format, size, pixel size, magnification ..."""
    meta = slide.metadata
    height, width = slide.shape
    size = f"{width} x {height} px"
    if meta.mm_x and meta.mm_y:
        size += f" ({width * meta.mm_x:.3f} x {height * meta.mm_y:.3f} mm)"
    magnification = "unknown"
    if meta.magnification:
        magnification = f"{meta.magnification:.4g}x"
        if meta.magnification_derived:
            magnification += " (derived from the pixel size: 10x = 1 µm/px)"
    pixel = "unknown"
    mpp_x, mpp_y = meta.resolution.mpp
    if mpp_x and mpp_y:
        pixel = f"{mpp_x:.4g} x {mpp_y:.4g} µm"
    associated = ", ".join(f"{a.name} {a.shape[1]}x{a.shape[0]}" for a in meta.associated)
    return [
        ("file", slide.path),
        ("format", f"{meta.format} (read with {meta.reader})"),
        ("size", size),
        ("pixel size", pixel),
        ("magnification", magnification),
        ("channels", f"{', '.join(meta.channels)} ({meta.dtype})"),
        ("levels", str(slide.level_count)),
        ("associated", associated or "none"),
    ]


def level_rows(slide: Slide) -> list[tuple[str, ...]]:
    """One row of :data:`LEVEL_COLUMNS` per file level, full resolution first."""
    meta = slide.metadata
    rows = []
    for i, ((height, width), (ds_y, ds_x)) in enumerate(
        zip(slide.level_shapes, slide.level_downsamples, strict=True)
    ):
        info, level = meta.levels[i], meta.resolution.at(ds_y, ds_x)
        rows.append(
            (
                str(i),
                str(width),
                str(height),
                f"{ds_x:.6g}",
                f"{level.magnification:.3g}" if level.magnification else "-",
                f"{level.mpp[0]:.4g}" if level.mpp[0] else "-",
                f"{info.tile[1]}x{info.tile[0]}",
            )
        )
    return rows


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Right-aligned plain-text table."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]
    )


def _preview(slide: Slide) -> np.ndarray | None:
    """A small picture: the smallest level if cheap to decode, else the vendor thumbnail."""
    height, width = slide.level_shapes[slide.thumbnail_level(PREVIEW_SIZE)]
    if height * width <= PREVIEW_MAX_PIXELS:
        return slide.thumbnail(PREVIEW_SIZE)
    names = {a.name for a in slide.metadata.associated}
    if "thumbnail" in names:
        return np.asarray(slide.associated["thumbnail"].values)
    return None


def _png_base64(pixels: np.ndarray) -> str:
    import base64
    import io

    from PIL import Image

    if pixels.dtype != np.uint8 or pixels.shape[-1] not in (1, 3, 4):
        pixels = pixels[..., :3] if pixels.shape[-1] > 3 else pixels[..., :1]
        low, high = float(pixels.min()), float(pixels.max())
        pixels = ((pixels - low) * (255 / max(high - low, 1e-9))).astype(np.uint8)
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def slide_html(slide: Slide) -> str:
    """The notebook display of a slide: preview picture, summary and level table.

    Never raises for a damaged slide: a preview that cannot be decoded is replaced by the
    error's message.
    """
    import html  # here, as PIL: ``wsiarray info`` prints the text table only

    esc = html.escape
    try:
        pixels = _preview(slide)
        picture = (
            f'<img src="data:image/png;base64,{_png_base64(pixels)}" alt="preview" '
            'style="max-width:256px;max-height:256px">'
            if pixels is not None
            else "<em>no level small enough for a quick preview</em>"
        )
    except Exception as exc:  # noqa: BLE001 - a display must not raise: say what went wrong
        reason = str(exc) if isinstance(exc, WsiArrayError) else f"{type(exc).__name__}: {exc}"
        picture = f"<em>preview unavailable: {esc(reason)}</em>"
    summary = "".join(
        f'<tr><th style="text-align:left">{esc(k)}</th><td style="text-align:left">{esc(v)}</td></tr>'
        for k, v in summary_rows(slide)
    )
    head = "".join(f"<th>{esc(c)}</th>" for c in LEVEL_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in level_rows(slide)
    )
    return (
        '<div class="wsiarray-slide" style="display:flex;gap:1em;align-items:flex-start">'
        f"<div>{picture}</div><div><strong>wsiarray.Slide</strong>"
        f"<table>{summary}</table><table><tr>{head}</tr>{body}</table></div></div>"
    )
