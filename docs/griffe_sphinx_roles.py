"""Griffe extension for the docs build: the Sphinx-isms of wsiarray's docstrings, in Markdown.

wsiarray's docstrings are numpy style, written for Sphinx as much as for ``help()``. Once
the package is loaded, this rewrites in every docstring:

- roles (``:func:`wsiarray.open```, ``:meth:`read```, ``:class:`~wsiarray.tiling.Tile```)
  into *optional* autorefs links: a link where the target is rendered on the site, plain
  code otherwise (other libraries' objects, private helpers), so that a role never breaks
  the strict build. Names resolve in the scope of the docstring's object, as in Python
  (``read`` inside ``Slide`` is ``wsiarray.slide.Slide.read``);
- the ``::`` that introduces a literal block (the indented block after it is already code
  in Markdown): ``text::`` becomes ``text:`` and a lone ``::`` goes;
- numpy's value sets in parameter types (``units : {"mm", "um"}``) into ``Literal[...]``,
  which griffe renders as such (it would otherwise show a tuple) and whose default then
  comes from the signature;
- parameters documented together (``level, magnification, mm``) into one entry each with
  the shared description: griffe would give them all the first one's type and default.

Loaded by ``mkdocs.yml``; not part of the package.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`(?P<text>[^`]+)`")
LITERAL_BLOCK = re.compile(r"^(?P<text>.*?)(?P<space> ?)::$", re.MULTILINE)
CHOICES = re.compile(r"^(?P<head>[ \t]*[\w*][\w*, ]* : )\{(?P<values>[^}]*)\}", re.MULTILINE)
DASHES = re.compile(r"^[ \t]*-{3,}[ \t]*$")
GROUPED = re.compile(r"^(?P<indent>[ \t]*)(?P<names>\*{0,2}\w+(?:, \*{0,2}\w+)+)(?P<type> : .*)?$")
ABSOLUTE = {"wsiarray", "xarray", "numpy", "dask", "zarr", "pathlib", "os", "PIL", "imagecodecs"}


def _target(obj: griffe.Object, name: str) -> str:
    """The full path of ``name`` (possibly dotted) as seen from ``obj``; unchanged if unknown."""
    head, _, rest = name.partition(".")
    if head in ABSOLUTE:
        return name
    try:
        resolved = obj.resolve(head)
    except griffe.NameResolutionError:
        return name
    return f"{resolved}.{rest}" if rest else resolved


def _role(obj: griffe.Object, match: re.Match[str]) -> str:
    name = match["text"].strip()
    short = name.startswith("~")
    name = name.lstrip("~!")
    shown = name.rsplit(".", 1)[-1] if short else name
    target = html.escape(_target(obj, name), quote=True)
    return f'<autoref identifier="{target}" optional><code>{html.escape(shown)}</code></autoref>'


def _literal_block(match: re.Match[str]) -> str:
    text = match["text"]
    if not text.strip():  # a lone "::"
        return ""
    return text if match["space"] else f"{text}:"  # "text ::" -> "text", "text::" -> "text:"


def _split_grouped_parameters(text: str) -> str:
    """``a, b : T`` plus its description becomes ``a : T`` and ``b : T``, each described."""
    lines = text.split("\n")
    out: list[str] = []
    section, base = "", None
    i = 0
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and DASHES.match(lines[i + 1]) and line.strip():
            section, base = line.strip().lower(), len(line) - len(line.lstrip())
            out += [line, lines[i + 1]]
            i += 2
            continue
        grouped = GROUPED.match(line)
        in_parameters = section in {"parameters", "other parameters"}
        if in_parameters and grouped and len(grouped["indent"]) == base:
            body = []
            i += 1
            while i < len(lines) and (
                not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > base
            ):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():  # keep blank lines between entries
                body.pop()
                i -= 1
            for name in grouped["names"].split(", "):
                out += [f"{grouped['indent']}{name}{grouped['type'] or ''}", *body]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def rewrite(obj: griffe.Object, text: str) -> str:
    """The docstring ``text`` of ``obj`` with Sphinx roles, ``::``, value sets and grouped
    parameters rewritten."""
    text = ROLE.sub(lambda match: _role(obj, match), text)
    text = LITERAL_BLOCK.sub(_literal_block, text)
    text = CHOICES.sub(lambda match: f"{match['head']}Literal[{match['values']}]", text)
    return _split_grouped_parameters(text)


class SphinxRoles(griffe.Extension):
    """Rewrite the docstrings of every loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the docstrings of the package, its modules and their members."""
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj, obj.docstring.value)
            stack.extend(member for member in obj.members.values() if not member.is_alias)
