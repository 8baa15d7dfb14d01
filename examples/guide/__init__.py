"""One runnable example per section of the guide "Async Patterns for LangGraph Nodes".

Each module builds a real LangGraph graph from `AsyncBaseNode` / `BaseNode` and has a
``main()`` that runs it and returns what it printed; run one with, e.g.::

    python -m examples.guide.timeouts

docs/cookbook.md maps every section of the guide to its example.
"""
