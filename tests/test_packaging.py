"""pyproject.toml's Python versions: no upper cap, classifiers are the versions CI runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

REPOSITORY = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]


def classified_versions() -> list[str]:
    prefix = "Programming Language :: Python :: "
    return [
        classifier.removeprefix(prefix)
        for classifier in PROJECT["classifiers"]
        if re.fullmatch(r"3\.\d+", classifier.removeprefix(prefix))
    ]


def test_requires_python_admits_every_release_from_3_11_on() -> None:
    supported = SpecifierSet(PROJECT["requires-python"])

    assert "3.10.14" not in supported
    for version in ("3.11.0", "3.13.9", "3.14.0", "3.15.0", "3.20.1"):
        assert version in supported, version


def test_the_classifiers_list_the_tested_versions() -> None:
    assert classified_versions() == ["3.11", "3.12", "3.13"]


def test_ci_runs_the_suite_on_every_classified_version_after_the_first() -> None:
    script = (REPOSITORY / ".ci" / "run").read_text()
    loop = re.search(r"^for version in ([\d. ]+); do$", script, re.MULTILINE)

    assert loop is not None
    assert set(classified_versions()[1:]) <= set(loop.group(1).split())
