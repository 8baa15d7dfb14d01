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


async def read_text(path: StrPath, *, encoding: str = "utf-8") -> str:
    """The text of the file at ``path``, read without blocking the event loop.

    Example::

        content = await read_text(state["input_file"])
    """
    aiofiles = _aiofiles()
    if aiofiles is None:
        return await asyncio.to_thread(Path(path).read_text, encoding=encoding)
    async with aiofiles.open(path, encoding=encoding) as file:
        text: str = await file.read()
        return text


async def read_bytes(path: StrPath) -> bytes:
    """The bytes of the file at ``path``, read without blocking the event loop."""
    aiofiles = _aiofiles()
    if aiofiles is None:
        return await asyncio.to_thread(Path(path).read_bytes)
    async with aiofiles.open(path, "rb") as file:
        data: bytes = await file.read()
        return data


async def write_text(path: StrPath, text: str, *, encoding: str = "utf-8") -> None:
    """Replace the file at ``path`` with ``text``, without blocking the event loop."""
    aiofiles = _aiofiles()
    if aiofiles is None:
        await asyncio.to_thread(Path(path).write_text, text, encoding=encoding)
        return
    async with aiofiles.open(path, "w", encoding=encoding) as file:
        await file.write(text)


async def write_bytes(path: StrPath, data: bytes) -> None:
    """Replace the file at ``path`` with ``data``, without blocking the event loop."""
    aiofiles = _aiofiles()
    if aiofiles is None:
        await asyncio.to_thread(Path(path).write_bytes, data)
        return
    async with aiofiles.open(path, "wb") as file:
        await file.write(data)
