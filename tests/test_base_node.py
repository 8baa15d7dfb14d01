"""BaseNode / AsyncBaseNode: Act-compatible lifecycle, checked definitions and results."""

from __future__ import annotations

import asyncio
import gc
import logging
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command, RetryPolicy
from pydantic import BaseModel

from act_operator_lib import (
    ActOperatorError,
    AsyncBaseNode,
    BaseNode,
    MissingAwaitError,
    NodeDefinitionError,
    NodeResultError,
    NodeRuntime,
    RateLimiter,
)


class TextState(TypedDict, total=False):
    text: str
    seen: list[str]
    thread_id: str | None
    tags: list[str]


def one_node_graph(node: Any, state_schema: Any = TextState, **compile_kwargs: Any) -> Any:
    builder = StateGraph(state_schema)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    return builder.compile(**compile_kwargs)


class SyncStateOnly(BaseNode):
    def execute(self, state):
        return {"text": state["text"].upper()}


class SyncWithConfig(BaseNode):
    def execute(self, state, config):
        return {"thread_id": self.get_thread_id(config), "tags": self.get_tags(config)}


class SyncWithRuntime(BaseNode):
    def execute(self, state, runtime):
        runtime.stream.send({"sync": state["text"]})
        return {"seen": [type(runtime).__name__]}


class SyncWithBoth(BaseNode):
    def execute(self, state, config, runtime):
        runtime.stream.send("both")
        return {"thread_id": self.get_thread_id(config)}


class AsyncStateOnly(AsyncBaseNode):
    async def execute(self, state):
        await asyncio.sleep(0)
        return {"text": state["text"] + "!"}


class AsyncWithConfig(AsyncBaseNode):
    async def execute(self, state, config):
        return {"thread_id": self.get_thread_id(config), "tags": self.get_tags(config)}


class AsyncWithRuntime(AsyncBaseNode):
    async def execute(self, state, runtime):
        for word in state["text"].split():
            runtime.stream.send({"token": word})
        return {"seen": [type(runtime).__name__]}


class AsyncWithBoth(AsyncBaseNode):
    async def execute(self, state, config, runtime):
        runtime.stream.send({"thread": self.get_thread_id(config)})
        return {"thread_id": self.get_thread_id(config)}


# Every signature in both flavours, through a real graph.


def test_sync_node_with_state_only_runs_under_invoke():
    assert one_node_graph(SyncStateOnly()).invoke({"text": "hi"})["text"] == "HI"


async def test_async_node_with_state_only_runs_under_ainvoke():
    assert (await one_node_graph(AsyncStateOnly()).ainvoke({"text": "hi"}))["text"] == "hi!"


@pytest.mark.parametrize("node", [SyncWithConfig(), AsyncWithConfig()], ids=["sync", "async"])
async def test_config_signature_receives_thread_id_and_tags_from_a_real_config(node):
    graph = one_node_graph(node, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "thread-7"}, "tags": ["alpha", "beta"]}
    result = await graph.ainvoke({"text": "x"}, config)
    assert result["thread_id"] == "thread-7"
    assert {"alpha", "beta"} <= set(result["tags"])


@pytest.mark.parametrize("node", [SyncWithRuntime(), AsyncWithRuntime()], ids=["sync", "async"])
async def test_runtime_signature_receives_a_node_runtime(node):
    result = await one_node_graph(node).ainvoke({"text": "a b"})
    assert result["seen"] == ["NodeRuntime"]


async def test_runtime_stream_send_writes_to_the_custom_stream_mode():
    chunks = [
        chunk
        async for chunk in one_node_graph(AsyncWithRuntime()).astream(
            {"text": "one two three"}, stream_mode="custom"
        )
    ]
    assert chunks == [{"token": "one"}, {"token": "two"}, {"token": "three"}]


def test_sync_node_runtime_stream_send_works_under_sync_stream():
    chunks = list(one_node_graph(SyncWithRuntime()).stream({"text": "s"}, stream_mode="custom"))
    assert chunks == [{"sync": "s"}]


