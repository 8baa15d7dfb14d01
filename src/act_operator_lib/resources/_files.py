"""Async file helpers: aiofiles when installed (extra ``files``), else a thread."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

__all__ = ["read_bytes", "read_text", "write_bytes", "write_text"]

StrPath = str | os.PathLike[str]


def _aiofiles() -> Any:
    try:
        import aiofiles
    except ImportError:
        return None
    return aiofiles


def _check_path(function: str, path: object) -> None:
    # An int would be taken as an open file descriptor, and bytes are not a StrPath.
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"{function}(path=...) must be a str or os.PathLike file path, e.g. "
            f"Path('data/input.txt'), got {type(path).__name__}"
        )


async def read_text(path: StrPath, *, encoding: str = "utf-8") -> str:
    """The text of the file at ``path``, read without blocking the event loop.

    Example::

        content = await read_text(state["input_file"])
    """
    _check_path("read_text", path)
    aiofiles = _aiofiles()
    if aiofiles is None:
        return await asyncio.to_thread(Path(path).read_text, encoding=encoding)
    async with aiofiles.open(path, encoding=encoding) as file:
        text: str = await file.read()
        return text


async def read_bytes(path: StrPath) -> bytes:
    """The bytes of the file at ``path``, read without blocking the event loop."""
    _check_path("read_bytes", path)
    aiofiles = _aiofiles()
    if aiofiles is None:
        return await asyncio.to_thread(Path(path).read_bytes)
    async with aiofiles.open(path, "rb") as file:
        data: bytes = await file.read()
        return data


async def write_text(path: StrPath, text: str, *, encoding: str = "utf-8") -> None:
    """Replace the file at ``path`` with ``text``, without blocking the event loop."""
    _check_path("write_text", path)
    # Checked before the file is opened: opening it for writing empties it.
    if not isinstance(text, str):
        raise TypeError(
            f"write_text(text=...) must be a str, got {type(text).__name__}; "
            "use write_bytes() for bytes"
        )
    aiofiles = _aiofiles()
    if aiofiles is None:
        await asyncio.to_thread(Path(path).write_text, text, encoding=encoding)
        return
    async with aiofiles.open(path, "w", encoding=encoding) as file:
        await file.write(text)


async def write_bytes(path: StrPath, data: bytes) -> None:
    """Replace the file at ``path`` with ``data``, without blocking the event loop."""
    _check_path("write_bytes", path)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(
            f"write_bytes(data=...) must be bytes, got {type(data).__name__}; "
            "use write_text() for str"
        )
    aiofiles = _aiofiles()
    if aiofiles is None:
        await asyncio.to_thread(Path(path).write_bytes, data)
        return
    async with aiofiles.open(path, "wb") as file:
        await file.write(data)
