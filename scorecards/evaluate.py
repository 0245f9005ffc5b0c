"""Evaluation: measurements against gates → PASS / FAIL / INCONCLUSIVE per gate and overall.

Rules (docs/scorecards.md):
- a gate instance exists per scope: RTO and p99 latency per traffic kind and
  jurisdiction, RPO, lost writes and error budget per jurisdiction, the others per entry
  scope; each instance uses the gates resolved for its jurisdiction;
- a measurement whose status is not `ok`, a missing list or file, a saturated load
  generator (for the timing gates) or an instrumentation mismatch (RTO) makes the
  instance INCONCLUSIVE; an RTO that never recovered is a FAIL;
- validity checks (measurements present, load generator not saturated, a fault
  recorded) are PASS or INCONCLUSIVE, never FAIL;
- overall: any FAIL → FAIL, else any INCONCLUSIVE → INCONCLUSIVE, else PASS; nothing
  evaluated at all → INCONCLUSIVE.
- repeated drills (several runs of one experiment): RTO is gated on the configured
  statistic over the runs; every other gate on the worst run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from scorecards.gates import GATE_KEYS, Gates, GateSpec, RtoGateSpec
from scorecards.rundir import RunData
from scorecards.stats import bootstrap_ci, percentile

SCORECARD_VERSION = 1


class Verdict(StrEnum):
    """The verdict of a gate or a whole scorecard."""

    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """Any FAIL → FAIL; else any INCONCLUSIVE → INCONCLUSIVE; none at all → INCONCLUSIVE."""
    seen = list(verdicts)
    if not seen:
        return Verdict.INCONCLUSIVE
    if Verdict.FAIL in seen:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in seen:
        return Verdict.INCONCLUSIVE
    return Verdict.PASS


# gate key → (title, unit, timing gate: a saturated generator invalidates it)
GATE_INFO: dict[str, tuple[str, str, bool]] = {
    "rto_seconds": ("Recovery time (RTO, client side)", "s", True),
    "relapses": ("Relapses after recovery", "relapses", True),
    "rpo_seconds": ("Recovery point (RPO)", "s", True),
    "lost_after_fault": ("Acknowledged writes lost after the fault", "writes", False),
    "residency_violations": ("Residency violations", "requests", False),
    "wrong_answers": ("Wrong answers served", "answers", False),
    "error_budget": ("Error budget burned (failed / all requests after the fault)", "ratio", True),
    "p99_latency_ms": ("p99 latency during the fault", "ms", True),
    "time_to_detect_seconds": ("Time to detect corruption", "s", True),
    "measurements": ("Measurements present and readable", "", False),
    "load_generator": ("Load generator not saturated", "% CPU", False),
    "fault_injected": ("Fault recorded in events.jsonl", "faults", False),
    "drill_completed": ("Drill ran to completion", "", False),
}
CHECK_KEYS = ("measurements", "load_generator", "fault_injected", "drill_completed")
GUARDRAIL_FILE = "guardrail.json"


def _ran_as_drill(run: RunData) -> bool:
    return run.journal is not None or (run.path / GUARDRAIL_FILE).exists()


@dataclass(frozen=True)
class Observation:
    """One run's contribution to a gate: a value, or a forced verdict with its reason."""

    run: str
    value: float | None
    forced: Verdict | None = None
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    """One gate instance's verdict and the evidence behind it."""

    id: str
    gate: str
    title: str
    unit: str
    jurisdiction: str | None
    kind: str | None
    verdict: Verdict
    value: float | None
    comparison: str | None
    threshold: float | None
    statistic: str | None
    reason: str
    observations: tuple[Observation, ...]

    @property
    def scope(self) -> str:
        """`kind · jurisdiction`, or `all` for a run-wide gate."""
        parts = [p for p in (self.kind, self.jurisdiction) if p]
        return " · ".join(parts) if parts else "all"