@pytest.mark.parametrize("node", [SyncWithBoth(), AsyncWithBoth()], ids=["sync", "async"])
async def test_config_and_runtime_signature_receives_both(node):
    graph = one_node_graph(node, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t-both"}}
    seen = [
        (mode, chunk)
        async for mode, chunk in graph.astream(
            {"text": "x"}, config, stream_mode=["custom", "updates"]
        )
    ]
    assert ("updates", {"node": {"thread_id": "t-both"}}) in seen
    assert any(mode == "custom" for mode, _ in seen)


async def test_node_runtime_keeps_every_field_langgraph_gave():
    store = InMemoryStore()
    store.put(("users",), "u1", {"name": "Ada"})

    @dataclass
    class Context:
        user_id: str

    class ReadsContextAndStore(AsyncBaseNode):
        async def execute(self, state, runtime):
            assert isinstance(runtime, Runtime)
            item = runtime.store.get(("users",), runtime.context.user_id)
            return {"text": item.value["name"]}

    builder = StateGraph(TextState, context_schema=Context)
    builder.add_node("node", ReadsContextAndStore())
    builder.add_edge(START, "node")
    graph = builder.compile(store=store)
    result = await graph.ainvoke({"text": ""}, context=Context(user_id="u1"))
    assert result["text"] == "Ada"


def test_var_keyword_execute_receives_config_and_runtime_as_keywords():
    class Flexible(BaseNode):
        def execute(self, state, **kwargs):
            return {"seen": sorted(kwargs)}

    assert one_node_graph(Flexible()).invoke({"text": ""})["seen"] == ["config", "runtime"]


# State as TypedDict (above), dataclass and Pydantic.


@dataclass(kw_only=True)
class QueryState:
    query: str
    result: str | None = None


class PydanticState(BaseModel):
    query: str
    result: str | None = None


class Answer(AsyncBaseNode):
    async def execute(self, state):
        return {"result": f"Data for {state.query}"}


@pytest.mark.parametrize("schema", [QueryState, PydanticState], ids=["dataclass", "pydantic"])
async def test_attribute_style_state_works(schema):
    result = await one_node_graph(Answer(), state_schema=schema).ainvoke({"query": "q"})
    assert result["result"] == "Data for q"


# Calling a node directly, as the guide's tests do.


async def test_async_node_can_be_awaited_directly_with_state_only():
    assert await AsyncStateOnly()({"text": "direct"}) == {"text": "direct!"}


def test_sync_node_can_be_called_directly_with_state_only():
    assert SyncStateOnly()({"text": "direct"}) == {"text": "DIRECT"}


async def test_direct_call_gives_runtime_nodes_a_usable_runtime():
    class Streams(AsyncBaseNode):
        async def execute(self, state, runtime):
            runtime.stream.send("dropped outside a graph")
            return {"seen": [type(runtime).__name__]}

    assert await Streams()({}) == {"seen": ["NodeRuntime"]}


async def test_direct_call_with_config_reads_thread_id():
    result = await AsyncWithConfig()({}, config={"configurable": {"thread_id": "t1"}})
    assert result == {"thread_id": "t1", "tags": []}


def test_to_node_runtime_shares_fields_with_the_given_runtime():
    from act_operator_lib.streaming import to_node_runtime

    writes: list[Any] = []
    runtime = Runtime(context={"k": 1}, stream_writer=writes.append)
    node_runtime = to_node_runtime(runtime)
    node_runtime.stream.send("x")
    assert isinstance(node_runtime, NodeRuntime)
    assert node_runtime.context == {"k": 1}
    assert writes == ["x"]


# Results: dict, Command, list of Commands, None; everything else refused.


async def test_command_result_is_passed_to_langgraph():
    class Jump(AsyncBaseNode):
        async def execute(self, state):
            return Command(update={"text": "jumped"}, goto=END)

    assert (await one_node_graph(Jump()).ainvoke({"text": ""}))["text"] == "jumped"


def test_none_result_leaves_the_state_unchanged():
    class Nothing(BaseNode):
        def execute(self, state):
            return None

    assert one_node_graph(Nothing()).invoke({"text": "same"})["text"] == "same"


def test_list_of_commands_result_is_accepted():
    class Twice(BaseNode):
        def execute(self, state):
            return [Command(update={"text": "a"}), Command(update={"seen": ["b"]})]

    result = one_node_graph(Twice()).invoke({"text": ""})
    assert (result["text"], result["seen"]) == ("a", ["b"])


@pytest.mark.parametrize("bad", ["text", 42, ["not", "commands"], ("x",)])
def test_result_of_another_type_names_the_node_and_the_type(bad):
    class Wrong(BaseNode):
        def execute(self, state):
            return bad

    with pytest.raises(NodeResultError, match=rf"node 'Wrong'.*got {type(bad).__name__}"):
        Wrong()({})


async def test_result_error_is_a_type_error_and_an_act_operator_error():
    class Wrong(AsyncBaseNode):
        async def execute(self, state):
            return "text"

    with pytest.raises(TypeError) as caught:
        await one_node_graph(Wrong()).ainvoke({"text": ""})
    assert isinstance(caught.value, ActOperatorError)


# Pitfall 1: a forgotten await is caught and the coroutine closed (-W error proves it).


async def fetch() -> str:
    await asyncio.sleep(0)
    return "data"


async def test_dict_holding_a_coroutine_raises_did_you_forget_await():
    class Forgot(AsyncBaseNode):
        async def execute(self, state):
            return {"result": fetch()}

    with pytest.raises(MissingAwaitError, match=r"'result'.*did you forget await\?"):
        await Forgot()({})


async def test_async_execute_returning_a_coroutine_is_caught():
    class ReturnsCoroutine(AsyncBaseNode):
        async def execute(self, state):
            return fetch()

    with pytest.raises(MissingAwaitError, match="did you forget await"):
        await ReturnsCoroutine()({})


def test_sync_execute_returning_a_coroutine_is_caught():
    class SyncForgot(BaseNode):
        def execute(self, state):
            return fetch()

    with pytest.raises(MissingAwaitError, match="node 'SyncForgot'"):
        SyncForgot()({})


async def test_forgotten_await_inside_a_graph_fails_the_run_loudly():
    class Forgot(AsyncBaseNode):
        async def execute(self, state):
            return {"text": fetch()}

    with pytest.raises(MissingAwaitError):
        await one_node_graph(Forgot()).ainvoke({"text": ""})


async def test_dict_holding_an_unawaited_task_is_caught_and_the_task_cancelled():
    started: list[asyncio.Task[str]] = []

    class ForgotTask(AsyncBaseNode):
        async def execute(self, state):
            task = asyncio.create_task(fetch())
            started.append(task)
            return {"result": task}

    with pytest.raises(MissingAwaitError):
        await ForgotTask()({})
    with pytest.raises(asyncio.CancelledError):
        await started[0]


async def test_an_unawaited_gather_returned_from_execute_is_caught_and_cancelled():
    gathered: list[asyncio.Future[list[str]]] = []

    class ForgotGather(AsyncBaseNode):
        async def execute(self, state):
            gathered.append(asyncio.gather(fetch(), fetch()))
            return gathered[0]

    with pytest.raises(MissingAwaitError, match=r"asyncio\.gather\(\.\.\.\)") as raised:
        await ForgotGather()({})
    assert "coroutine" not in str(raised.value)
    with pytest.raises(asyncio.CancelledError):
        await gathered[0]


async def test_an_unawaited_gather_in_an_update_leaves_nothing_to_warn_about():
    class ForgotGather(AsyncBaseNode):
        async def execute(self, state):
            return {"results": asyncio.gather(fetch(), fetch())}

    reported: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: reported.append(context["message"]))
    try:
        with pytest.raises(MissingAwaitError, match=r"'results'.*asyncio\.gather"):
            await ForgotGather()({})
        for _ in range(3):  # the cancelled children finish, then the gather
            await asyncio.sleep(0)
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert reported == []


