"""Run the benchmarks: ``python -m benchmarks [name ...]`` (``make bench``).

Each ``benchmarks/bench_<name>.py`` has ``main() -> str`` that runs its comparison
side by side in one process and returns a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from pathlib import Path


def machine() -> str:
    """One line describing where the figures were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def main(argv: list[str]) -> None:
    wanted = set(argv)
    here = Path(__file__).parent
    names = sorted(path.stem for path in here.glob("bench_*.py"))
    print(f"Machine: {machine()}\n")
    for name in names:
        if wanted and name.removeprefix("bench_") not in wanted and name not in wanted:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        print(module.main(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
