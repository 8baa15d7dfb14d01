"""The public API has one rule: every public class and function is exported at the top,
has one home (a public module listing it, named by its ``__module__``), and ``__all__``
lists are sorted."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from importlib import metadata
from types import ModuleType

import pytest

import act_operator_lib
from act_operator_lib._public import is_private

OPT_IN = ("act_operator_lib.testing", "act_operator_lib.integrations")
"""Separate imports, not re-exported at the top: the test kit and the adapters."""


def public_modules() -> list[ModuleType]:
    names = [
        info.name
        for info in pkgutil.walk_packages(act_operator_lib.__path__, "act_operator_lib.")
        if not is_private(info.name) and info.name != "act_operator_lib.testing.pytest_plugin"
    ]
    return [importlib.import_module(name) for name in sorted(names)]


def exported(module: ModuleType) -> dict[str, object]:
    """The classes and functions ``module`` lists in ``__all__``."""
    values = {name: getattr(module, name) for name in getattr(module, "__all__", ())}
    return {
        name: value
        for name, value in values.items()
        if inspect.isclass(value) or inspect.isfunction(value)
    }


@pytest.mark.parametrize(
    "module", [act_operator_lib, *public_modules()], ids=lambda module: module.__name__
)
def test_all_is_sorted(module: ModuleType) -> None:
    # As ruff's RUF022 sorts: CONSTANTS, then Classes, then functions.
    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    names = list(getattr(module, "__all__", []))
    assert names == sorted(names, key=kind)


def test_every_public_class_and_function_is_exported_at_the_top() -> None:
    missing = {
        f"{module.__name__}.{name}"
        for module in public_modules()
        if not module.__name__.startswith(OPT_IN)
        for name, value in exported(module).items()
        if getattr(act_operator_lib, name, None) is not value
        or name not in act_operator_lib.__all__
    }
    assert missing == set()


def test_every_public_name_has_one_home_that_its_module_attribute_names() -> None:
    wrong = set()
    for module in [act_operator_lib, *public_modules()]:
        for name, value in exported(module).items():
            home = importlib.import_module(value.__module__)  # type: ignore[attr-defined]
            if is_private(home.__name__) or name not in home.__all__:
                wrong.add(f"{module.__name__}.{name}: __module__ {home.__name__}")
    assert wrong == set()


def test_no_name_is_listed_by_two_public_modules_besides_the_top() -> None:
    listed: dict[str, list[str]] = {}
    for module in public_modules():
        for name in exported(module):
            listed.setdefault(name, []).append(module.__name__)
    assert {name: homes for name, homes in listed.items() if len(homes) > 1} == {}


def test_every_statistics_type_is_exported_at_the_top() -> None:
    statistics = {
        name
        for module in public_modules()
        for name in exported(module)
        if name.endswith("Statistics")
    }
    assert statistics <= set(act_operator_lib.__all__)
    assert {"NodeStatistics", "LimiterStatistics", "ResourceStatistics"} <= statistics


def test_an_error_pickles_by_its_public_name() -> None:
    error = act_operator_lib.NodeTimeoutError("Slow", 1.0)
    data = pickle.dumps(error)
    assert b"act_operator_lib._errors" not in data
    assert str(pickle.loads(data)) == str(error)


def test_the_version_comes_from_the_package_metadata() -> None:
    assert act_operator_lib.__version__ == metadata.version("act-operator-lib")
