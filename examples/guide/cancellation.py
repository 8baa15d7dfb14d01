"""Guide: Error Handling / Cancellation.

A run is cancelled from outside: here the caller stops reading the stream after three
progress reports, as a client that disconnects would. The node's ``except
CancelledError`` cleanup runs and is awaited, then the cancellation propagates.
The state is a dataclass, so fields are attributes (``state.items``, not ``state.get``);
and it is a snapshot, so a "cancel requested" flag in it could never change mid-run.
``python -m examples.guide.cancellation``
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode

CLEANED_UP: list[int] = []


@dataclass(kw_only=True)
class Job:
    items: int
    processed: list[int] = field(default_factory=list)


class LongJob(AsyncBaseNode):
    async def execute(self, state: Job) -> dict[str, Any]:
        processed: list[int] = []
        try:
            for item in range(state.items):
                await asyncio.sleep(0.01)  # a cancellation lands at an await like this one
                processed.append(item)
                self.emit({"processed": item})
        except asyncio.CancelledError:
            await self.cleanup(processed)
            raise  # never swallow it: the caller is waiting for the run to stop
        return {"processed": processed}

    async def cleanup(self, processed: list[int]) -> None:
        await asyncio.sleep(0.01)  # e.g. release a lock, roll back a transaction
        CLEANED_UP.extend(processed)


def build_graph() -> Any:
    builder = StateGraph(Job)
    builder.add_node("long_job", LongJob())
    builder.add_edge(START, "long_job")
    return builder.compile()


async def main() -> dict[str, Any]:
    CLEANED_UP.clear()
    progress: list[Any] = []
    async with aclosing(build_graph().astream(Job(items=100), stream_mode="custom")) as stream:
        async for report in stream:
            progress.append(report)
            if len(progress) == 3:
                break  # leaving the block cancels the run and waits for its cleanup
    print("progress before cancelling:", progress)
    print("cleanup saw items:", CLEANED_UP)
    return {"progress": progress, "cleaned_up": list(CLEANED_UP)}


if __name__ == "__main__":
    asyncio.run(main())
