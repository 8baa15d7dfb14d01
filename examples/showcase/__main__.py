"""``python -m examples.showcase``: see `examples.showcase.cli`."""

import sys

from examples.showcase.cli import main

sys.exit(main())