@dataclass(frozen=True)
class Scorecard:
    """The verdict of one run, or of a repeated drill (several runs of one experiment)."""

    experiment: str
    verdict: Verdict
    gates: tuple[GateResult, ...]
    runs: tuple[RunData, ...]
    gates_path: str
    gates_sha256: str
    scored_at: float
    notes: tuple[str, ...] = ()
    charts: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """How many gates have each verdict."""
        return {v.value: sum(1 for g in self.gates if g.verdict == v) for v in Verdict}

    @property
    def repeated(self) -> bool:
        """Whether this scores a repeated drill."""
        return len(self.runs) > 1


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def p99_of(entry: dict[str, Any]) -> float | None:
    """p99 latency during the fault: `p99_latency_ms_during_fault` or `latency_ms.p99`."""
    if "p99_latency_ms_during_fault" in entry:
        return _num(entry.get("p99_latency_ms_during_fault"))
    latency = entry.get("latency_ms")
    return _num(latency.get("p99")) if isinstance(latency, dict) else None


def requests_of(entry: dict[str, Any]) -> float | None:
    """Requests an RTO entry judged: `requests` or `inputs.requests`."""
    if "requests" in entry:
        return _num(entry.get("requests"))
    inputs = entry.get("inputs")
    return _num(inputs.get("requests")) if isinstance(inputs, dict) else None


def jurisdiction_of(entry: dict[str, Any]) -> str | None:
    """An entry's jurisdiction: `residency` or `jurisdiction`."""
    for key in ("residency", "jurisdiction"):
        value = entry.get(key)
        if isinstance(value, str):
            return value
    return None


def mismatched(entry: dict[str, Any]) -> bool:
    """Whether a Prometheus-side RTO entry flags an instrumentation mismatch."""
    return entry.get("instrumentation_mismatch") is True


def _status_problem(entry: dict[str, Any]) -> str | None:
    status = entry.get("status")
    if status == "ok":
        return None
    reason = entry.get("reason")
    return f"status {status!r}" + (f": {reason}" if reason else "")


def fmt(value: float | None, unit: str) -> str:
    """A value with its unit for humans: `14.2 s`, `0 s`, `10.00 %`, `3 writes`."""
    if value is None:
        return "n/a"
    if unit == "ratio":
        return f"{value * 100:.2f}".rstrip("0").rstrip(".") + " %"
    if float(value).is_integer() and abs(value) < 1e15:
        text = f"{int(value):,}"
    elif unit in ("s", "ms", "% CPU"):
        text = f"{value:.1f}" if abs(value) >= 10 or unit != "s" else f"{value:.2f}"
    else:
        text = f"{value:g}"
    if unit == "% CPU":
        return f"{text} %"
    return f"{text} {unit}".strip()


def fmt_limit(comparison: str | None, threshold: float | None, unit: str) -> str:
    """`< 60 s`, `≤ 0 writes`; `—` when the gate has no threshold."""
    if comparison is None or threshold is None:
        return "—"
    return f"{'<' if comparison == '<' else '≤'} {fmt(threshold, unit)}"


Key = tuple[str | None, str | None]  # (jurisdiction, kind)


class _Collector:
    """Observations per gate and scope, gathered run by run."""

    def __init__(self) -> None:
        self.obs: dict[str, dict[Key, list[Observation]]] = {k: {} for k in GATE_KEYS}

    def add(self, gate: str, key: Key, observation: Observation) -> None:
        """Add one observation; a second one of the same run (another fault) keeps the worse."""
        found = self.obs[gate].setdefault(key, [])
        for i, other in enumerate(found):
            if other.run == observation.run:
                found[i] = _worse(other, observation)
                return
        found.append(observation)


def _rank(obs: Observation) -> tuple[int, float]:
    order = {Verdict.FAIL: 2, Verdict.INCONCLUSIVE: 1}.get(obs.forced or Verdict.PASS, 0)
    return order, obs.value if obs.value is not None else float("-inf")


def _worse(a: Observation, b: Observation) -> Observation:
    """The worse of two observations of one run: FAIL, then INCONCLUSIVE, then the larger."""
    return b if _rank(b) > _rank(a) else a


def _timing_block(run: RunData) -> str | None:
    if run.saturated:
        cpu = run.cpu_max_percent
        shown = f" (peak CPU {cpu:.0f} %)" if cpu is not None else ""
        return f"load generator saturated{shown}: latency and recovery are distorted"
    return None


