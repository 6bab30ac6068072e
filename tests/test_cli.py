"""The CLI shell: version, one-line errors with exit status 2, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import motion_relevance as mr
from motion_relevance.cli import main

SCRIPT = Path(sys.executable).with_name("motion-relevance")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "motion_relevance.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, env=os.environ)


def test_version_from_the_console_script() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"motion-relevance {mr.__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        ["no-such-command"],
        [],
        ["weights"],
        ["weights", "fetch", "no-such-model"],
        ["--bogus-flag"],
    ],
)
def test_bad_invocations_print_one_error_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_errors_from_a_real_process_have_no_traceback() -> None:
    done = run_cli("no-such-command")
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert done.stdout == ""


def test_every_documented_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("demo", "methods", "models", "weights"):
        assert name in out
