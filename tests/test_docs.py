"""Every ```python block of README.md and docs/*.md runs as written.

A page is one test: its blocks run in order in one namespace, in a fresh
``python -W error`` subprocess with the repo root as cwd (tests/_doc_runner.py), with
top-level ``await`` on one event loop. A block preceded by ``<!-- fragment: reason
-->`` is only compiled. A page whose blocks use Redis or PostgreSQL runs against the
servers on 127.0.0.1, and is skipped (failed under CI=true) when they are down.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from _doc_runner import PageError, extract_blocks
from conftest import require_service

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SERVICES = {"redis": ("Redis", 6379), "postgres": ("PostgreSQL", 5432)}
RUNNER = Path(__file__).resolve().parent / "_doc_runner.py"


def run_page(page: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the page's blocks in a fresh interpreter, as CI does."""
    return subprocess.run(
        [sys.executable, "-W", "error", str(RUNNER), str(page.relative_to(cwd))],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_python_block_of_the_page_runs_as_written(page: Path) -> None:
    blocks = extract_blocks(page.read_text(encoding="utf-8"))
    runnable = "".join(block.source for block in blocks if not block.fragment).lower()
    for word, (name, port) in SERVICES.items():
        if word in runnable:
            require_service(name, "127.0.0.1", port)
    result = run_page(page)
    assert result.returncode == 0, result.stderr


def write_testing_page_project(directory: Path, asyncio_mode: str = "as shown") -> int:
    """The testing page's tests as a fresh project's test module; returns how many."""
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    (configuration,) = extract_blocks(text, languages=frozenset({"toml"}))
    toml = configuration.source
    if asyncio_mode != "as shown":
        toml = toml.replace('asyncio_mode = "auto"', f'asyncio_mode = "{asyncio_mode}"')
    (directory / "pyproject.toml").write_text(toml, encoding="utf-8")
    module = ""
    for block in extract_blocks(text):
        assert not block.fragment, f"docs/testing.md: the block at line {block.line}"
        module += "\n" * (block.line - module.count("\n")) + block.source
    (directory / "test_testing_page.py").write_text(module, encoding="utf-8")
    return sum(
        isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name.startswith("test")
        for node in ast.parse(module).body
    )


def run_pytest(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-W", "error", "-p", "no:cacheprovider", "-q"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def test_the_testing_page_tests_pass_under_pytest_with_the_configuration_it_shows(
    tmp_path: Path,
) -> None:
    tests = write_testing_page_project(tmp_path)
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"\b{tests} passed\b", result.stdout), result.stdout


def test_the_testing_page_tests_fail_in_pytest_asyncio_strict_mode_as_it_says(
    tmp_path: Path,
) -> None:
    write_testing_page_project(tmp_path, asyncio_mode="strict")
    result = run_pytest(tmp_path)
    assert result.returncode == 1
    # Which tests pytest itself refuses, and how, differs by Python version (3.12's
    # looptime plugin trips over a deprecation first); the kit's hint is always there.
    assert 'set asyncio_mode = "auto" under [tool.pytest.ini_options]' in result.stdout
    assert 'an async test needs pytest-asyncio to run it: set asyncio_mode = "auto"' in (
        result.stdout
    )


def write_page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def test_a_failing_block_is_reported_with_the_page_and_its_line(tmp_path: Path) -> None:
    page = write_page(tmp_path, "# Title\n\n```python\nx = 1\n```\n\n```python\n\n1 / 0\n```\n")
    result = run_page(page, cwd=tmp_path)
    assert result.returncode == 1
    assert "page.md: the block at line 7 failed" in result.stderr
    assert 'File "page.md", line 9' in result.stderr
    assert "ZeroDivisionError" in result.stderr


