"""Built-in sample data: a realistic synthetic Aperio slide, written once to a user cache."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "sample_slide"]

#: Bump when the sample's content or layout changes, so stale caches are not reused.
SAMPLE_VERSION = 1


def cache_dir() -> Path:
    """The directory wsiarray writes generated data to.

    ``$WSIARRAY_CACHE`` if set, else the platform's user cache directory (for example
    ``~/.cache/wsiarray`` on Linux). Never the current directory or next to user data.
    """
    env = os.environ.get("WSIARRAY_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("wsiarray"))


def sample_slide() -> Path:
    """Return the path of the built-in sample slide, writing it on first use.

    An Aperio-style SVS of 6000 x 4000 px at 20x (0.499 µm/px) with H&E-like content,
    240-px JPEG tiles (YCbCr 4:2:0) sharing one JPEGTables tag, levels at downsample 1, 4
    and 16, and label, macro and thumbnail images. OpenSlide recognises it as ``aperio``.

    Returns
    -------
    pathlib.Path
    """
    path = cache_dir() / f"sample-aperio-v{SAMPLE_VERSION}.svs"
    if not path.exists():
        from wsiarray.synthetic import write_aperio_svs

        path.parent.mkdir(parents=True, exist_ok=True)
        write_aperio_svs(path, size=(4000, 6000), tile=240, downsamples=(1, 4, 16))
    return path
