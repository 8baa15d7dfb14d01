"""Scripted stand-ins for external services, handed to nodes by dependency injection."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["fake_chat_model"]


def fake_chat_model(responses: Iterable[Any]) -> Any:
    """A LangChain chat model that answers with ``responses``, one per call, in order.

    Each response is a string or a ``BaseMessage``. It is langchain-core's
    ``GenericFakeChatModel``: ``invoke``, ``ainvoke`` and streaming all work.

    Example::

        model = fake_chat_model(["Paris", "Rome"])
        node = Answer(model=model)
        run = await run_node(node, {"question": "capital of France?"})
    """
    try:
        from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
        from langchain_core.messages import AIMessage, BaseMessage
    except ImportError as error:
        raise ImportError(
            "fake_chat_model() needs langchain-core: pip install langchain-core"
        ) from error
    if isinstance(responses, str | bytes) or not isinstance(responses, Iterable):
        raise TypeError(
            "fake_chat_model(responses=...) must be a list of answers, one per call, e.g. "
            f"fake_chat_model(['Paris']), got {type(responses).__name__}"
        )
    messages: list[Any] = [
        response if isinstance(response, BaseMessage) else AIMessage(content=str(response))
        for response in responses
    ]
    if not messages:
        raise ValueError(
            "fake_chat_model(responses=...) is empty: give at least one answer, one per "
            "call the test makes, e.g. fake_chat_model(['Paris'])"
        )
    return GenericFakeChatModel(messages=iter(messages))