def _mismatch_reason(prom: list[dict[str, Any]], rto: float | None) -> str:
    """Why the cross-check failed, with the figures it compared.

    The Prometheus entry names the client-side figure it was compared with (all traffic
    of the jurisdiction) and the bound; older measurements lack them, so fall back to
    this gate's own figure.
    """
    entry = next((p for p in prom if mismatched(p)), prom[0])
    other = _num(entry.get("rto_seconds"))
    client, bound = _num(entry.get("client_rto_seconds")), _num(entry.get("mismatch_bound_seconds"))
    if bound is None:
        return (
            f"instrumentation mismatch: client side {fmt(rto, 's')}, Prometheus {fmt(other, 's')}"
        )
    return (
        f"instrumentation mismatch: Prometheus {fmt(other, 's')}, client side (all traffic) "
        f"{fmt(client, 's')}: more than the {fmt(bound, 's')} bound apart"
    )


def _missing(run: RunData, section: str) -> str:
    if run.measurements is None:
        why = next((str(p) for p in run.problems if p.file == "measurements.json"), "missing")
        return f"no measurements ({why})"
    if not run.has_section(section):
        return f"measurements.json has no `{section}` list"
    return f"measurements.json has no `{section}` entries"


def _prometheus_for(
    by_jurisdiction: dict[str | None, list[dict[str, Any]]], entry: dict[str, Any]
) -> list[dict[str, Any]]:
    """The Prometheus-side entries of the same jurisdiction and fault as `entry`.

    Entries without a `fault_id` (hand-made measurements) match any fault.
    """
    fault = entry.get("fault_id")
    return [
        p
        for p in by_jurisdiction.get(jurisdiction_of(entry), [])
        if fault is None or p.get("fault_id") in (None, fault)
    ]


def _collect_rto(run: RunData, experiment: str, gates: Gates, c: _Collector) -> None:
    entries = run.entries("rto")
    if not entries:
        for gate in ("rto_seconds", "relapses", "p99_latency_ms", "error_budget"):
            c.add(
                gate,
                (None, None),
                Observation(run.name, None, Verdict.INCONCLUSIVE, _missing(run, "rto")),
            )
        return
    prometheus: dict[str | None, list[dict[str, Any]]] = {}
    for entry in run.entries("rto_prometheus"):
        prometheus.setdefault(jurisdiction_of(entry), []).append(entry)
    blocked = _timing_block(run)
    budget: dict[str | None, list[dict[str, Any]]] = {}
    for entry in entries:
        if entry.get("covered_by") is not None:
            # Another fault's entry judges this stream over the same time (a blast-radius
            # entry of a fault elsewhere, overlapping the stream's own fault).
            continue
        jurisdiction = entry.get("residency") if isinstance(entry.get("residency"), str) else None
        kind = entry.get("kind") if isinstance(entry.get("kind"), str) else None
        budget.setdefault(jurisdiction, []).append(entry)
        key = (jurisdiction, kind)
        problem = _status_problem(entry)
        rto = _num(entry.get("rto_seconds"))
        prom = _prometheus_for(prometheus, entry)
        evidence: dict[str, Any] = {
            k: entry.get(k)
            for k in (
                "fault",
                "target",
                "rto_seconds",
                "uncertainty_seconds",
                "impact",
                "recovered",
                "fault_at",
                "recovered_at",
                "failed",
                "brownout_seconds",
                "unobserved_seconds",
            )
            if k in entry
        }
        evidence["requests"] = requests_of(entry)
        if prom:
            evidence["prometheus_rto_seconds"] = prom[0].get("rto_seconds")
            evidence["prometheus_status"] = prom[0].get("status")
        spec = gates.resolve(experiment, jurisdiction).rto_seconds
        if problem:
            obs = Observation(run.name, rto, Verdict.INCONCLUSIVE, problem, evidence)
        elif blocked:
            obs = Observation(run.name, rto, Verdict.INCONCLUSIVE, blocked, evidence)
        elif any(mismatched(p) for p in prom):
            obs = Observation(
                run.name, rto, Verdict.INCONCLUSIVE, _mismatch_reason(prom, rto), evidence
            )
        elif spec.require_cross_check and not any(p.get("status") == "ok" for p in prom):
            obs = Observation(
                run.name,
                rto,
                Verdict.INCONCLUSIVE,
                "no Prometheus-side RTO to cross-check (required)",
                evidence,
            )
        elif entry.get("recovered") is False:
            obs = Observation(
                run.name,
                None,
                Verdict.FAIL,
                "never recovered before the observation ended",
                evidence,
            )
        elif rto is None:
            obs = Observation(
                run.name,
                None,
                Verdict.INCONCLUSIVE,
                f"rto_seconds is {entry.get('rto_seconds')!r}, not a number",
                evidence,
            )
        else:
            obs = Observation(run.name, rto, None, "", evidence)
        c.add("rto_seconds", key, obs)
        c.add("relapses", key, _relapse_obs(run, entry, problem, blocked))

        p99 = p99_of(entry)
        p99_ev = {"p99_latency_ms": p99, "fault": entry.get("fault"), "target": entry.get("target")}
        if problem:
            obs = Observation(run.name, p99, Verdict.INCONCLUSIVE, problem, p99_ev)
        elif blocked:
            obs = Observation(run.name, p99, Verdict.INCONCLUSIVE, blocked, p99_ev)
        elif p99 is None:
            obs = Observation(
                run.name,
                None,
                Verdict.INCONCLUSIVE,
                "no p99 latency during the fault (no requests during the fault?)",
                p99_ev,
            )
        else:
            obs = Observation(run.name, p99, None, "", p99_ev)
        c.add("p99_latency_ms", key, obs)

    for jurisdiction, group in budget.items():
        c.add("error_budget", (jurisdiction, None), _budget_obs(run, group, blocked))


