"""A project made by Act Operator's own CLI (``act new``), and its own test suite.

`new_act_project` runs the real ``act new`` of the ``act-operator`` package (a dev
dependency) into a directory; `run_project_tests` runs the project's tests with this
virtual environment's Python, so they import this checkout of the library.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ACT = Path(sys.executable).parent / "act"


def require_act_cli() -> None:
    """Skip (or, under CI=true, fail) when Act Operator's CLI is not installed."""
    if ACT.exists():
        return
    message = "Act Operator's CLI is not installed (pip install 'act-operator==0.7.2')"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {message}")
    pytest.skip(message)


def new_act_project(parent: Path) -> Path:
    """``act new`` with every answer given as a flag, so it never prompts."""
    require_act_cli()
    done = subprocess.run(
        [
            str(ACT),
            "new",
            "--path",
            str(parent / "my-act"),
            "--act-name",
            "My Act",
            "--cast-name",
            "Main Cast",
            "--lang",
            "en",
        ],
        cwd=parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    project = parent / "my-act"
    assert (project / "casts" / "base_node.py").is_file(), done.stdout
    return project


@dataclass(frozen=True)
class TestRun:
    """How a project's own test suite went."""

    returncode: int
    passed: int
    output: str


def run_project_tests(project: Path) -> TestRun:
    """The project's tests, in a fresh interpreter, warnings as errors.

    The scaffold leaves pytest-asyncio's fixture loop scope unset, which that plugin
    warns about at start-up: that one warning is the project's to fix, not ours.
    """
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")
    }
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "-W",
            "ignore::pytest.PytestDeprecationWarning",
        ],
        cwd=project,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    output = done.stdout + done.stderr
    counted = re.search(r"(\d+) passed", output)
    return TestRun(done.returncode, int(counted.group(1)) if counted else 0, output)


def run_in_project(project: Path, code: str) -> str:
    """Run ``code`` with the project on the path (as its pytest config does); its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project), "PYTHONDONTWRITEBYTECODE": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
