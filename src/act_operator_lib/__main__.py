"""Command line of act-operator-lib: ``python -m act_operator_lib migrate PATH``.

``migrate`` turns an Act Operator project's ``casts/base_node.py`` and
``casts/base_graph.py`` into re-exports of this library and adds the dependency;
it prints the diff and writes only with ``--apply`` (see docs/migrating.md)::

    python -m act_operator_lib migrate path/to/my-act           # shows the diff
    python -m act_operator_lib migrate path/to/my-act --apply   # writes it
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from act_operator_lib._migrate import migrate


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m act_operator_lib", description="act-operator-lib tools."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    migration = commands.add_parser(
        "migrate",
        help="move an Act Operator project onto act-operator-lib",
        description=(
            "Turn an Act project's casts/base_node.py and casts/base_graph.py into "
            "re-exports of act-operator-lib and add it to pyproject.toml's dependencies. "
            "Prints the diff; writes nothing without --apply."
        ),
    )
    migration.add_argument("path", type=Path, help="the Act project (where langgraph.json is)")
    migration.add_argument("--apply", action="store_true", help="write the changes")
    arguments = parser.parse_args(argv)
    return migrate(arguments.path, apply=arguments.apply, out=sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
