"""The house rules of DESIGN section 1 that a test can hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_editable_install_exposes_our_packages_from_this_repo() -> None:
    import experiments
    import infra
    import loadgen
    import probes
    import scorecards

    for module in (experiments, infra, loadgen, probes, scorecards):
        assert module.__file__ is not None
        assert Path(module.__file__).resolve().is_relative_to(REPO), module.__file__


def test_gevent_is_not_imported_outside_loadgen() -> None:
    code = (
        "import sys, infra, infra.local.world, infra.local.faults, infra.local.service, "
        "probes, scorecards, experiments, experiments.cli\n"
        "bad = [m for m in ('gevent', 'locust') if m in sys.modules]\n"
        "sys.exit(f'imported: {bad}' if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_infra_imports_nothing_of_ours_but_itself() -> None:
    offenders = []
    for path in (REPO / "infra").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and any(
                f" {pkg}" in stripped.split(" import ")[0] + " "
                and stripped.split()[1].split(".")[0] == pkg
                for pkg in ("probes", "loadgen", "scorecards", "experiments")
            ):
                offenders.append(f"{path.relative_to(REPO)}: {stripped}")
    assert offenders == []
