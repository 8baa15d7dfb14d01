"""``python -m act_operator_lib migrate PATH``: move an Act project onto this library.

An Act Operator project (``act new``) carries its own copies of the base classes in
``casts/base_node.py`` and ``casts/base_graph.py``. The migration turns both into
re-exports of this library's classes, so every ``from casts.base_node import
BaseNode`` in the project keeps working, and adds ``act-operator-lib`` to the
dependencies in ``pyproject.toml``. It shows a unified diff and writes nothing
unless ``--apply`` is given; a second run finds nothing to change.
"""

from __future__ import annotations

import ast
import difflib
import re
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TextIO

__all__ = ["MigrationRefused", "NotAnActProject", "migrate", "plan_migration"]

DEPENDENCY = "act-operator-lib"
_REQUIRED = (
    "pyproject.toml",
    "langgraph.json",
    "casts",
    "casts/base_node.py",
    "casts/base_graph.py",
)
_HEADER = '''"""{what}: act-operator-lib's, re-exported so ``from casts.{module} import ...`` works.

Written by ``python -m act_operator_lib migrate``; the library's docs/migrating.md
says what the classes add over Act Operator's originals.
"""

'''
BASE_NODE = _HEADER.format(what="Base classes of the nodes", module="base_node") + (
    "from act_operator_lib.base_node import AsyncBaseNode, BaseNode\n"
    "\n"
    '__all__ = ["AsyncBaseNode", "BaseNode"]\n'
)
BASE_GRAPH = _HEADER.format(what="Base class of the graphs", module="base_graph") + (
    'from act_operator_lib.base_graph import BaseGraph\n\n__all__ = ["BaseGraph"]\n'
)

# What Act Operator's scaffold defines in each file: anything else was added by the
# project, and replacing the file would drop it.
_SCAFFOLD_NAMES = {
    "casts/base_node.py": {
        "__all__": set(),
        "LOGGER": set(),
        "_ALLOWED_PARAMS": set(),
        "_validate_execute": set(),
        "_build_kwargs": set(),
        "BaseNode": {"execute", "__init__", "__init_subclass__", "__call__", "log"}
        | {"get_thread_id", "get_tags"},
        "AsyncBaseNode": {"execute", "__init__", "__init_subclass__", "__call__", "log"}
        | {"get_thread_id", "get_tags"},
    },
    "casts/base_graph.py": {"BaseGraph": {"__init__", "build", "__call__"}},
}
_REPLACEMENTS = {"casts/base_node.py": BASE_NODE, "casts/base_graph.py": BASE_GRAPH}


class NotAnActProject(Exception):
    """The directory lacks what ``act new`` creates."""


class MigrationRefused(Exception):
    """A file cannot be migrated without losing something; the message says what."""


@dataclass(frozen=True)
class Change:
    """One file's text before and after the migration."""

    path: str
    before: str
    after: str

    def diff(self) -> str:
        """The change as a unified diff, paths relative to the project."""
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                fromfile=f"a/{self.path}",
                tofile=f"b/{self.path}",
            )
        )


def plan_migration(project: Path) -> list[Change]:
    """The changes the migration makes to ``project`` (empty once it is migrated)."""
    missing = [name for name in _REQUIRED if not (project / name).exists()]
    if missing:
        raise NotAnActProject(
            f"{project} is not an Act project (made by Act Operator's `act new`): "
            f"missing {', '.join(missing)}"
        )
    changes = []
    for name, replacement in _REPLACEMENTS.items():
        before = (project / name).read_text(encoding="utf-8")
        if before != replacement:
            _check_nothing_added(name, before)
            changes.append(Change(name, before, replacement))
    pyproject = (project / "pyproject.toml").read_text(encoding="utf-8")
    with_dependency = _add_dependency(pyproject)
    if with_dependency != pyproject:
        changes.append(Change("pyproject.toml", pyproject, with_dependency))
    return changes


