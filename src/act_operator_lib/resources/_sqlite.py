"""`SQLiteResource`: one aiosqlite connection per event loop (extra ``sqlite``)."""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from act_operator_lib._errors import ResourceUnavailableError
from act_operator_lib._extras import require
from act_operator_lib._validation import invalid, is_number
from act_operator_lib.resources._core import Resource

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["SQLiteResource"]

_DEFAULT_PRAGMAS: Mapping[str, str | int] = {"journal_mode": "WAL", "busy_timeout": 5000}


class SQLiteResource(Resource["aiosqlite.Connection"]):
    """An aiosqlite connection, opened on first use and set up with ``pragmas``.

    Example::

        class Notes(AsyncBaseNode):
            db = SQLiteResource("notes.db")

            async def execute(self, state):
                db = await self.db()
                async with db.execute("SELECT body FROM notes") as cursor:
                    return {"notes": [row[0] for row in await cursor.fetchall()]}

    Args:
        path: The database file (or ``":memory:"``).
        pragmas: ``PRAGMA name = value`` run on open; default WAL journal (readers
            do not block the writer) and a 5 s busy timeout. ``{}`` runs none.
        timeout: Seconds to wait for a locked database (sqlite3's ``timeout``).

    One connection serves every task on the loop; aiosqlite runs its statements
    one at a time on its own thread. Needs ``pip install act-operator-lib[sqlite]``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        pragmas: Mapping[str, str | int] | None = None,
        timeout: float = 5.0,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(
                "SQLiteResource(path=...) must be a str or os.PathLike file path, e.g. "
                f"Path('data/app.sqlite') or ':memory:', got {type(path).__name__}"
            )
        self.path = os.fspath(path)
        self.pragmas = dict(_DEFAULT_PRAGMAS if pragmas is None else pragmas)
        for name in self.pragmas:
            if not name.replace("_", "").isalnum():
                raise ValueError(f"SQLiteResource(pragmas=...): {name!r} is not a pragma name.")
        # 0 is valid: fail at once on a locked database instead of waiting.
        if not is_number(timeout):
            raise invalid(
                TypeError,
                "SQLiteResource",
                "timeout",
                timeout,
                "a number of seconds",
                got=type(timeout).__name__,
            )
        if not 0 <= timeout < math.inf:
            raise invalid(
                ValueError,
                "SQLiteResource",
                "timeout",
                timeout,
                "a finite number of seconds >= 0 (how long to wait for a locked database)",
            )
        require("aiosqlite", feature="SQLiteResource", extra="sqlite")
        self.timeout = float(timeout)

    async def open(self) -> aiosqlite.Connection:
        """Connect and run the pragmas."""
        import aiosqlite

        connection = aiosqlite.connect(self.path, timeout=self.timeout)
        try:
            await connection
        except sqlite3.Error as error:
            # aiosqlite stops its worker thread without waiting for it; wait here, or the
            # thread reports to this loop after the loop has closed.
            worker = getattr(connection, "_thread", None)
            if isinstance(worker, threading.Thread):
                await asyncio.to_thread(worker.join)
            raise ResourceUnavailableError(
                f"cannot open SQLite database {self.path!r}: {error}; check that the "
                "directory exists and is writable"
            ) from error
        try:
            for name, value in self.pragmas.items():
                await connection.execute(f"PRAGMA {name} = {value!r}")
        except BaseException:
            await connection.close()
            raise
        return connection

    async def close(self, value: aiosqlite.Connection) -> None:
        """Close the connection (committing nothing: commit your transactions)."""
        await value.close()

    def __repr__(self) -> str:
        return f"SQLiteResource({self.path!r}, pragmas={self.pragmas!r})"
