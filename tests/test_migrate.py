"""``python -m act_operator_lib migrate``, run on projects made by the real ``act new``."""

from __future__ import annotations

import io
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from tests._act_scaffold import new_act_project, run_project_tests

from act_operator_lib._migrate import BASE_GRAPH, BASE_NODE
from act_operator_lib._migrate import migrate as run_migration


def migrate(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "act_operator_lib", "migrate", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def snapshot(project: Path) -> dict[str, str]:
    names = ("casts/base_node.py", "casts/base_graph.py", "pyproject.toml")
    return {name: (project / name).read_text() for name in names}


def dependencies(project: Path) -> list[str]:
    return tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return new_act_project(tmp_path)


def test_a_dry_run_prints_the_diff_and_writes_nothing(project: Path) -> None:
    before = snapshot(project)

    done = migrate(project)

    assert done.returncode == 0, done.stderr
    assert "--- a/casts/base_node.py" in done.stdout
    assert "+from act_operator_lib.base_graph import BaseGraph" in done.stdout
    assert '+    "act-operator-lib>=0.1",' in done.stdout
    assert "--apply" in done.stdout
    assert snapshot(project) == before


def test_the_applied_migration_passes_the_project_s_own_tests(project: Path) -> None:
    done = migrate(project, "--apply")
    run = run_project_tests(project)

    assert done.returncode == 0, done.stderr
    assert (project / "casts" / "base_node.py").read_text() == BASE_NODE
    assert (project / "casts" / "base_graph.py").read_text() == BASE_GRAPH
    assert dependencies(project) == [
        "langchain>=1.0.0",
        "langgraph>=1.0.0",
        "act-operator-lib>=0.1",
    ]
    assert run.returncode == 0, run.output
    assert run.passed == 3, run.output


def test_a_second_run_finds_nothing_to_change(project: Path) -> None:
    migrate(project, "--apply")
    after_first = snapshot(project)

    done = migrate(project, "--apply")

    assert done.returncode == 0, done.stderr
    assert "nothing to change" in done.stdout
    assert snapshot(project) == after_first


def test_a_directory_that_is_not_an_act_project_is_refused_naming_what_is_missing(
    tmp_path: Path,
) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n')

    done = migrate(tmp_path, "--apply")

    assert done.returncode == 2
    assert "is not an Act project" in done.stderr
    assert "missing langgraph.json, casts, casts/base_node.py, casts/base_graph.py" in done.stderr
    assert done.stdout == ""


def test_a_base_class_the_project_extended_is_refused_and_left_as_it_is(project: Path) -> None:
    base_node = project / "casts" / "base_node.py"
    extended = base_node.read_text().replace(
        "    def log(self, message: str, **context: Any) -> None:",
        "    def shout(self) -> str:\n        return self.name.upper()\n\n"
        "    def log(self, message: str, **context: Any) -> None:",
        1,
    )
    base_node.write_text(extended)
    before = snapshot(project)

    done = migrate(project, "--apply")

    assert done.returncode == 1
    assert "casts/base_node.py defines BaseNode.shout" in done.stderr
    assert snapshot(project) == before


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        ('dependencies = ["langgraph>=1.0.0"]', ["langgraph>=1.0.0", "act-operator-lib>=0.1"]),
        ("dependencies = []", ["act-operator-lib>=0.1"]),
        ("", ["act-operator-lib>=0.1"]),
    ],
    ids=["one-line list", "empty list", "no dependencies key"],
)
def test_the_dependency_is_added_to_any_layout_of_the_list(
    project: Path, listed: str, expected: list[str]
) -> None:
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    start = text.index("dependencies = [")
    end = text.index("]", start) + 1
    pyproject.write_text(text[:start] + listed + text[end:])

    code = run_migration(project, apply=True, out=io.StringIO())

    assert code == 0
    assert dependencies(project) == expected
    assert tomllib.loads(pyproject.read_text())["tool"]["pytest"]["ini_options"]["testpaths"] == [
        "tests"
    ]


def test_a_dependency_already_listed_under_another_spelling_is_not_added_again(
    project: Path,
) -> None:
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            '"langgraph>=1.0.0",', '"langgraph>=1.0.0",\n    "Act_Operator.Lib",'
        )
    )

    run_migration(project, apply=True, out=io.StringIO())

    assert dependencies(project) == ["langchain>=1.0.0", "langgraph>=1.0.0", "Act_Operator.Lib"]
