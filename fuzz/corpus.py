"""The fuzzer's input slides: the real ones of ``../shared/testdata`` and small synthetic ones.

Synthetic slides are written once per machine into a cache folder (deterministic content, so a
mutant id replays to the same bytes); nothing is written into the repository.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("WSIARRAY_TEST_DATA", REPO.parent / "shared" / "testdata")).resolve()
#: Bump when a synthetic slide's recipe changes (their bytes are part of every mutant id).
CORPUS_VERSION = 1


@dataclass(frozen=True)
class Entry:
    """One input slide.

    ``path`` is what ``wa.open`` gets (a file, or a DICOM series' folder); ``members`` are the
    files a mutation may touch (one file, or the instances of a DICOM folder).
    """

    name: str
    format: str  # svs, svs-j2k, ndpi, ome-tiff, qptiff, dicom, png, synthetic-svs, ...
    container: str  # tiff, dicom or png: which mutators apply
    path: Path
    members: tuple[str, ...] = ()
    quick: bool = True  # in the quick pass (small, fast to read)
    notes: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()


def cache_dir() -> Path:
    root = Path(
        os.environ.get("WSIARRAY_FUZZ_CACHE", Path(tempfile.gettempdir()) / "wsiarray-fuzz")
    )
    path = root / f"corpus-v{CORPUS_VERSION}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _real(relative: str, name: str, fmt: str, container: str, *, quick: bool) -> Entry | None:
    path = TESTDATA / relative
    if not path.exists():
        return None
    if path.is_dir():
        members = tuple(
            sorted(p.name for p in path.iterdir() if p.is_file() and p.name != "readme.txt")
        )
    else:
        members = (path.name,)
    return Entry(name, fmt, container, path, members, quick=quick, notes=relative)


def _bpaec_small() -> Entry | None:
    """BPAEC's five smallest levels and its label, linked into a folder: the same DICOM
    series structure at a fraction of the open and read time (for the quick pass)."""
    source = TESTDATA / "dicom" / "BPAEC"
    if not source.exists():
        return None
    folder = cache_dir() / "bpaec-small"
    keep = ("8_0", "9_0", "10_0", "11_0", "12_0", "2")
    folder.mkdir(exist_ok=True)
    for name in keep:
        link = folder / name
        if not link.exists():
            link.symlink_to(source / name)
    return Entry(
        "dicom-bpaec-small",
        "dicom",
        "dicom",
        folder,
        keep,
        quick=True,
        notes="dicom/BPAEC levels 8_0..12_0 + label 2 (symlinks)",
    )


def _synthetic_svs(name: str, **kwargs: object) -> Path:
    from wsiarray.synthetic import write_aperio_svs

    path = cache_dir() / f"{name}.svs"
    if not path.exists():
        write_aperio_svs(path, **kwargs)  # type: ignore[arg-type]
    return path


def _synthetic_ome() -> Path:
    """A 3-level OME-TIFF pyramid in SubIFDs, deflate, 128-px tiles, RGB, little-endian."""
    import numpy as np
    import tifffile

    path = cache_dir() / "synthetic-ome.ome.tif"
    if path.exists():
        return path
    y, x = np.mgrid[0:600, 0:800]
    base = np.stack([(x * 3) % 256, (y * 5) % 256, ((x + y) * 7) % 256], -1).astype(np.uint8)
    part = path.with_suffix(".part")
    with tifffile.TiffWriter(part, ome=True) as tif:
        options = {"tile": (128, 128), "compression": "zlib", "photometric": "rgb"}
        tif.write(
            base,
            subifds=2,
            metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
            **options,
        )
        for factor in (2, 4):
            tif.write(base[::factor, ::factor], subfiletype=1, **options)
    part.replace(path)
    return path


def _synthetic_png() -> Path:
    import numpy as np
    from PIL import Image

    path = cache_dir() / "synthetic.png"
    if not path.exists():
        y, x = np.mgrid[0:300, 0:400]
        pixels = np.stack([(x * 3) % 256, (y * 5) % 256, ((x + y) * 7) % 256], -1)
        Image.fromarray(pixels.astype(np.uint8)).save(path.with_suffix(".part.png"))
        path.with_suffix(".part.png").replace(path)
    return path


def build() -> list[Entry]:
    """Every input slide present on this machine (real slides that are absent are left out)."""
    entries: list[Entry | None] = [
        _real("aperio/CMU-1-Small-Region.svs", "svs-cmu1", "svs", "tiff", quick=False),
        _real("aperio/tcga-cr-7395-01a-01-ts1.svs", "svs-j2k-tcga", "svs-j2k", "tiff", quick=False),
        _real("hamamatsu/test3-DAPI-2-(387).ndpi", "ndpi-dapi", "ndpi", "tiff", quick=True),
        _real("hamamatsu/test3-TRITC 2 (560).ndpi", "ndpi-tritc", "ndpi", "tiff", quick=False),
        _real("ome-tiff/OS-2-ndpi.ome.tif", "ome-os2", "ome-tiff", "tiff", quick=True),
        _real("ome-tiff/test_pyramid.ome.tif", "ome-pyramid", "ome-tiff", "tiff", quick=True),
        _real("qptiff/small_vectra.qptiff", "qptiff-vectra", "qptiff", "tiff", quick=True),
        _real("dicom/BPAEC", "dicom-bpaec", "dicom", "dicom", quick=False),
        _bpaec_small(),
        _real(
            "dicom/multiframe_camelyon_challenge_image.dcm",
            "dicom-camelyon",
            "dicom",
            "dicom",
            quick=True,
        ),
    ]
    entries += [
        Entry(
            "synthetic-svs-jpeg",
            "svs",
            "tiff",
            _synthetic_svs("synthetic-jpeg", size=(720, 960), downsamples=(1, 2, 4), seed=1),
            ("synthetic-jpeg.svs",),
            notes="write_aperio_svs 960x720, JPEG, levels 1/2/4",
        ),
        Entry(
            "synthetic-svs-lzw",
            "svs",
            "tiff",
            _synthetic_svs(
                "synthetic-lzw",
                size=(512, 768),
                tile=256,
                downsamples=(1, 2),
                compression="lzw",
                associated=False,
                seed=2,
            ),
            ("synthetic-lzw.svs",),
            notes="write_aperio_svs 768x512, LZW, 256-px tiles",
        ),
        Entry(
            "synthetic-svs-j2k",
            "svs-j2k",
            "tiff",
            _synthetic_svs(
                "synthetic-j2k",
                size=(480, 480),
                downsamples=(1, 2),
                compression="jpeg2000",
                associated=False,
                seed=3,
            ),
            ("synthetic-j2k.svs",),
            notes="write_aperio_svs 480x480, JPEG 2000",
        ),
        Entry(
            "synthetic-ome",
            "ome-tiff",
            "tiff",
            _synthetic_ome(),
            ("synthetic-ome.ome.tif",),
            notes="tifffile OME-TIFF 800x600 RGB deflate, SubIFD pyramid 1/2/4",
        ),
        Entry(
            "synthetic-png",
            "png",
            "png",
            _synthetic_png(),
            ("synthetic.png",),
            notes="Pillow PNG 400x300 RGB",
        ),
    ]
    if not TESTDATA.exists():
        print(
            f"fuzz: no real slides: {TESTDATA} does not exist (set WSIARRAY_TEST_DATA)",
            file=sys.stderr,
        )
    return [e for e in entries if e is not None]


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for file in sorted(path.iterdir()) if path.is_dir() else [path]:
        if file.is_file():
            h.update(file.name.encode())
            h.update(file.read_bytes())
    return h.hexdigest()[:16]
