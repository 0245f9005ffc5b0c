"""Run every benchmark module and rewrite `docs/benchmarks.md`.

`python -m tests.bench [NAME…]` runs the `bench_NAME.py` modules given (default: all)
and keeps the other sections of the report as they were.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench.common import BenchResult

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "docs" / "benchmarks.md"
RAW = REPO / "docs" / "benchmarks.json"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    ).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}, git {sha or '?'}"
    )


def render(results: dict[str, list[dict[str, Any]]], when: dict[str, str]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m tests.bench`); do not edit by hand. Every figure "
        "is the median of the runs listed beside it unless it says otherwise; ratios are "
        "measured side by side in one run.",
        "",
    ]
    for section in sorted(results):
        lines += [
            f"## {section}",
            "",
            f"Measured {when.get(section, '?')}.",
            "",
            "| figure | median | target | met | runs | how |",
            "|---|---|---|---|---|---|",
        ]
        for r in results[section]:
            samples = r.get("samples") or []
            runs = ", ".join(f"{s:.3g}" for s in samples) if samples else "1"
            met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
            lines.append(
                f"| {r['name']} | {float(r['value']):.3g} {r['unit']} | "
                f"{r.get('target', '')} | {met} | {runs} | {r['how']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    modules = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    wanted = [f"bench_{a}" for a in argv] or modules
    stored: dict[str, Any] = json.loads(RAW.read_text()) if RAW.exists() else {}
    results: dict[str, list[dict[str, Any]]] = dict(stored.get("results", {}))
    when: dict[str, str] = dict(stored.get("when", {}))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()) + " on " + machine()
    for name in wanted:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"tests.bench.{name}")
        out: list[BenchResult] = module.run()
        for r in out:
            print(
                f"   {r.section} / {r.name}: {r.value:.4g} {r.unit} (target {r.target})", flush=True
            )
        for section in {r.section for r in out}:
            results[section] = [r.__dict__ for r in out if r.section == section]
            when[section] = stamp
    RAW.write_text(json.dumps({"results": results, "when": when}, indent=2) + "\n")
    REPORT.write_text(render(results, when))
    print(f"wrote {REPORT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
