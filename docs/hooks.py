"""mkdocs hooks: render the docstrings' doctest examples as code.

The docstrings write examples as bare doctest lines (``>>> l1.get("user:1")`` and the output
under it), as ``help()`` and the doctest module read them. Markdown would read ``>>>`` as
three nested quotes and an output such as ``[0.1, 0.2]`` as a link, so each run of doctest
lines (up to a blank line) becomes a fenced ``pycon`` block before anything else parses it.
"""

from __future__ import annotations

from typing import Any

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority


class DoctestBlocks(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        fenced = False  # inside a fence already (a ``` block): leave it alone
        index = 0
        while index < len(lines):
            line = lines[index]
            if line.lstrip().startswith("```"):
                fenced = not fenced
            if fenced or not line.lstrip().startswith(">>> "):
                out.append(line)
                index += 1
                continue
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}```pycon")
            while index < len(lines) and lines[index].strip():
                out.append(lines[index])
                index += 1
            out.append(f"{indent}```")
        return out


class DoctestExtension(Extension):
    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 (Markdown's API name)
        # Before pymdownx.snippets (32) and the fences (25): they must see the new fences.
        md.preprocessors.register(DoctestBlocks(md), "doctest_blocks", 40)


@event_priority(100)  # before mkdocstrings copies the extensions for the docstrings
def on_config(config: Any) -> Any:
    config.markdown_extensions.append(DoctestExtension())
    return config
