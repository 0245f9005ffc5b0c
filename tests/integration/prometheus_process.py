"""A real Prometheus for integration tests: one scrape target, a private folder, reaped."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import stop_processes

PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_prometheus(base: Path, job: str, target: str, scrape: float = 1.0) -> Iterator[str]:
    """Start Prometheus scraping `target` every `scrape` seconds; yields its URL.

    Stopped (SIGTERM, then SIGKILL) and reaped on every exit path.
    """
    assert PROMETHEUS is not None, "prometheus is not installed"
    port = free_port()
    (base / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: {scrape:g}s\n  scrape_timeout: 800ms\n"
        f"  evaluation_interval: {scrape:g}s\n"
        f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    with (base / "prometheus.log").open("w") as log:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={base / 'prometheus.yml'}",
                f"--storage.tsdb.path={base / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_processes([proc])
