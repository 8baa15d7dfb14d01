"""Run the ```python blocks of one Markdown page as a reader would, in order.

``python -W error tests/_doc_runner.py PAGE`` (cwd: the repo root) runs every block
of PAGE in one namespace; top-level ``await`` is allowed, and every block runs on one
event loop kept for the whole page, closed (async generators shut down, so pooled
resources close) at the end. A block preceded by ``<!-- fragment: reason -->`` is
only compiled. Tracebacks point at the page's own lines. Exit status 0 when every
block ran and nothing leaked (an unretrieved task exception, a pending task destroyed,
an unraisable exception such as an unclosed resource).

``extract_blocks`` is also imported by tests/test_docs.py.
"""

from __future__ import annotations

import ast
import asyncio
import gc
import inspect
import linecache
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)")
FRAGMENT = re.compile(r"^\s*<!--\s*fragment\s*(?::\s*(?P<reason>.*?))?\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced ```python block: where it starts (1-based) and its source."""

    line: int  # the line of the opening fence
    source: str
    fragment: bool
    fragment_reason: str | None


class PageError(Exception):
    """The page itself is malformed (a fragment marker without a reason, an open fence)."""


def extract_blocks(
    text: str, languages: frozenset[str] = frozenset({"python", "py"})
) -> list[Block]:
    """Every ```python block of ``text`` (or of ``languages``), with its fragment marker."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence, indent, info = match["fence"], len(match["indent"]), match["info"].lower()
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].lstrip().startswith(fence):
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        if index == len(lines):
            raise PageError(f"line {start + 1}: the code fence is never closed")
        index += 1
        if info not in languages:
            continue
        marker = _previous_nonblank(lines, start)
        fragment = FRAGMENT.match(marker) if marker is not None else None
        reason = None
        if fragment is not None:
            reason = (fragment["reason"] or "").strip()
            if not reason:
                raise PageError(
                    f"line {start + 1}: a fragment marker needs a reason, "
                    "as in <!-- fragment: needs an API key -->"
                )
        blocks.append(Block(start + 1, "\n".join(body) + "\n", fragment is not None, reason))
    return blocks


def _previous_nonblank(lines: list[str], index: int) -> str | None:
    for line in reversed(lines[:index]):
        if line.strip():
            return line
    return None


def compile_block(page: str, block: Block) -> Any:
    """Compile a block so that its line numbers are the page's own."""
    padded = "\n" * block.line + block.source
    linecache.cache[page] = (len(padded), None, padded.splitlines(keepends=True), page)
    return compile(padded, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


def run_page(page: str) -> int:
    """Run the page's blocks; print what failed and return the exit status."""
    try:
        blocks = extract_blocks(Path(page).read_text(encoding="utf-8"))
    except PageError as error:
        print(f"{page}: {error}", file=sys.stderr)
        return 1
    leaks: list[str] = []

    def on_unraisable(unraisable: Any) -> None:
        leaks.append(f"{unraisable.err_msg or 'unraisable'}: {unraisable.exc_value!r}")

    def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        leaks.append(f"{context.get('message')}: {context.get('exception')!r}")

    sys.unraisablehook = on_unraisable
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": page}
    runner = asyncio.Runner()
    runner.get_loop().set_exception_handler(on_loop_error)
    try:
        for block in blocks:
            try:
                code = compile_block(page, block)
                if block.fragment:
                    continue
                result = eval(code, namespace)
                if inspect.iscoroutine(result):
                    runner.run(result)
            except BaseException:
                print(f"{page}: the block at line {block.line} failed:", file=sys.stderr)
                traceback.print_exc()
                return 1
    finally:
        runner.close()
        namespace.clear()
        gc.collect()
    if leaks:
        print(f"{page}: the page's blocks leaked:", *leaks, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path[0] = str(Path.cwd())  # as `python -c`: the project's packages import
    sys.exit(run_page(sys.argv[1]))
