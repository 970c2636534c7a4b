"""The reader registry: built-in readers first, third-party readers from entry points."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import wsiarray as wa


class _CountingEntryPoints:
    """Stands in for importlib.metadata.entry_points: one third-party reader, calls counted."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *, group: str) -> list[importlib.metadata.EntryPoint]:
        self.calls += 1
        assert group == "wsiarray.readers"
        return [
            importlib.metadata.EntryPoint(
                "tifffile", "elsewhere:Shadow", group
            ),  # a built-in name: never replaces the built-in
            importlib.metadata.EntryPoint("plugin-pil", "wsiarray.sources.pil_:PilSource", group),
        ]


def test_third_party_readers_come_after_built_ins_and_are_scanned_only_when_needed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, real_slide
) -> None:
    from wsiarray.sources import BUILTIN_READERS, available_readers, open_source

    fake = _CountingEntryPoints()
    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    assert list(available_readers()) == [*BUILTIN_READERS, "plugin-pil"]
    assert available_readers()["tifffile"] == BUILTIN_READERS["tifffile"]
    fake.calls = 0
    open_source(real_slide("aperio/CMU-1-Small-Region.svs"))  # a built-in reads it
    assert fake.calls == 0
    png = tmp_path / "plain.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    assert open_source(png, reader="plugin-pil").name == "pil"  # found through the entry point
    assert fake.calls == 1
    text = tmp_path / "notes.svs"
    text.write_text("not a slide")
    fake.calls = 0
    with pytest.raises(wa.UnsupportedFormatError, match="plugin-pil: does not recognise"):
        open_source(text)  # every reader tried: the built-ins, then the third-party one
    assert fake.calls == 1  # scanned once, not once per third-party reader
