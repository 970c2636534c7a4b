"""The documentation runs: every code example in docs/**/*.md (and README.md) is executed.

For each page, its fenced ``python`` blocks run in order in one namespace (so a page can build
on its first block), with a fresh temporary directory as the working directory. Pages whose
examples name ``CMU-1-Small-Region.svs`` find that real slide there (linked from the shared
test data; the page is skipped where the data is absent). In the ``bash`` blocks of docs/
pages, the commands that start with ``wsiarray`` run through the command line's ``main`` in
this process and must exit with 0; other shell lines (``make ...``) are not run.

A block that cannot run here (one that needs a real cluster, say) is marked by an HTML comment
on the line just before its opening fence, which the rendered site does not show::

    <!-- docs-test: skip (the reason) -->

Keep such blocks very few; ``test_few_blocks_are_skipped`` counts them.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
SKIP = "<!-- docs-test: skip"
REAL_SLIDE = "CMU-1-Small-Region.svs"
MAX_SKIPPED = 3

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    lang: str
    code: str
    line: int  # line of the first line of code, 1-based
    skipped: bool


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        found.append(
            Block(
                lang=match["lang"].lower(),
                code=textwrap.dedent(match["code"]),
                line=text.count("\n", 0, match.start("code")) + 1,
                skipped=before.strip().startswith(SKIP),
            )
        )
    return found


def runnable(page: Path, block: Block) -> bool:
    """Python blocks, and shell blocks with ``wsiarray`` commands under docs/ (README's are
    examples with placeholder file names)."""
    if block.skipped:
        return False
    if block.lang in {"python", "py"}:
        return True
    shell = block.lang in {"bash", "sh", "shell", "console"}
    return shell and page.is_relative_to(DOCS) and bool(commands(block))


def commands(block: Block) -> list[tuple[int, str]]:
    """``(line, command)`` of the ``wsiarray ...`` commands of a shell block."""
    found = []
    lines = iter(enumerate(block.code.splitlines()))
    for offset, raw in lines:
        line = raw.split(" #", 1)[0].strip().removeprefix("$ ")
        while line.endswith("\\"):  # continued on the next line
            line = line[:-1] + next(lines, (0, ""))[1].split(" #", 1)[0].strip()
        if line.startswith("wsiarray ") or line == "wsiarray":
            found.append((block.line + offset, line))
    return found


def _page_id(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


RUNNABLE_PAGES = [page for page in PAGES if any(runnable(page, b) for b in blocks(page))]


# a LocalCluster's scheduler serves HTTP on 8787 even without a dashboard, and says so when
# another process (a concurrent test run) holds that port
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")
@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=_page_id)
def test_page_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_slide) -> None:
    from wsiarray.cli import main

    monkeypatch.chdir(tmp_path)
    code_blocks = [block for block in blocks(page) if runnable(page, block)]
    if any(REAL_SLIDE in block.code for block in code_blocks):
        (tmp_path / REAL_SLIDE).symlink_to(real_slide(f"aperio/{REAL_SLIDE}"))
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in code_blocks:
        if block.lang in {"python", "py"}:
            # padded so that tracebacks point at the page's own line numbers
            code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
            exec(code, namespace)  # noqa: S102 - running the docs is the point
            continue
        for line, command in commands(block):
            status = main(shlex.split(command)[1:])
            assert status == 0, f"{_page_id(page)}:{line}: `{command}` exited with {status}"


def test_few_blocks_are_skipped() -> None:
    skipped = [
        f"{_page_id(page)}:{block.line}"
        for page in PAGES
        for block in blocks(page)
        if block.skipped
    ]
    assert len(skipped) <= MAX_SKIPPED, f"too many doc blocks are skipped: {skipped}"
