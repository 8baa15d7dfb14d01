"""The import rules of docs/design.md hold: contracts in pyproject.toml, run by import-linter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_contract_in_pyproject_is_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_module_imports_the_package_root() -> None:
    # The root re-exports every module, so a module importing it depends on all of them.
    graph = grimp.build_graph("act_operator_lib", cache_dir=None)
    assert graph.find_modules_that_directly_import("act_operator_lib") == set()
