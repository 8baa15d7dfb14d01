"""`make demo`: runs the quick-start graph (the showcase replaces this)."""

from __future__ import annotations

import asyncio

from examples.quickstart import main

if __name__ == "__main__":
    asyncio.run(main())