def _relapse_obs(
    run: RunData, entry: dict[str, Any], problem: str | None, blocked: str | None
) -> Observation:
    """How many times failures returned after the recovery of one RTO entry."""
    relapses = entry.get("relapses")
    listed = relapses if isinstance(relapses, list) else []
    evidence: dict[str, Any] = {
        "fault": entry.get("fault"),
        "recovered_at": entry.get("recovered_at"),
        "relapses": listed[:5],
        "failed_after_recovery": entry.get("failed_after_recovery"),
    }
    count = float(len(listed)) if isinstance(relapses, list) else None
    if problem:
        return Observation(run.name, count, Verdict.INCONCLUSIVE, problem, evidence)
    if entry.get("recovered") is False:
        reason = "never recovered: no relapse to count"
        return Observation(run.name, None, Verdict.INCONCLUSIVE, reason, evidence)
    if count is None:
        reason = f"relapses is {relapses!r}, not a list (measured before relapses were reported?)"
        return Observation(run.name, None, Verdict.INCONCLUSIVE, reason, evidence)
    if blocked and count == 0:
        # A saturated generator can hide a relapse; one it saw still counts.
        return Observation(run.name, count, Verdict.INCONCLUSIVE, blocked, evidence)
    hidden = _num(entry.get("unobserved_after_recovery_seconds"))
    if count == 0 and hidden:
        evidence["unobserved_after_recovery_seconds"] = hidden
        reason = (
            f"no relapse seen, but {fmt(hidden, 's')} after the recovery went unobserved "
            "(too few requests): a relapse could hide there"
        )
        return Observation(run.name, count, Verdict.INCONCLUSIVE, reason, evidence)
    return Observation(run.name, count, None, "", evidence)


