"""`make demo`: the showcase, on embedded defaults (``make demo ARGS="--items 100"``)."""

from __future__ import annotations

import sys

from examples.showcase.cli import MAKE_DEMO, main

if __name__ == "__main__":
    sys.exit(main(prog=MAKE_DEMO))
