"""`BaseGraph`: Act's ``def build(self)`` and builds that take compile options, on real graphs."""

from __future__ import annotations

import gc
import inspect
import weakref
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from act_operator_lib import BaseGraph, BaseNode, GraphDefinitionError, Resource, run_async

THREAD = {"configurable": {"thread_id": "t"}}


class State(TypedDict, total=False):
    query: str
    message: str


class Answer(BaseNode):
    def execute(self, state):
        return {"message": f"hello {state['query']}"}


def builder() -> StateGraph[Any, Any, Any, Any]:
    graph = StateGraph(State)
    graph.add_node("answer", Answer())
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph


class ActStyle(BaseGraph):
    """As Act's scaffold writes it: no compile options, returns the compiled graph."""

    def build(self):
        return builder().compile()


class WithOptions(BaseGraph):
    def build(self, checkpointer=None, interrupt_before=None, interrupt_after=None, debug=False):
        self.received = (checkpointer, interrupt_before, interrupt_after, debug)
        return builder().compile(
            checkpointer=checkpointer,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            debug=debug,
        )


def test_a_build_without_parameters_gives_the_compiled_graph_named_after_the_class():
    graph = ActStyle()()

    assert graph.invoke({"query": "Ada"}) == {"query": "Ada", "message": "hello Ada"}
    assert graph.name == "ActStyle"


def test_compile_options_reach_a_build_that_declares_them():
    saver = InMemorySaver()
    cast = WithOptions()

    graph = cast(checkpointer=saver, interrupt_before=["answer"])
    graph.invoke({"query": "Ada"}, THREAD)

    assert cast.received == (saver, ["answer"], None, False)
    assert graph.get_state(THREAD).next == ("answer",)


def test_compile_options_a_build_does_not_declare_are_applied_to_its_compiled_graph():
    graph = ActStyle()(checkpointer=InMemorySaver(), interrupt_after=["answer"])
    graph.invoke({"query": "Ada"}, THREAD)

    assert graph.get_state(THREAD).next == ()
    assert graph.get_state(THREAD).values == {"query": "Ada", "message": "hello Ada"}
    assert graph.name == "ActStyle"


def test_only_the_options_a_build_declares_are_passed_and_the_rest_applied():
    class CheckpointerOnly(BaseGraph):
        def build(self, checkpointer=None):
            return builder().compile(checkpointer=checkpointer)

    graph = CheckpointerOnly()(checkpointer=InMemorySaver(), interrupt_before=["answer"])
    graph.invoke({"query": "Ada"}, THREAD)

    assert graph.get_state(THREAD).next == ("answer",)


def test_a_build_taking_keyword_arguments_receives_every_given_option():
    class Forwarding(BaseGraph):
        def build(self, **options):
            self.options = options
            return builder().compile(**options)

    saver = InMemorySaver()
    cast = Forwarding()
    cast(checkpointer=saver, debug=True)

    assert cast.options == {"checkpointer": saver, "debug": True}


def test_an_uncompiled_state_graph_from_build_is_compiled_with_the_options():
    class Uncompiled(BaseGraph):
        def build(self):
            return builder()

    graph = Uncompiled()(checkpointer=InMemorySaver(), interrupt_before=["answer"])
    graph.invoke({"query": "Ada"}, THREAD)

    assert graph.get_state(THREAD).next == ("answer",)
    assert graph.name == "Uncompiled"


def test_a_build_that_names_its_graph_keeps_the_name():
    class Named(BaseGraph):
        def build(self):
            return builder().compile(name="answers")

    assert Named()().name == "answers"


def test_an_interrupt_on_a_missing_node_is_refused_as_langgraph_refuses_it():
    with pytest.raises(ValueError, match="nowhere"):
        ActStyle()(interrupt_before=["nowhere"])


def test_a_checkpointer_conflicting_with_the_one_build_compiled_in_is_refused():
    class OwnSaver(BaseGraph):
        def build(self):
            return builder().compile(checkpointer=InMemorySaver())

    with pytest.raises(GraphDefinitionError, match=r"OwnSaver\(\)\(checkpointer=\.\.\.\)"):
        OwnSaver()(checkpointer=InMemorySaver())


def test_a_build_returning_no_graph_is_refused_naming_the_class():
    class NoGraph(BaseGraph):
        def build(self):
            return None

    with pytest.raises(
        GraphDefinitionError, match=r"NoGraph.build\(\) must return .* got NoneType"
    ):
        NoGraph()()


def test_the_instance_is_a_graph_factory_without_parameters_for_langgraph_s_server():
    """The API server refuses a factory (Act's langgraph.json names the instance) with
    more than two parameters and passes its config to one with a single parameter."""

    class Configured(BaseGraph):
        def __init__(self, rate: float = 1.0) -> None:
            super().__init__()
            self.rate = rate

        def build(self):
            return builder().compile()

    assert inspect.signature(Configured()).parameters == {}
    assert list(inspect.signature(Configured).parameters) == ["rate"]


def test_the_graphs_it_built_are_not_kept_alive_by_it():
    cast = ActStyle()
    built = weakref.ref(cast())

    gc.collect()

    assert built() is None


class Tally(Resource[list[str]]):
    """A pooled value that records its closing."""

    closed = 0

    async def open(self) -> list[str]:
        return []

    async def close(self, value: list[str]) -> None:
        Tally.closed += 1


class UsesTally(BaseNode):
    tally = Tally()

    def execute(self, state):
        run_async(self.tally()).append(state["query"])
        return {"message": "counted"}


class TallyGraph(BaseGraph):
    def build(self):
        node = UsesTally()
        self.last_node = weakref.ref(node)
        graph = StateGraph(State)
        graph.add_node("count", node)
        graph.add_edge(START, "count")
        return graph.compile()


def test_with_closes_the_resources_of_a_graph_the_caller_dropped():
    Tally.closed = 0
    with TallyGraph() as cast:
        cast()
        run_async(cast.last_node().tally())
        gc.collect()

        assert Tally.closed == 0

    assert Tally.closed == 1


def test_a_subclass_that_skips_base_init_still_builds_and_closes():
    class NoSuperInit(BaseGraph):
        def __init__(self) -> None:
            self.name = "custom"

        def build(self):
            return builder().compile()

    cast = NoSuperInit()
    graph = cast()
    cast.close()

    assert graph.name == "custom"


def test_base_graph_without_build_cannot_be_instantiated():
    class NoBuild(BaseGraph):
        pass

    with pytest.raises(TypeError, match="build"):
        NoBuild()


def test_a_node_added_without_a_name_is_named_after_its_class():
    graph = StateGraph(State)
    graph.add_node(Answer())

    assert "Answer" in graph.nodes