def _budget_obs(run: RunData, group: list[dict[str, Any]], blocked: str | None) -> Observation:
    """Failed / all requests of one jurisdiction; the worst fault when there are several.

    Every failure from the fault to the end of its observation counts
    (`failed_after_fault`), relapses after the recovery included. Probes report a kind
    `all` beside the per-kind entries: when present it is used alone, so no request
    counts twice.
    """
    combined = [e for e in group if e.get("kind") == "all"] or group
    problems = [p for p in (_status_problem(e) for e in combined) if p]
    if problems:
        return Observation(run.name, None, Verdict.INCONCLUSIVE, problems[0])
    per_fault: dict[Any, list[float]] = {}
    for e in combined:
        failed, requests = _num(e.get("failed_after_fault")), requests_of(e)
        if failed is None or requests is None:
            return Observation(
                run.name,
                None,
                Verdict.INCONCLUSIVE,
                "an rto entry lacks `failed_after_fault` or `requests`",
            )
        sums = per_fault.setdefault(e.get("fault_id"), [0.0, 0.0])
        sums[0] += failed
        sums[1] += requests
    worst_failed, worst_total, ratio = 0.0, 0.0, -1.0
    for bad, total in per_fault.values():
        if total > 0 and bad / total > ratio:
            worst_failed, worst_total, ratio = bad, total, bad / total
    ev = {"failed": worst_failed, "requests": worst_total}
    if ratio < 0:
        return Observation(run.name, None, Verdict.INCONCLUSIVE, "no requests", ev)
    if blocked:
        return Observation(run.name, ratio, Verdict.INCONCLUSIVE, blocked, ev)
    return Observation(run.name, ratio, None, "", ev)


RPO_EVIDENCE = {
    "rpo_seconds",
    "acknowledged",
    "acknowledged_after_fault",
    "lost",
    "lost_after_fault",
    "ambiguous",
    "unaccounted",
}


def _collect_rpo(run: RunData, experiment: str, gates: Gates, c: _Collector) -> None:
    entries = run.rpo
    if not entries:
        for gate in ("rpo_seconds", "lost_after_fault"):
            c.add(
                gate,
                (None, None),
                Observation(run.name, None, Verdict.INCONCLUSIVE, _missing(run, "rpo")),
            )
        return
    blocked = _timing_block(run)
    for entry in entries:
        key = (entry.residency, None)
        problem = None
        if entry.status != "ok":
            problem = f"status {entry.status!r}" + (f": {entry.reason}" if entry.reason else "")
        evidence = entry.model_dump(mode="json", include=RPO_EVIDENCE, exclude_unset=True)
        rpo = entry.rpo_seconds
        if problem:
            obs = Observation(run.name, rpo, Verdict.INCONCLUSIVE, problem, evidence)
        elif blocked:
            obs = Observation(run.name, rpo, Verdict.INCONCLUSIVE, blocked, evidence)
        elif rpo is None:
            obs = Observation(run.name, None, Verdict.INCONCLUSIVE, "rpo_seconds is null", evidence)
        else:
            obs = Observation(run.name, rpo, None, "", evidence)
        c.add("rpo_seconds", key, obs)

        lost = entry.lost_after_fault
        spec = gates.resolve(experiment, entry.residency).spec("lost_after_fault")
        if problem and lost is not None and not spec.passes(lost):
            # Writes proven lost after the fault stay lost whatever else is missing.
            reason = f"{fmt(lost, 'writes')} lost after the fault ({problem})"
            obs = Observation(run.name, lost, Verdict.FAIL, reason, evidence)
        elif problem:
            obs = Observation(run.name, lost, Verdict.INCONCLUSIVE, problem, evidence)
        elif lost is None:
            why = entry.lost_after_fault_reason or "no lost_after_fault count"
            obs = Observation(run.name, None, Verdict.INCONCLUSIVE, why, evidence)
        else:
            obs = Observation(run.name, float(lost), None, "", evidence)
        c.add("lost_after_fault", key, obs)