def test_blocks_of_a_page_share_one_namespace_and_await_at_top_level(tmp_path: Path) -> None:
    page = write_page(
        tmp_path,
        "```python\nimport asyncio\nvalue = await asyncio.sleep(0, result=41)\n```\n"
        "text\n```python\nassert value + 1 == 42\nassert await asyncio.sleep(0, 1)\n```\n",
    )
    result = run_page(page, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_fragment_is_compiled_but_not_run(tmp_path: Path) -> None:
    page = write_page(tmp_path, "<!-- fragment: shows a failure -->\n```python\n1 / 0\n```\n")
    result = run_page(page, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_fragment_with_a_syntax_error_fails(tmp_path: Path) -> None:
    page = write_page(tmp_path, "<!-- fragment: shows a call -->\n```python\ncall(\n```\n")
    result = run_page(page, cwd=tmp_path)
    assert result.returncode == 1
    assert "SyntaxError" in result.stderr


def test_a_fragment_marker_without_a_reason_fails() -> None:
    with pytest.raises(PageError, match="line 2: a fragment marker needs a reason"):
        extract_blocks("<!-- fragment -->\n```python\nx = 1\n```\n")


def test_a_block_that_leaves_a_task_exception_unretrieved_fails(tmp_path: Path) -> None:
    page = write_page(
        tmp_path,
        "```python\nimport asyncio\nasync def fail():\n    raise ValueError('lost')\n\n"
        "task = asyncio.ensure_future(fail())\nawait asyncio.sleep(0)\ndel task\n```\n",
    )
    result = run_page(page, cwd=tmp_path)
    assert result.returncode == 1
    assert "Task exception was never retrieved: ValueError('lost')" in result.stderr


def test_a_block_that_leaves_a_file_open_fails(tmp_path: Path) -> None:
    page = write_page(tmp_path, "```python\nhandle = open('page.md')\ndel handle\n```\n")
    result = run_page(page, cwd=tmp_path)
    assert result.returncode == 1
    assert "ResourceWarning" in result.stderr


def test_a_block_that_leaves_a_warning_fails(tmp_path: Path) -> None:
    page = write_page(
        tmp_path, "```python\nimport warnings\nwarnings.warn('old', DeprecationWarning)\n```\n"
    )
    result = run_page(page, cwd=tmp_path)
    assert result.returncode == 1
    assert "DeprecationWarning: old" in result.stderr


# the API reference (docs/hooks.py, built by `make docs`)


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks


def test_every_public_name_has_a_docstring() -> None:
    hooks = load_hooks()
    missing = [name for module in hooks.public_modules() for name in hooks.undocumented(module)]
    assert missing == []


def test_a_public_function_or_method_without_a_docstring_is_found() -> None:
    hooks = load_hooks()
    module = ModuleType("package.module", "A module.")

    def documented() -> None:
        """Do a thing."""

    def bare() -> None:
        pass

    class Thing:
        """A thing."""

        def method(self) -> None:
            pass

        def _private(self) -> None:
            pass

    module.__dict__.update(documented=documented, bare=bare, Thing=Thing)
    module.__all__ = ["Thing", "bare", "documented"]  # type: ignore[attr-defined]

    assert hooks.undocumented(module) == ["package.module.Thing.method", "package.module.bare"]


def test_the_reference_documents_every_name_the_package_exports() -> None:
    hooks = load_hooks()
    modules = hooks.public_modules()
    pages = "".join(hooks.reference_page(module, modules) for module in modules)
    for module in modules:
        for name in module.__all__:
            home = hooks.home_module(name, modules)
            assert name in hooks.reference_page(home, modules).split("members:")[1]
            assert f"::: {home.__name__}\n" in pages


def test_a_broken_cross_reference_fails_the_strict_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "page.md").write_text("# Page\n\nSee [the limiter][act_operator_lib.NoSuchName].\n")
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    config = config.replace("docs_dir: docs", f"docs_dir: {docs}").replace(
        "  - docs/hooks.py", f"  - {ROOT / 'docs' / 'hooks.py'}"
    )
    config = config.replace("paths: [src]", f"paths: [{ROOT / 'src'}]")
    config = config.split("nav:")[0] + "plugins:" + config.split("plugins:")[1]
    (tmp_path / "mkdocs.yml").write_text(config, encoding="utf-8")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")

    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )

    assert result.returncode == 1
    assert "act_operator_lib.NoSuchName" in result.stderr
