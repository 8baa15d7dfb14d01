"""The demo's command line: argparse's messages for bad numbers, its real name, honest rows."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from examples.showcase.cli import MAKE_DEMO, Options, parse_arguments, run_showcase
from examples.showcase.server import ServerProfile
from rich.console import Console

REPOSITORY = Path(__file__).resolve().parent.parent


def command(module: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_rate_0_gets_argparse_s_message_and_exit_status_2_not_a_traceback() -> None:
    done = command("examples.demo", "--rate", "0")

    assert done.returncode == 2
    assert "make demo: error: argument --rate: must be a number above 0, got '0'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("flag", "value", "wanted"),
    [
        ("--rate", "-5", "a number above 0"),
        ("--rate", "nan", "a number above 0"),
        ("--rate", "inf", "a number above 0"),
        ("--rate", "fast", "a number above 0"),
        ("--request-timeout", "0", "a number above 0"),
        ("--concurrency", "0", "a whole number above 0"),
        ("--items", "0", "a whole number above 0"),
        ("--items", "1.5", "a whole number above 0"),
    ],
)
def test_every_bad_number_gets_argparse_s_message(
    flag: str, value: str, wanted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_arguments([flag, value], prog=MAKE_DEMO)

    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"make demo: error: argument {flag}: must be {wanted}, got {value!r}" in error


def test_make_demo_help_shows_how_make_demo_takes_the_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["--help"], prog=MAKE_DEMO)

    shown = capsys.readouterr().out
    assert shown.startswith('usage: make demo ARGS="[-h] [--items N]')
    assert "python -m examples.showcase" not in shown


def test_the_showcase_module_help_shows_its_own_program_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["--help"])

    assert capsys.readouterr().out.startswith("usage: python -m examples.showcase [-h]")


async def test_the_retried_row_names_the_reasons_retried_with_their_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    # With this seed the first 40 answers include 500s and 503s; no hang, no 429.
    profile = ServerProfile(
        latency_median=0.002,
        latency_p99=0.02,
        error_rate=0.15,
        unavailable_rate=0.05,
        retry_after=0.05,
        hang_rate=0.0,
        limit=200,
        seed=7,
    )
    output = io.StringIO()

    outcome = await run_showcase(
        Options(items=40, rate=180, concurrency=8, request_timeout=2.0),
        profile=profile,
        console=Console(file=output, width=200),
    )

    assert outcome.exit_code == 0, output.getvalue()
    assert outcome.server is not None
    statuses = outcome.server.statuses
    # Every error answer was retried; a request this busy machine was too slow for
    # (over 2 s) would be retried too, and named as a timeout.
    seen = {str(status): count for status, count in statuses.items() if status != 200}
    timed_out = outcome.summary["fetch"]["timed_out"]
    if timed_out:
        seen["timeout"] = timed_out
    assert outcome.retry_reasons == seen
    assert {"500", "503"} <= set(seen)
    named = [f"{reason} ({count})" for reason, count in sorted(seen.items())]
    expected = f"ok after a {', '.join(named[:-1])} or {named[-1]}"
    row = next(line for line in output.getvalue().splitlines() if "retried" in line)
    assert re.search(re.escape(expected), row), row
    assert "429" not in row