def _collect_counts(run: RunData, experiment: str, gates: Gates, c: _Collector) -> None:
    # Residency violations: one instance per jurisdiction when entries name one.
    entries = run.entries("residency")
    if not entries:
        c.add(
            "residency_violations",
            (None, None),
            Observation(run.name, None, Verdict.INCONCLUSIVE, _missing(run, "residency")),
        )
    grouped: dict[str | None, list[dict[str, Any]]] = {}
    for entry in entries:
        grouped.setdefault(jurisdiction_of(entry), []).append(entry)
    for j, group in grouped.items():
        c.add(
            "residency_violations",
            (j, None),
            _count_obs(run, group, "violations", ("violations", "answered")),
        )

    # Wrong answers: summed over the integrity entries of a jurisdiction.
    entries = run.entries("integrity")
    if not entries:
        for gate in ("wrong_answers", "time_to_detect_seconds"):
            c.add(
                gate,
                (None, None),
                Observation(run.name, None, Verdict.INCONCLUSIVE, _missing(run, "integrity")),
            )
        return
    wrong = [e for e in entries if e["check"] == "wrong-answers"]
    detect = [e for e in run.integrity if e.check == "time-to-detect"]
    grouped = {}
    for entry in wrong:
        grouped.setdefault(_integrity_jurisdiction(run, entry), []).append(entry)
    if not wrong:
        c.add(
            "wrong_answers",
            (None, None),
            Observation(run.name, None, Verdict.INCONCLUSIVE, "no wrong-answers entry"),
        )
    if not detect:
        c.add(
            "time_to_detect_seconds",
            (None, None),
            Observation(
                run.name, None, Verdict.INCONCLUSIVE, "no time-to-detect entry (no corruption?)"
            ),
        )
    for j, group in grouped.items():
        c.add(
            "wrong_answers",
            (j, None),
            _count_obs(
                run,
                group,
                "wrong_answers",
                ("wrong_answers", "region", "digest_source"),
                gates.resolve(experiment, j).spec("wrong_answers"),
                GATE_INFO["wrong_answers"][1],
            ),
        )

    blocked = _timing_block(run)
    for found in detect:
        j = found.jurisdiction or run.jurisdiction_of(found.region)
        region, ttd = found.region, found.time_to_detect_seconds
        evidence = {"time_to_detect_seconds": ttd, "region": region}
        problem = None
        if found.status != "ok":
            problem = f"status {found.status!r}" + (f": {found.reason}" if found.reason else "")
        if problem:
            obs = Observation(run.name, ttd, Verdict.INCONCLUSIVE, problem, evidence)
        elif blocked:
            obs = Observation(run.name, ttd, Verdict.INCONCLUSIVE, blocked, evidence)
        elif ttd is None:
            obs = Observation(
                run.name, None, Verdict.FAIL, "the corruption was never detected", evidence
            )
        else:
            obs = Observation(run.name, ttd, None, "", evidence)
        c.add("time_to_detect_seconds", (j, region), obs)


def _integrity_jurisdiction(run: RunData, entry: dict[str, Any]) -> str | None:
    for key in ("residency", "jurisdiction"):
        if isinstance(entry.get(key), str):
            return str(entry[key])
    region = entry.get("region")
    return run.jurisdiction_of(region if isinstance(region, str) else None)


def _count_obs(
    run: RunData,
    group: list[dict[str, Any]],
    field_name: str,
    keep: tuple[str, ...],
    spec: GateSpec | None = None,
    unit: str = "",
) -> Observation:
    """The sum of `field_name` over `group`; INCONCLUSIVE when an entry is not `ok`,
    unless the counts it still carries (a lower bound) already break `spec`: FAIL."""
    evidence = {"entries": [{k: e.get(k) for k in keep if k in e} for e in group]}
    problems = [p for p in (_status_problem(e) for e in group) if p]
    if problems:
        floor = sum(v for v in (_num(e.get(field_name)) for e in group) if v is not None)
        if spec is not None and not spec.passes(floor):
            reason = f"at least {fmt(floor, unit)} ({problems[0]})"
            return Observation(run.name, floor, Verdict.FAIL, reason, evidence)
        return Observation(run.name, None, Verdict.INCONCLUSIVE, problems[0], evidence)
    values = [_num(e.get(field_name)) for e in group]
    if None in values:
        return Observation(
            run.name,
            None,
            Verdict.INCONCLUSIVE,
            f"an entry has no numeric `{field_name}`",
            evidence,
        )
    return Observation(run.name, sum(v for v in values if v is not None), None, "", evidence)


