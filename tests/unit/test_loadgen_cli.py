"""`gameday load` refuses bad input before any load (exit 2); imports stay gevent-free."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from experiments.cmd_load import load


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it any more


@pytest.fixture(scope="module")
def listening() -> Iterator[str]:
    """A host that accepts TCP connections (the checks fail before any request)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(load, args)
    return result.exit_code, result.output


def test_an_unreachable_host_is_refused_before_the_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    host = f"http://127.0.0.1:{_closed_port()}"
    code, output = _invoke(["--host", host, "--users", "1", "--duration", "1", "--out", str(out)])
    assert code == 2
    assert f"gameday: error: --host: '{host}' is not reachable" in output
    assert "no load was sent" in output
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--users", "0", "--duration", "1"], "--users: must be a positive integer, got 0"),
        (["--users", "2", "--duration", "0"], "--duration: must be a number of seconds > 0, got 0"),
        (["--duration", "1"], "users: not set"),
        (["--users", "1"], "duration_s: not set"),
        (["--users", "1", "--duration", "1", "--workers", "-1"], "--workers: must be 0 or more"),
        (["--users", "1", "--duration", "1", "--weight", "reads=1"], "--weight: expected KIND="),
        (["--users", "1", "--duration", "1", "--rate", "write=-2"], "--rate: write: must be a"),
        (
            ["--users", "1", "--duration", "1", "--prometheus-sd-file", "sd.json"],
            "--prometheus-sd-file: needs --metrics-port",
        ),
        (
            ["--users", "1", "--duration", "1", "--weight", "predict=0", "--weight", "write=0"],
            "every weight is 0",
        ),
    ],
    ids=[
        "zero-users",
        "zero-duration",
        "no-users",
        "no-duration",
        "negative-workers",
        "unknown-kind",
        "negative-rate",
        "sd-file-without-port",
        "no-traffic",
    ],
)
def test_bad_options_exit_2(listening: str, tmp_path: Path, args: list[str], expected: str) -> None:
    out = tmp_path / "out"
    code, output = _invoke(["--host", listening, "--out", str(out), *args])
    assert code == 2, output
    assert expected in output
    assert not out.exists()


def test_a_bad_host_url_exits_2(tmp_path: Path) -> None:
    code, output = _invoke(
        ["--host", "127.0.0.1:8080", "--users", "1", "--duration", "1", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "--host: expected an http(s) URL" in output


def test_a_bad_profile_file_exits_2_naming_file_and_field(listening: str, tmp_path: Path) -> None:
    profile = tmp_path / "load.yaml"
    profile.write_text("users: 5\nmix:\n  write: {weight: lots}\n")
    code, output = _invoke(
        ["--host", listening, "--profile", str(profile), "--duration", "1", "--out", str(tmp_path)]
    )
    assert code == 2
    assert f"{profile}: mix.write.weight: must be an integer >= 0, got 'lots'" in output


def test_a_bad_golden_file_exits_2(listening: str, tmp_path: Path) -> None:
    golden = tmp_path / "golden.json"
    golden.write_text("{not json")
    code, output = _invoke(
        [
            *("--host", listening, "--users", "1", "--duration", "1"),
            *("--out", str(tmp_path / "o"), "--golden", str(golden)),
        ]
    )
    assert code == 2
    assert f"{golden}: golden file is not valid JSON" in output


def test_importing_the_runner_and_the_command_does_not_import_locust_or_gevent() -> None:
    code = (
        "import sys, loadgen, loadgen.runner, loadgen.profile, loadgen.timeline, loadgen.stub, "
        "loadgen.metrics, loadgen.cpu, loadgen.payload, loadgen.errors, experiments.cmd_load\n"
        "bad = [m for m in ('gevent', 'locust') if m in sys.modules]\n"
        "sys.exit(f'imported: {bad}' if bad else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
