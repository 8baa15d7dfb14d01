"""MkDocs hooks: README.md as the home page, and an API reference made from the docstrings.

Every public module of act_operator_lib (no ``_``-prefixed part in its path) gets a
page under ``reference/`` rendered by mkdocstrings from its ``__all__``, so a module
added to the package is in the reference without editing anything. Before the build,
every public name is checked: a module, class, function or public method without a
docstring is logged as a warning, which ``mkdocs build --strict`` (``make docs``)
turns into a failure, as it does a broken cross-reference.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PACKAGE = "act_operator_lib"
log = logging.getLogger("mkdocs.hooks.reference")


def public_modules(package: str = PACKAGE) -> list[ModuleType]:
    """The package and each submodule whose dotted path has no ``_``-prefixed part."""
    root = importlib.import_module(package)
    names = [
        info.name
        for info in pkgutil.walk_packages(root.__path__, f"{package}.")
        if not any(part.startswith("_") for part in info.name.split(".")[1:])
    ]
    return [root, *(importlib.import_module(name) for name in sorted(names))]


def home_module(name: str, modules: list[ModuleType]) -> ModuleType:
    """The public submodule whose ``__all__`` has ``name``; else the package itself."""
    for module in modules[1:]:
        if name in getattr(module, "__all__", ()):
            return module
    return modules[0]


def undocumented(module: ModuleType) -> list[str]:
    """The public names of ``module`` (and their public methods) without a docstring."""
    missing = [] if inspect.getdoc(module) else [module.__name__]
    for name in getattr(module, "__all__", ()):
        value = getattr(module, name)
        if not (inspect.isclass(value) or inspect.isroutine(value)):
            continue  # constants and type aliases carry no docstring at run time
        if not _own_docstring(value):
            missing.append(f"{module.__name__}.{name}")
        if inspect.isclass(value):
            missing += [
                f"{module.__name__}.{name}.{member}"
                for member, attribute in vars(value).items()
                if not member.startswith("_") and _is_method(attribute)
                if not _own_docstring(attribute)
            ]
    return missing


def _is_method(attribute: Any) -> bool:
    return isinstance(attribute, property | classmethod | staticmethod) or inspect.isfunction(
        attribute
    )


def _own_docstring(value: Any) -> bool:
    function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
    return bool((getattr(function, "__doc__", None) or "").strip())


def reference_page(module: ModuleType, modules: list[ModuleType]) -> str:
    """The Markdown of ``module``'s reference page."""
    exported = list(getattr(module, "__all__", ()))
    if module is not modules[0]:
        members = exported
        elsewhere: list[str] = []
    else:
        members = [name for name in exported if home_module(name, modules) is module]
        elsewhere = [name for name in exported if name not in members]
    lines = [
        f"# `{module.__name__}`",
        "",
        f"::: {module.__name__}",
        "    options:",
        f"      members: [{', '.join(repr(name) for name in members)}]",
        "",
    ]
    if elsewhere:
        lines += ["## Also exported here", ""]
        lines += [
            f"- [`{name}`][{home_module(name, modules).__name__}.{name}]" for name in elsewhere
        ]
    return "\n".join(lines) + "\n"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Complete the nav: pages of docs/ it does not list yet, then the API reference."""
    nav = list(config.nav or [])
    listed = {
        page for entry in nav for page in (entry.values() if isinstance(entry, dict) else [entry])
    }
    unlisted = sorted(
        path.name for path in Path(config.docs_dir).glob("*.md") if path.name not in listed
    )
    reference = [f"reference/{module.__name__}.md" for module in public_modules()]
    config.nav = [{"Home": "index.md"}, *nav, *unlisted, {"API reference": reference}]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add README.md as the home page and a reference page per public module; check them."""
    readme = Path(config.config_file_path).parent / "README.md"
    home = readme.read_text(encoding="utf-8").replace("](docs/", "](")
    files.append(File.generated(config, "index.md", content=home))
    modules = public_modules()
    for module in modules:
        for name in undocumented(module):
            log.warning("%s is public but has no docstring", name)
        files.append(
            File.generated(
                config,
                f"reference/{module.__name__}.md",
                content=reference_page(module, modules),
            )
        )
    return files
