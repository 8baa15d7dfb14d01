"""`PostgresResource`: a pooled asyncpg connection pool (extra ``postgres``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from act_operator_lib._errors import ResourceUnavailableError
from act_operator_lib._extras import require
from act_operator_lib._validation import positive_number
from act_operator_lib.resources._core import Resource

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresResource"]


class PostgresResource(Resource["asyncpg.Pool[Any]"]):
    """An asyncpg connection pool: one per event loop, opened on first use.

    Example::

        class Users(AsyncBaseNode):
            db = PostgresResource(max_size=10)      # DSN from $DATABASE_URL

            async def execute(self, state):
                pool = await self.db()
                rows = await pool.fetch("SELECT * FROM users WHERE id = $1", state["id"])
                return {"users": [dict(row) for row in rows]}

    Args:
        dsn: ``postgresql://user[:password]@host[:port]/database``; default: the
            ``DATABASE_URL`` environment variable, read when the pool is opened.
        min_size: Connections opened with the pool and kept open.
        max_size: Most connections at once; more callers wait for a free one.
        connect_timeout: Seconds to establish one connection.
        command_timeout: Default seconds a query may run (``None``: no limit).
        connect_options: Further keyword arguments for ``asyncpg.create_pool``.

    A wrong host, port, database or user raises `ResourceUnavailableError` naming
    host, port, database and user, never the password. Needs
    ``pip install act-operator-lib[postgres]``.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        command_timeout: float | None = 60.0,
        **connect_options: Any,
    ) -> None:
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(
                f"PostgresResource(max_size=...) must be an int >= 1, got {max_size!r}."
            )
        if not isinstance(min_size, int) or not 0 <= min_size <= max_size:
            raise ValueError(
                f"PostgresResource(min_size=...) must be an int in 0..max_size ({max_size}), "
                f"got {min_size!r}."
            )
        if not connect_timeout > 0:
            raise ValueError(
                f"PostgresResource(connect_timeout=...) must be > 0, got {connect_timeout!r}."
            )
        if command_timeout is not None:
            positive_number("PostgresResource", "command_timeout", command_timeout)
        if dsn is not None and not isinstance(dsn, str):
            raise TypeError(
                "PostgresResource(dsn=...) must be a str URL or None (None: $DATABASE_URL), "
                f"got {type(dsn).__name__}"
            )
        if dsn is not None and not _is_postgres_dsn(dsn):
            raise ValueError(
                "PostgresResource(dsn=...) must be a postgresql:// or postgres:// URL, "
                "e.g. 'postgresql://user@127.0.0.1:5432/app', or None to use $DATABASE_URL"
            )
        require("asyncpg", feature="PostgresResource", extra="postgres")
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.connect_options = connect_options

    async def open(self) -> asyncpg.Pool[Any]:
        """Create the pool and its ``min_size`` connections."""
        import asyncpg

        dsn = self.dsn or os.environ.get("DATABASE_URL")
        if not dsn:
            raise ValueError(
                "PostgresResource has no DSN: pass PostgresResource(dsn=...) or set the "
                "DATABASE_URL environment variable."
            )
        try:
            pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
                dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                **self.connect_options,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise ResourceUnavailableError(
                f"cannot connect to PostgreSQL {_where(dsn)}: {_reason(error, dsn)}; check "
                "the DSN (or DATABASE_URL) and that the server is up"
            ) from None
        return pool

    async def close(self, value: asyncpg.Pool[Any]) -> None:
        """Close the pool, waiting for connections in use to be released."""
        await value.close()

    def __repr__(self) -> str:
        where = _where(self.dsn) if self.dsn else "$DATABASE_URL"
        return f"PostgresResource({where}, min_size={self.min_size}, max_size={self.max_size})"


def _where(dsn: str) -> str:
    """Host, port, database and user of ``dsn``, without the password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "(unparsable DSN)"
    database = parts.path.lstrip("/") or parts.username or "(default)"
    user = parts.username or "(default user)"
    return f"host {host}:{port} database {database!r} user {user!r}"


def _reason(error: BaseException, dsn: str) -> str:
    """The error's text, with the DSN's password (if any) masked."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    try:
        password = urlsplit(dsn).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***")
    return text


def _is_postgres_dsn(dsn: str) -> bool:
    # Only the scheme is checked here: the rest (and any password) is asyncpg's to parse.
    return urlsplit(dsn).scheme in ("postgresql", "postgres")