async def test_coroutines_in_a_list_value_of_the_update_are_caught_and_closed():
    class ForgotInList(AsyncBaseNode):
        async def execute(self, state):
            return {"items": [fetch() for _ in range(3)]}

    with pytest.raises(MissingAwaitError, match=r"the value of 'items' holds an un-awaited"):
        await ForgotInList()({})


async def test_coroutines_in_a_dict_value_of_the_update_are_caught_and_closed():
    class ForgotInDict(AsyncBaseNode):
        async def execute(self, state):
            return {"by_url": {"a": fetch(), "b": fetch()}}

    with pytest.raises(MissingAwaitError, match=r"'by_url'"):
        await ForgotInDict()({})


async def test_lists_and_dicts_of_plain_values_pass_unchanged():
    update = {"items": [1, 2, 3], "by_url": {"a": "x"}, "empty": []}

    class Plain(AsyncBaseNode):
        async def execute(self, state):
            return update

    assert await Plain()({}) is update


# Definitions are checked when the class statement runs.


def test_def_execute_on_async_base_node_is_refused_at_definition():
    with pytest.raises(NodeDefinitionError, match=r"Broken\.execute\(\).*async def"):

        class Broken(AsyncBaseNode):
            def execute(self, state):
                return {}


def test_async_def_execute_on_base_node_is_refused_at_definition():
    with pytest.raises(NodeDefinitionError, match="derive from AsyncBaseNode"):

        class Broken(BaseNode):
            async def execute(self, state):
                return {}


