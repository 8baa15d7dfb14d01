"""Guide: Integration Patterns / Async File I/O (and Best Practice #7).

`read_text` / `write_text` read and write without blocking the event loop (aiofiles
when installed, else a worker thread); many files go through ``map_concurrent`` with
a bound, so a thousand files don't open a thousand handles at once.
``python -m examples.guide.file_io``
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, map_concurrent
from act_operator_lib.resources import read_text, write_text


class State(TypedDict, total=False):
    input_files: list[str]
    output_dir: str
    outputs: list[dict[str, Any]]


class UppercaseFiles(AsyncBaseNode):
    async def execute(self, state: State) -> dict[str, Any]:
        outputs = await map_concurrent(
            lambda path: self.process(Path(path), Path(state["output_dir"])),
            state["input_files"],
            limit=4,
        )
        return {"outputs": outputs}

    async def process(self, source: Path, output_dir: Path) -> dict[str, Any]:
        content = await read_text(source)
        target = output_dir / source.name
        await write_text(target, content.upper())
        return {"file": target.name, "length": len(content)}


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("uppercase", UppercaseFiles())
    builder.add_edge(START, "uppercase")
    return builder.compile()


async def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        inputs, outputs = Path(directory, "in"), Path(directory, "out")
        await asyncio.to_thread(inputs.mkdir)
        await asyncio.to_thread(outputs.mkdir)
        files = [inputs / f"note{number}.txt" for number in range(3)]
        for number, path in enumerate(files):
            await write_text(path, f"note {number}: async files\n")
        result = await build_graph().ainvoke(
            {"input_files": [str(path) for path in files], "output_dir": str(outputs)}
        )
        first = await read_text(outputs / "note0.txt")
    print("wrote:", result["outputs"])
    print("note0.txt now reads:", first.strip())
    return {"outputs": result["outputs"], "first": first}


if __name__ == "__main__":
    asyncio.run(main())
