"""The ``corral`` command's help and argument errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import corral
from corral.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``corral *argv`` in this process: (exit status, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --help, --version and usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_help_names_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    assert "usage: corral" in out
    assert "demo" in out
    assert "bench" in out
    assert "corral COMMAND --help" in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys)
    assert code == 2
    assert out == ""
    assert "usage: corral" in err
    assert "demo" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"corral {corral.__version__}"


def test_demo_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "demo", "--help")
    assert code == 0
    for option in (
        "--requests",
        "--concurrency",
        "--users",
        "--db-limit",
        "--flavor",
        "--db",
        "--json",
        "--query-ms",
        "--cache-ttl-ms",
        "--seed",
    ):
        assert option in out, option
    assert "{asyncio,threads}" in out
    assert "(default: 2000)" in out  # defaults are shown
    assert "Group" in out
    assert "SingleFlight" in out
    assert "Semaphore" in out


def test_bench_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "bench", "--help")
    assert code == 0
    for option in ("--quick", "--only", "--loop", "--json", "--repeat", "--list"):
        assert option in out, option
    assert "missing" in out  # what happens to a peer that is not installed


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["demo", "--requests", "0"], "--requests"),
        (["demo", "--requests", "many"], "--requests"),
        (["demo", "--concurrency", "-3"], "--concurrency"),
        (["demo", "--users", "1.5"], "--users"),
        (["demo", "--db-limit", "0"], "--db-limit"),
        (["demo", "--flavor", "gevent"], "--flavor"),
        (["demo", "--query-ms", "nan"], "--query-ms"),
        (["demo", "--cache-ttl-ms", "-1"], "--cache-ttl-ms"),
        (["demo", "--no-such-option"], "--no-such-option"),
        (["demo", "extra"], "extra"),
        (["bench", "--loop", "trio"], "--loop"),
        (["bench", "--repeat", "0"], "--repeat"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(
    capsys: pytest.CaptureFixture[str], argv: list[str], names: str
) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "error:" in err
    assert names in err
    assert err.startswith("usage: corral")


def test_db_that_is_a_directory_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "demo", "--db", str(tmp_path))
    assert code == 2
    assert "--db" in err
    assert "directory" in err


def test_db_in_a_missing_directory_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "demo", "--db", str(tmp_path / "nope" / "x.db"))
    assert code == 2
    assert "does not exist" in err


def test_db_that_is_not_a_demo_database_is_left_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("not a database\n")
    code, _, err = run_cli(capsys, "demo", "--db", str(other), "--requests", "5")
    assert code == 2
    assert "--db" in err
    assert "not a corral demo database" in err
    assert other.read_text() == "not a database\n"


def test_python_dash_m_and_console_script() -> None:
    """``python -m corral`` and the installed ``corral`` script reach the same parser."""
    module = subprocess.run(
        [sys.executable, "-m", "corral", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert module.returncode == 0, module.stderr
    assert module.stdout.startswith("usage: corral demo")

    script = Path(sys.executable).parent / "corral"
    assert script.exists(), f"console script not installed next to {sys.executable}"
    bad = subprocess.run(
        [str(script), "demo", "--requests", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "argument --requests: must be at least 1, got 0" in bad.stderr