def test_missing_execute_is_refused_with_the_fix():
    with pytest.raises(NodeDefinitionError, match=r"does not implement execute\(\).*abstract=True"):

        class NoExecute(AsyncBaseNode):
            pass


@pytest.mark.parametrize("decorator", [staticmethod, classmethod])
def test_static_or_class_method_execute_is_refused(decorator):
    with pytest.raises(NodeDefinitionError, match=decorator.__name__):

        class Broken(BaseNode):
            execute = decorator(lambda *args: {})


def test_first_parameter_not_named_state_is_refused():
    with pytest.raises(NodeDefinitionError, match=r"must take `state`.*got data"):

        class Broken(BaseNode):
            def execute(self, data):
                return {}


def test_execute_without_state_is_refused():
    with pytest.raises(NodeDefinitionError, match="got nothing"):

        class Broken(BaseNode):
            def execute(self):
                return {}


@pytest.mark.parametrize("parameter", ["context", "store", "writer"])
def test_other_parameter_names_are_refused_with_the_valid_forms(parameter):
    namespace: dict[str, Any] = {}
    exec(f"def execute(self, state, {parameter}):\n    return {{}}", namespace)
    with pytest.raises(NodeDefinitionError, match=rf"unsupported parameter {parameter}"):
        type("Broken", (BaseNode,), {"execute": namespace["execute"]})


def test_var_positional_parameter_is_refused():
    with pytest.raises(NodeDefinitionError, match=r"unsupported parameter \*args"):

        class Broken(BaseNode):
            def execute(self, state, *args):
                return {}


def test_async_generator_execute_is_refused_with_streaming_advice():
    with pytest.raises(NodeDefinitionError, match=r"generator.*self\.emit"):

        class Broken(AsyncBaseNode):
            async def execute(self, state):
                yield {}


def test_definition_error_is_a_type_error():
    assert issubclass(NodeDefinitionError, TypeError)
    assert issubclass(NodeDefinitionError, ActOperatorError)


def test_abstract_intermediate_subclass_declared_abstract_is_allowed():
    class HTTPBase(AsyncBaseNode, abstract=True):
        def url(self, path: str) -> str:
            return f"http://127.0.0.1/{path}"

    class Concrete(HTTPBase):
        async def execute(self, state):
            return {"text": self.url("x")}

    assert asyncio.run(Concrete()({})) == {"text": "http://127.0.0.1/x"}
    with pytest.raises(TypeError, match="abstract"):
        HTTPBase()


def test_intermediate_subclass_with_its_own_abstract_method_is_allowed():
    class Template(BaseNode):
        @abstractmethod
        def transform(self, text: str) -> str: ...

    class Upper(Template):
        def transform(self, text: str) -> str:
            return text.upper()

        def execute(self, state):
            return {"text": self.transform(state["text"])}

    assert Upper()({"text": "a"}) == {"text": "A"}


def test_subclass_of_a_concrete_node_is_checked_again():
    with pytest.raises(NodeDefinitionError, match="Child"):

        class Child(SyncStateOnly):
            async def execute(self, state):
                return {}


# Construction: name, verbose, kwargs passed through, bad keywords caught.


def test_name_defaults_to_the_class_name_and_can_be_given():
    assert SyncStateOnly().name == "SyncStateOnly"
    assert SyncStateOnly(name="upper").name == "upper"


def test_class_attribute_name_is_kept():
    class Named(BaseNode):
        name = "custom"

        def execute(self, state):
            return {}

    assert Named().name == "custom"


def test_subclass_options_pass_through_kwargs_as_in_the_guide():
    class RateLimited(AsyncBaseNode):
        def __init__(self, requests_per_second=10, **kwargs):
            super().__init__(**kwargs)
            self.rate = requests_per_second

        async def execute(self, state):
            return {}

    node = RateLimited(requests_per_second=5, verbose=True, name="limited")
    assert (node.rate, node.verbose, node.name) == (5, True, "limited")