def _completion(run: RunData) -> Observation:
    """A guardrail breach is a finding (FAIL); any other interruption leaves the drill
    unfinished (INCONCLUSIVE)."""
    guardrail = run.path / GUARDRAIL_FILE
    if guardrail.exists():
        try:
            message = str(json.loads(guardrail.read_text()).get("message", "breached"))
        except (OSError, ValueError):
            message = "breached (guardrail.json unreadable)"
        return Observation(run.name, None, Verdict.FAIL, f"guardrail: {message}")
    status = str((run.journal or {}).get("status"))
    if status == "completed":
        deviated = " (the steady state deviated)" if (run.journal or {}).get("deviated") else ""
        return Observation(run.name, None, Verdict.PASS, f"journal status completed{deviated}")
    return Observation(
        run.name, None, Verdict.INCONCLUSIVE, f"the drill did not complete (journal: {status})"
    )


def _check(run: RunData, key: str) -> Observation:
    if key == "drill_completed":
        return _completion(run)
    if key == "measurements":
        why = [str(p) for p in run.problems if p.file == "measurements.json"]
        if why:
            return Observation(run.name, None, Verdict.INCONCLUSIVE, "; ".join(why))
        return Observation(run.name, None, Verdict.PASS, "measurements.json version 1")
    if key == "load_generator":
        cpu = run.cpu_max_percent
        if run.saturated is None:
            why = [str(p) for p in run.problems if p.file == "load.json"] or ["load.json: unknown"]
            return Observation(
                run.name, cpu, Verdict.INCONCLUSIVE, "; ".join(why) + " (saturation unknown)"
            )
        if run.saturated:
            return Observation(
                run.name,
                cpu,
                Verdict.INCONCLUSIVE,
                "saturated: the drill is invalid and not scored",
            )
        shown = f" (peak CPU {cpu:.0f} %)" if cpu is not None else ""
        return Observation(run.name, cpu, Verdict.PASS, f"not saturated{shown}")
    why = [str(p) for p in run.problems if p.file == "events.jsonl"]
    if why:
        return Observation(run.name, float(len(run.faults)), Verdict.INCONCLUSIVE, "; ".join(why))
    names = ", ".join(sorted({f"{f.fault} {f.target}" for f in run.faults}))
    return Observation(run.name, float(len(run.faults)), Verdict.PASS, names)


def _statistic(values: list[float], spec: GateSpec, gate: str) -> tuple[float, str | None]:
    if len(values) == 1:
        return values[0], None
    if gate == "rto_seconds" and isinstance(spec, RtoGateSpec):
        if spec.statistic == "p95":
            return percentile(values, 95), "p95"
        if spec.statistic == "ci_upper":
            return bootstrap_ci(values, spec.confidence)[1], f"ci_upper ({spec.confidence:.0%})"
    return max(values), "max"


def _worst_run_gated(gate: str, spec: GateSpec) -> bool:
    return not isinstance(spec, RtoGateSpec) or spec.statistic == "max"


def _who(obs: Observation, n_runs: int) -> str:
    return f"{obs.run}: " if n_runs > 1 else ""


def _gate_id(gate: str, key: Key) -> str:
    jurisdiction, kind = key
    scope = "/".join(p for p in (kind, jurisdiction) if p)
    return f"{gate}[{scope}]" if scope else gate