def migrate(project: Path, *, apply: bool, out: TextIO) -> int:
    """Print the migration of ``project`` as a diff, write it if ``apply``; an exit code."""
    try:
        changes = plan_migration(project)
    except NotAnActProject as error:
        print(f"migrate: {error}", file=sys.stderr)
        return 2
    except MigrationRefused as error:
        print(f"migrate: {error}", file=sys.stderr)
        return 1
    if not changes:
        print(f"{project} already uses act-operator-lib: nothing to change.", file=out)
        return 0
    for change in changes:
        out.write(change.diff())
    if not apply:
        print(
            f"\nDry run: {len(changes)} file(s) would change. "
            "Run again with --apply to write them.",
            file=out,
        )
        return 0
    for change in changes:
        (project / change.path).write_text(change.after, encoding="utf-8")
    print(
        f"\nWrote {', '.join(change.path for change in changes)}. Install the new "
        f"dependency (`uv sync` or `pip install {DEPENDENCY}`), then run the tests.",
        file=out,
    )
    return 0


def _check_nothing_added(name: str, text: str) -> None:
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        raise MigrationRefused(f"{name} does not parse ({error}); fix it, then migrate") from error
    scaffold = _SCAFFOLD_NAMES[name]
    added = []
    for statement in tree.body:
        for defined, members in _definitions(statement):
            if defined not in scaffold:
                added.append(defined)
            else:
                added.extend(
                    f"{defined}.{member}" for member in members if member not in scaffold[defined]
                )
    if added:
        raise MigrationRefused(
            f"{name} defines {', '.join(added)}, which Act Operator's scaffold does not: "
            "replacing the file would drop it. Move it to a module of its own (a subclass "
            "of the library's class, if it extends one), then migrate again"
        )


def _definitions(statement: ast.stmt) -> list[tuple[str, list[str]]]:
    """The top-level names ``statement`` defines, each with its class body's names."""
    if isinstance(statement, ast.ClassDef):
        members = [
            member.name
            for member in statement.body
            if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        return [(statement.name, members)]
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
        return [(statement.name, [])]
    targets: list[ast.expr] = []
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, ast.AnnAssign):
        targets = [statement.target]
    return [(target.id, []) for target in targets if isinstance(target, ast.Name)]


def _add_dependency(text: str) -> str:
    """``text`` with act-operator-lib in ``[project] dependencies``, formatting kept."""
    project = tomllib.loads(text).get("project", {})
    requirements = project.get("dependencies", [])
    if any(_requirement_name(requirement) == DEPENDENCY for requirement in requirements):
        return text
    major, minor = metadata.version(DEPENDENCY).split(".")[:2]
    requirement = f'"{DEPENDENCY}>={major}.{minor}"'
    # Edited as text (the file's comments and layout are the project's), then checked
    # by parsing it again: a layout this does not recognise is left to the user.
    table = re.search(r"(?ms)^\[project\][ \t]*\n(.*?)(?=^\[|\Z)", text)
    if table is None:
        raise MigrationRefused("pyproject.toml has no [project] table; add one, then migrate")
    body_start, body_end = table.span(1)
    body = text[body_start:body_end]
    listed = re.search(r"(?ms)^dependencies[ \t]*=[ \t]*\[(.*?)\]", body)
    if listed is None:
        new_body = f"dependencies = [{requirement}]\n" + body
    else:
        items = listed.group(1)
        if not items.strip():
            inserted = requirement
        elif "\n" in items:
            indent = re.search(r"\n([ \t]*)\S", items)
            padding = indent.group(1) if indent else "    "
            kept = items.rstrip()
            separator = "" if kept.endswith(",") else ","
            inserted = f"{kept}{separator}\n{padding}{requirement},\n"
        else:
            inserted = f"{items.rstrip().rstrip(',')}, {requirement}"
        new_body = body[: listed.start(1)] + inserted + body[listed.end(1) :]
    result = text[:body_start] + new_body + text[body_end:]
    written = tomllib.loads(result).get("project", {}).get("dependencies", [])
    if written != [*requirements, requirement.strip('"')]:
        raise MigrationRefused(
            f"could not add {requirement} to [project] dependencies in pyproject.toml; "
            "add it by hand, then migrate again"
        )
    return result


def _requirement_name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    return re.sub(r"[-_.]+", "-", name.group(0)).lower() if name else ""
