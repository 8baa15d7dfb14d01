"""Pooled resources for nodes: declare once on the class, use from any run.

A resource is a class attribute. Its value (an HTTP session, a database pool, a
connection) is opened on first use in the running event loop, shared by every later
use on that loop, and closed by ``await node.aclose()``, by ``async with graph:`` on
the `BaseGraph` that built the node, or when the loop shuts down::

    from act_operator_lib.resources import HTTPResource

    class Fetch(AsyncBaseNode):
        http = HTTPResource(base_url="https://api.example.com", limit=10)

        async def execute(self, state):
            session = await self.http()
            async with session.get(f"/items/{state['id']}") as response:
                return {"item": await response.json()}

`HTTPResource`, `PostgresResource` and `SQLiteResource` import aiohttp, asyncpg and
aiosqlite only when a value is opened, so each needs its extra only if used.
"""

from act_operator_lib._public import publish
from act_operator_lib.resources._core import (
    BoundResource,
    Resource,
    ResourceStatistics,
    aclose_resources,
)
from act_operator_lib.resources._files import read_bytes, read_text, write_bytes, write_text
from act_operator_lib.resources._http import HTTPResource
from act_operator_lib.resources._postgres import PostgresResource
from act_operator_lib.resources._sqlite import SQLiteResource

__all__ = [
    "BoundResource",
    "HTTPResource",
    "PostgresResource",
    "Resource",
    "ResourceStatistics",
    "SQLiteResource",
    "aclose_resources",
    "read_bytes",
    "read_text",
    "write_bytes",
    "write_text",
]

publish(__name__, globals())
