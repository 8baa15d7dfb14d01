"""The showcase cast: `ShowcaseGraph`, and ``graph`` for ``langgraph dev`` (langgraph.json).

plan (sync) -> fetch (async, rate limited, durable) -> parse (threads) -> store (one
transaction) -> report (async files) -> summarize (sync)::

    async with ShowcaseGraph(rate=45) as cast:
        graph = cast(checkpointer=saver)
        await graph.ainvoke({"count": 500}, config, context=ShowcaseContext(url))
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import TimeoutPolicy

from act_operator_lib import BaseGraph, RateLimiter
from examples.showcase.nodes import Fetch, Parse, Plan, Report, Store, Summarize
from examples.showcase.state import ShowcaseContext, ShowcaseInput, ShowcaseState

__all__ = ["DEFAULT_RATE", "ShowcaseGraph", "graph"]

DEFAULT_RATE = 45.0
"""Requests per second the cast allows itself: just under the API's 50."""


class ShowcaseGraph(BaseGraph):
    """The showcase's graph; ``rate`` is the shared request budget of every run."""

    def __init__(self, rate: float = DEFAULT_RATE, store: BaseStore | None = None) -> None:
        super().__init__()
        # One limiter for every run this object builds: they all spend one API budget.
        self.rate_limiter = RateLimiter(rate)
        self.store = store

    def build(
        self,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        interrupt_before: list[str] | None = None,
        interrupt_after: list[str] | None = None,
        debug: bool = False,
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        builder = StateGraph(
            ShowcaseState, context_schema=ShowcaseContext, input_schema=ShowcaseInput
        )
        builder.add_node("plan", Plan())
        # No progress for 60 s means something is stuck: map_concurrent's progress
        # reports are heartbeats, so a long healthy fetch is never cut off.
        builder.add_node(
            "fetch",
            Fetch(self.rate_limiter),
            timeout=TimeoutPolicy(idle_timeout=60, refresh_on="heartbeat"),
        )
        builder.add_node("parse", Parse())
        builder.add_node("store", Store())
        builder.add_node("report", Report())
        builder.add_node("summarize", Summarize())
        builder.add_edge(START, "plan")
        builder.add_edge("plan", "fetch")
        builder.add_edge("fetch", "parse")
        builder.add_edge("parse", "store")
        builder.add_edge("store", "report")
        builder.add_edge("report", "summarize")
        builder.add_edge("summarize", END)
        return builder.compile(
            checkpointer=checkpointer,
            store=self.store,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            debug=debug,
        )


graph = ShowcaseGraph()()
