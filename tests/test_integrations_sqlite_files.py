"""SQLiteResource and the async file helpers, in tmp_path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from act_operator_lib import AsyncBaseNode, ResourceUnavailableError, SQLiteResource
from act_operator_lib.resources import read_bytes, read_text, write_bytes, write_text


class Notes(AsyncBaseNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    async def execute(self, state: Any) -> Any:
        return {}


def notes_node(path: Path, **options: Any) -> Any:
    class Node(Notes):
        db = SQLiteResource(path, **options)

    return Node()


async def test_sqlite_connection_round_trips_rows(tmp_path: Path) -> None:
    node = notes_node(tmp_path / "notes.db")
    try:
        db = await node.db()
        await db.execute("CREATE TABLE notes (body TEXT)")
        await db.execute("INSERT INTO notes VALUES ('hello')")
        await db.commit()
        async with db.execute("SELECT body FROM notes") as cursor:
            assert await cursor.fetchall() == [("hello",)]
    finally:
        await node.aclose()


async def test_sqlite_default_pragmas_enable_wal(tmp_path: Path) -> None:
    node = notes_node(tmp_path / "wal.db")
    try:
        db = await node.db()
        async with db.execute("PRAGMA journal_mode") as cursor:
            assert await cursor.fetchone() == ("wal",)
    finally:
        await node.aclose()


async def test_sqlite_custom_pragmas_are_applied(tmp_path: Path) -> None:
    node = notes_node(tmp_path / "fk.db", pragmas={"foreign_keys": "ON"})
    try:
        db = await node.db()
        async with db.execute("PRAGMA foreign_keys") as cursor:
            assert await cursor.fetchone() == (1,)
    finally:
        await node.aclose()


async def test_sqlite_missing_directory_raises_resource_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "notes.db"
    node = notes_node(path)
    with pytest.raises(ResourceUnavailableError, match=r"notes\.db"):
        await node.db()


def test_sqlite_rejects_a_bad_pragma_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pragma"):
        SQLiteResource(tmp_path / "x.db", pragmas={"x; DROP": 1})


async def test_text_round_trips_through_the_file_helpers(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    await write_text(path, "héllo")
    assert await read_text(path) == "héllo"


async def test_bytes_round_trip_through_the_file_helpers(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    await write_bytes(path, b"\x00\x01")
    assert await read_bytes(path) == b"\x00\x01"


def test_file_helpers_work_without_aiofiles(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "sys.modules['aiofiles'] = None\n"
        "from act_operator_lib.resources import read_text, write_text\n"
        "async def main():\n"
        f"    await write_text({str(tmp_path / 'x.txt')!r}, 'fallback')\n"
        f"    print(await read_text({str(tmp_path / 'x.txt')!r}))\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "fallback"
