"""Reuse a human's answers when a node's own retry runs ``execute`` again.

LangGraph's ``interrupt()`` finds its answer by position: the n-th ``interrupt()`` of
a task gets the n-th resume value. LangGraph resets that count before each of its
own retries (``add_node(retry_policy=...)``); a node's ``retry`` policy runs inside
one LangGraph attempt, so it resets the count the same way before each retry.
"""

from __future__ import annotations

import dataclasses
import itertools

from langgraph.config import get_config

__all__ = ["reuse_interrupt_answers"]

# LangGraph has no public way to reset the count: the scratchpad and its key are
# private (langgraph._internal). Kept to this one function, as LangGraph's own
# `_reset_interrupt_counter` in langgraph/pregel/_retry.py does it.
_SCRATCHPAD_KEY = "__pregel_scratchpad"


def reuse_interrupt_answers() -> None:
    """Count this task's ``interrupt()`` calls from the first again (before a retry).

    Example::

        run_attempts(policy, attempt, ..., before_retry=reuse_interrupt_answers)

    Does nothing outside a LangGraph run.
    """
    try:
        configurable = get_config().get("configurable")
    except RuntimeError:  # not inside a runnable: a direct call, no interrupts
        return
    if not configurable:
        return
    scratchpad = configurable.get(_SCRATCHPAD_KEY)
    if scratchpad is None or not hasattr(scratchpad, "interrupt_counter"):
        return
    configurable[_SCRATCHPAD_KEY] = dataclasses.replace(
        scratchpad, interrupt_counter=itertools.count(0).__next__
    )