def _resolve_instance(
    gate: str, key: Key, obs: list[Observation], spec: GateSpec, n_runs: int
) -> GateResult:
    title, unit, _ = GATE_INFO[gate]
    values = [o.value for o in obs if o.forced is None and o.value is not None]
    failed = [o for o in obs if o.forced == Verdict.FAIL]
    unsure = [o for o in obs if o.forced == Verdict.INCONCLUSIVE]
    value: float | None = None
    statistic: str | None = None
    if failed:
        verdict = Verdict.FAIL
        reason = "; ".join(_who(o, n_runs) + o.reason for o in failed)
        shown = [o.value for o in obs if o.value is not None]
        value = max(shown) if shown else None
    elif unsure and _worst_run_gated(gate, spec) and any(not spec.passes(v) for v in values):
        # The worst run decides this gate: a run that breaks it fails it, whatever the others.
        breaking = [o for o in obs if o.forced is None and o.value is not None]
        breaking = [o for o in breaking if not spec.passes(o.value or 0.0)]
        verdict = Verdict.FAIL
        value = max(o.value or 0.0 for o in breaking)
        sign = "≥" if spec.comparison == "<" else ">"
        reason = "; ".join(
            f"{_who(o, n_runs)}{fmt(o.value, unit)} {sign} {fmt(spec.threshold, unit)}"
            for o in breaking
        )
    elif unsure:
        verdict = Verdict.INCONCLUSIVE
        reason = "; ".join(_who(o, n_runs) + o.reason for o in unsure)
        shown = [o.value for o in obs if o.value is not None]
        value = max(shown) if shown else None
    else:
        value, statistic = _statistic(values, spec, gate)
        ok = spec.passes(value)
        verdict = Verdict.PASS if ok else Verdict.FAIL
        over = ""
        if statistic:
            what = "worst" if statistic == "max" else statistic
            over = f"{what} of {len(values)} drills: "
        sign = (
            {"<": "<", "<=": "≤"}[spec.comparison]
            if ok
            else ("≥" if spec.comparison == "<" else ">")
        )
        reason = f"{over}{fmt(value, unit)} {sign} {fmt(spec.threshold, unit)}"
    return GateResult(
        id=_gate_id(gate, key),
        gate=gate,
        title=title,
        unit=unit,
        jurisdiction=key[0],
        kind=key[1],
        verdict=verdict,
        value=value,
        comparison=spec.comparison,
        threshold=spec.threshold,
        statistic=statistic,
        reason=reason,
        observations=tuple(obs),
    )


def evaluate(
    runs: Sequence[RunData], gates: Gates, scored_at: float, experiment: str | None = None
) -> Scorecard:
    """Score one run, or several runs of one experiment as a repeated drill."""
    if not runs:
        raise ValueError("evaluate needs at least one run")
    name = experiment or runs[0].experiment
    collector = _Collector()
    for run in runs:
        _collect_rto(run, name, gates, collector)
        _collect_rpo(run, name, gates, collector)
        _collect_counts(run, name, gates, collector)

    results: list[GateResult] = []
    disabled: set[str] = set()
    for gate in GATE_KEYS:
        for key in sorted(collector.obs[gate], key=lambda k: (k[0] or "", k[1] or "")):
            spec = gates.resolve(name, key[0]).spec(gate)
            if not spec.enabled:
                disabled.add(_gate_id(gate, key))
                continue
            results.append(_resolve_instance(gate, key, collector.obs[gate][key], spec, len(runs)))

    for check in CHECK_KEYS:
        if check == "drill_completed" and not any(_ran_as_drill(run) for run in runs):
            continue  # a load run measured by hand has no drill to complete
        obs = [_check(run, check) for run in runs]
        title, unit, _ = GATE_INFO[check]
        verdict = combine(o.forced or Verdict.INCONCLUSIVE for o in obs)
        bad = [o for o in obs if o.forced != Verdict.PASS]
        if not bad and len(obs) > 1:
            reasons = sorted({o.reason for o in obs})
            summary = f"all {len(obs)} runs: " + "; ".join(reasons[:3])
        else:
            summary = ""
        shown = bad or obs
        values = [o.value for o in obs if o.value is not None]
        results.append(
            GateResult(
                id=check,
                gate=check,
                title=title,
                unit=unit,
                jurisdiction=None,
                kind=None,
                verdict=verdict,
                value=max(values) if values else None,
                comparison=None,
                threshold=None,
                statistic=None,
                reason=summary
                or "; ".join(_who(o, len(runs)) + o.reason for o in shown[:3])
                + (f"; and {len(shown) - 3} more" if len(shown) > 3 else ""),
                observations=tuple(obs),
            )
        )

    notes = []
    if disabled:
        notes.append("disabled by the gates file: " + ", ".join(sorted(disabled)))
    if name == "unnamed":
        notes.append("experiment name unknown: only the default gates apply")
    experiments = {r.experiment for r in runs}
    if len(experiments) > 1:
        notes.append("runs of different experiments: " + ", ".join(sorted(experiments)))
    return Scorecard(
        experiment=name,
        verdict=combine(r.verdict for r in results),
        gates=tuple(results),
        runs=tuple(runs),
        gates_path=str(gates.path),
        gates_sha256=gates.sha256,
        scored_at=scored_at,
        notes=tuple(notes),
    )