def test_unknown_keyword_is_refused_naming_it():
    with pytest.raises(TypeError, match=r"SyncStateOnly\(\) got unexpected keyword.*pool_sise"):
        SyncStateOnly(pool_sise=3)


@pytest.mark.parametrize("bad", ["", 3])
def test_invalid_name_is_refused(bad):
    with pytest.raises(ValueError, match=r"name=\.\.\."):
        SyncStateOnly(name=bad)


def test_non_bool_verbose_is_refused():
    with pytest.raises(TypeError, match=r"verbose=\.\.\."):
        SyncStateOnly(verbose="yes")


def test_log_writes_debug_records_with_context_only_when_verbose(caplog):
    caplog.set_level(logging.DEBUG, logger="act_operator_lib")
    quiet, loud = SyncStateOnly(), SyncStateOnly(name="loud", verbose=True)
    quiet.log("hidden")
    loud.log("fetched", url="http://127.0.0.1/x")
    messages = [record.getMessage() for record in caplog.records]
    assert not any("hidden" in message for message in messages)
    assert "[loud] fetched url='http://127.0.0.1/x'" in messages


def test_verbose_node_logs_its_execution_in_a_graph(caplog):
    caplog.set_level(logging.DEBUG, logger="act_operator_lib")
    one_node_graph(SyncStateOnly(verbose=True)).invoke({"text": "x"})
    messages = [record.getMessage() for record in caplog.records]
    # Inside a graph the node is named after its graph node ("node"), not its class.
    assert any(message.startswith("[node] Executing") for message in messages)
    assert any(message.startswith("[node] Completed") for message in messages)


def test_thread_id_and_tags_helpers_tolerate_missing_config():
    node = SyncStateOnly()
    assert node.get_thread_id(None) is None
    assert node.get_thread_id({"configurable": {}}) is None
    assert node.get_tags(None) == []
    assert node.get_tags({"tags": ["a"]}) == ["a"]


def test_repr_names_the_class_and_node():
    assert repr(SyncStateOnly(name="n")) == "SyncStateOnly(name='n')"


def test_node_runtime_supports_override_replace_copy_and_equality():
    import copy
    import dataclasses

    from act_operator_lib.streaming import to_node_runtime

    runtime = to_node_runtime(Runtime(context={"user": "a"}))
    overridden = runtime.override(context={"user": "b"})
    assert isinstance(overridden, NodeRuntime)
    assert overridden.context == {"user": "b"}
    assert dataclasses.replace(runtime, context=None).context is None
    assert copy.deepcopy(runtime) == runtime
    assert NodeRuntime(context=1).context == 1


# Class attributes that look like misspelled policies fail at class definition.


@pytest.mark.parametrize(
    ("attribute", "value", "policy"),
    [
        ("retries", RetryPolicy(max_attempts=3), "retry"),
        ("time_out", 5, "timeout"),
        ("timeouts", 5.0, "timeout"),
        ("ratelimit", RateLimiter(5), "rate_limiter"),
        ("rate_limits", RateLimiter(5), "rate_limiter"),
        ("rate_limiters", RateLimiter(5), "rate_limiter"),
        ("max_concurrent", 4, "max_concurrency"),
        ("concurrency", 4, "max_concurrency"),
    ],
)
def test_a_misspelled_policy_attribute_fails_at_class_definition(attribute, value, policy):
    with pytest.raises(
        NodeDefinitionError, match=rf"attribute `{attribute}`.*did you mean `{policy}`\?"
    ):
        type("Misspelled", (AsyncBaseNode,), {attribute: value, "execute": _async_execute})


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("timeout_s", 5),
        ("retry_count", 3),
        ("timeouts", {"connect": 5}),
        ("retries", 3),
        ("max_items", 4),
        ("timer", 1.5),
    ],
)
def test_user_attributes_that_are_not_policy_typos_keep_working(attribute, value):
    node_class = type(
        "OwnSettings", (AsyncBaseNode,), {attribute: value, "execute": _async_execute}
    )

    assert getattr(node_class(), attribute) == value


async def _async_execute(self: Any, state: Any) -> dict[str, Any]:
    return {}
