"""PNG charts with matplotlib (Agg, no pyplot state): traffic, served-by, lost writes, RTO.

Times on every x axis are seconds relative to the fault (`t - t_f`), so charts of
different runs line up. Timelines are binned (1 s, or wider for long runs: at most
about 600 bins) before plotting, so a million requests draw as fast as a thousand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

TIMELINE_COLUMNS = ("t_start", "latency_ms", "kind", "ok", "residency", "region")
PALETTE = ["#1f77b4", "#9467bd", "#2ca02c", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]
FAULT = "#d62728"
RECOVERY = "#2ca02c"
DPI = 100


@dataclass(frozen=True)
class Bins:
    """Per-bin aggregates of a timeline, all the charts draw (never the rows themselves).

    Bins are `width` seconds on the fault-relative axis (`floor((t - t_f) / width) *
    width`); `traffic` has `residency, bin, ratio, p99` (p99: linear interpolation over
    the latencies that are not null, as pandas' quantile), `served` has `residency,
    bin, region, n` (a null region is "no answer"), `writes` has `second, n` (the
    acknowledged writes per whole second since the fault). Null residencies read "nan".
    """

    width: float
    first: float
    traffic: pd.DataFrame
    served: pd.DataFrame | None
    writes: pd.DataFrame | None


def read_bins(path: Path, fault_at: float | None) -> Bins | None:
    """The per-bin aggregates of timeline.parquet around `fault_at` (default: the first
    request); None when absent, unreadable or empty. Memory stays flat in the rows: the
    engine scans the file (docs/scorecards.md)."""
    if not path.exists():
        return None
    try:
        import duckdb
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
    except (OSError, ValueError, ImportError):
        return None
    if "t_start" not in names:
        return None
    db = duckdb.connect(config={"memory_limit": "512MB", "threads": 2})
    db.execute("SET enable_progress_bar = false")
    try:
        return _bins(db, str(path), names, fault_at)
    except duckdb.Error:
        return None
    finally:
        db.close()


def _bins(db: Any, path: str, names: set[str], fault_at: float | None) -> Bins | None:
    def column(name: str) -> str:
        return name if name in names else f"NULL AS {name}"

    ok = "coalesce(ok, false)" if "ok" in names else "true"
    # A null residency reads "nan" (pandas' str of a missing category), none at all "all".
    residency = "coalesce(residency::VARCHAR, 'nan')" if "residency" in names else "'all'"
    db.execute(
        f"CREATE VIEW tl AS SELECT t_start, {column('latency_ms')}, {column('kind')}, "
        f"{ok} AS ok, {residency} AS residency, {column('region')} "
        f"FROM read_parquet('{path.replace(chr(39), chr(39) * 2)}')"
    )
    low, high, rows = db.execute("SELECT min(t_start), max(t_start), count(*) FROM tl").fetchall()[
        0
    ]
    if not rows:
        return None
    first = float(low) if fault_at is None else fault_at
    width = _bin_width(float(high) - float(low))
    binned = f"floor((t_start - {first!r}) / {width!r}) * {width!r}"
    traffic = db.execute(
        f"SELECT residency, {binned} AS bin, avg(ok::DOUBLE) AS ratio, "
        "quantile_cont(latency_ms, 0.99) FILTER (WHERE NOT isnan(latency_ms)) AS p99 "
        "FROM tl GROUP BY ALL ORDER BY ALL"
    ).df()
    served = None
    if "region" in names and "residency" in names:
        served = db.execute(
            f"SELECT residency, {binned} AS bin, coalesce(region, 'no answer') AS region, "
            "count(*) AS n FROM tl GROUP BY ALL ORDER BY ALL"
        ).df()
    writes = None
    if "kind" in names and "ok" in names:
        writes = db.execute(
            f"SELECT floor(t_start - {first!r}) AS second, count(*) AS n FROM tl "
            "WHERE kind = 'write' AND ok GROUP BY ALL ORDER BY ALL"
        ).df()
    return Bins(width, first, traffic, served, writes)


def _bin_width(span: float) -> float:
    return max(1.0, float(np.ceil(span / 600.0)))


def _style(fig: Figure) -> None:
    for ax in fig.axes:
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)


def _save(fig: Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
    return out


def _mark_fault(ax: Any, label: bool) -> None:
    ax.axvline(0.0, color=FAULT, lw=2, label="fault" if label else None)


def _colors(names: Sequence[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(names))}


def traffic_chart(
    bins: Bins,
    fault_at: float,
    rto_entries: Sequence[Mapping[str, Any]],
    threshold_ratio: float,
    out: Path,
) -> Path:
    """Success ratio and p99 latency per jurisdiction over time, fault and RTO spans marked."""
    width = bins.width
    grouped = bins.traffic.set_index(["residency", "bin"]).sort_index()
    ratio = grouped["ratio"]
    p99 = grouped["p99"]
    residencies = sorted(bins.traffic["residency"].unique())
    colors = _colors(residencies)

    fig = Figure(figsize=(11, 6.2))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    for res in residencies:
        r = ratio.loc[res]
        top.plot(r.index, r.to_numpy(), color=colors[res], lw=1.6, label=f"{res} success ratio")
        lat = p99.loc[res]
        bottom.plot(lat.index, lat.to_numpy(), color=colors[res], lw=1.4, label=f"{res} p99")
    top.axhline(
        threshold_ratio, color="#555", ls=":", lw=1, label=f"recovered at ≥ {threshold_ratio:g}"
    )
    for ax in (top, bottom):
        _mark_fault(ax, ax is top)
    # One RTO span per jurisdiction: its worst entry, when the fault had an impact at all.
    worst: dict[str, tuple[float, float]] = {}
    for entry in rto_entries:
        rec, fault = entry.get("recovered_at"), entry.get("fault_at", fault_at)
        if not entry.get("impact") or not isinstance(rec, int | float):
            continue
        if entry.get("covered_by") is not None:
            continue  # another fault's entry judges this stream (docs/measurement.md)
        if not isinstance(fault, int | float):
            continue
        res = str(entry.get("residency"))
        span = (float(fault) - fault_at, float(rec) - fault_at)
        if res not in worst or span[1] - span[0] > worst[res][1] - worst[res][0]:
            worst[res] = span
    for n, (res, (start, end)) in enumerate(sorted(worst.items())):
        color = colors.get(res, "#333")
        top.axvspan(start, end, color=color, alpha=0.12)
        top.axvline(end, color=RECOVERY, ls="--", lw=1.4, label="recovered" if n == 0 else None)
        top.annotate(
            f"RTO {res}: {end - start:.1f} s",
            xy=(end, 0.45 - 0.1 * n),
            xycoords=("data", "axes fraction"),
            xytext=(6, 0),
            textcoords="offset points",
            color=color,
            fontsize=10,
            fontweight="bold",
        )
    never = sorted({str(e.get("residency")) for e in rto_entries if e.get("recovered") is False})
    if never:
        top.annotate(
            "never recovered: " + ", ".join(never),
            xy=(0.5, 0.5),
            xycoords="axes fraction",
            color=FAULT,
            fontsize=11,
            fontweight="bold",
        )
    top.set_ylim(-0.02, 1.05)
    top.set_ylabel("success ratio")
    top.set_title(f"Traffic around the fault (bins of {width:g} s)", loc="left")
    top.legend(loc="lower right", fontsize=8, ncols=2)
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 latency (ms)")
    bottom.set_xlabel("seconds since the fault")
    bottom.legend(loc="upper right", fontsize=8)
    _style(fig)
    return _save(fig, out)


def served_by_chart(bins: Bins, fault_at: float, out: Path) -> Path:
    """Share of each jurisdiction's requests answered by each region over time."""
    served = (
        bins.served
        if bins.served is not None
        else pd.DataFrame({"residency": [], "bin": [], "region": [], "n": []})
    )
    counts = served.set_index(["residency", "bin", "region"])["n"].sort_index()
    residencies = sorted(served["residency"].unique())
    regions = sorted(set(served["region"].unique()) - {"no answer"})
    colors = _colors(regions)
    colors["no answer"] = "#bbbbbb"
    fig = Figure(figsize=(11, 1.2 + 1.9 * len(residencies)))
    axes = fig.subplots(len(residencies), 1, sharex=True, squeeze=False)[:, 0]
    for ax, res in zip(axes, residencies, strict=True):
        table = counts.loc[res].unstack(fill_value=0)
        share = table.div(table.sum(axis=1), axis=0)
        order = [r for r in [*regions, "no answer"] if r in share.columns]
        ax.stackplot(
            share.index.to_numpy(dtype=float),
            *[share[r].to_numpy() for r in order],
            labels=order,
            colors=[colors[r] for r in order],
            step="post",
        )
        _mark_fault(ax, False)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"{res}\nshare")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    axes[0].set_title("Which region served each jurisdiction", loc="left")
    axes[-1].set_xlabel("seconds since the fault (red: fault)")
    _style(fig)
    return _save(fig, out)


def lost_writes_chart(
    bins: Bins | None,
    fault_at: float,
    rpo_entries: Sequence[Mapping[str, Any]],
    out: Path,
) -> Path:
    """Acknowledged writes per second (grey) and every lost write (red) on the time axis."""
    fig = Figure(figsize=(11, 3.6))
    ax = fig.subplots()
    if bins is not None and bins.writes is not None and len(bins.writes):
        # Whole seconds since the fault, shifted when the bins were not anchored at it.
        t = bins.writes["second"].to_numpy(dtype=float) + (bins.first - fault_at)
        n = bins.writes["n"].to_numpy(dtype=float)
        width = _bin_width(float(t.max() - t.min()))
        edges = np.arange(np.floor(t.min()), np.ceil(t.max()) + width, width)
        ax.hist(t, bins=list(edges), weights=n, color="#c7c7c7", label="acknowledged writes")
    lost_t: list[float] = []
    acknowledged = 0
    for entry in rpo_entries:
        acknowledged += int(entry.get("acknowledged") or 0)
        for write in entry.get("lost_writes") or []:
            if isinstance(write, Mapping) and isinstance(write.get("t_ack"), int | float):
                lost_t.append(float(write["t_ack"]) - fault_at)
    ax2 = ax.twinx()
    ax2.set_yticks([])
    if lost_t:
        first, last = min(lost_t), max(*lost_t, 0.0)  # RPO: max(t_f, last lost) - first lost
        ax.axvspan(first, last, color=FAULT, alpha=0.18, label=f"RPO span {last - first:.1f} s")
        ax2.scatter(
            lost_t,
            np.full(len(lost_t), 0.75),
            color=FAULT,
            marker="v",
            s=40,
            label=f"lost acknowledged write ({len(lost_t)})",
        )
        ax2.annotate(
            f"RPO {last - first:.1f} s, {len(lost_t)} lost",
            xy=(last, 0.75),
            xytext=(8, -4),
            textcoords="offset points",
            color=FAULT,
            fontsize=10,
            fontweight="bold",
        )
        ax2.legend(loc="upper right", fontsize=8)
    else:
        ax.text(
            0.01,
            0.92,
            f"no acknowledged write lost (of {acknowledged:,})",
            transform=ax.transAxes,
            color=RECOVERY,
            fontsize=11,
            fontweight="bold",
        )
    ax2.set_ylim(-1, 1)
    _mark_fault(ax, True)
    ax.set_xlabel("seconds since the fault (acknowledgement time)")
    ax.set_ylabel("writes per bin")
    ax.set_title("Lost acknowledged writes", loc="left")
    ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(0.0, 0.85))
    _style(fig)
    return _save(fig, out)


def rto_distribution_chart(
    values: Mapping[str, Sequence[float | None]],
    targets: Mapping[str, float],
    statistic: Mapping[str, float | None],
    statistic_name: str,
    out: Path,
) -> Path:
    """RTO of every drill per scope (a dot each; X: never recovered) against its target."""
    scopes = sorted(values)
    fig = Figure(figsize=(11, 1.4 + 0.7 * max(len(scopes), 1)))
    ax = fig.subplots()
    top = max(
        [v for vs in values.values() for v in vs if v is not None] + list(targets.values()) + [1.0]
    )
    rng = np.random.default_rng(0)
    for y, scope in enumerate(scopes):
        got = [v for v in values[scope] if v is not None]
        missing = sum(1 for v in values[scope] if v is None)
        jitter = rng.uniform(-0.15, 0.15, len(got))
        ax.scatter(
            got,
            np.full(len(got), y) + jitter,
            color=PALETTE[0],
            alpha=0.8,
            s=30,
            label="drill" if y == 0 else None,
        )
        if missing:
            ax.scatter(
                [top * 1.08] * missing,
                [y] * missing,
                marker="x",
                color=FAULT,
                s=60,
                label="never recovered" if y == 0 else None,
            )
        target = targets.get(scope)
        if target is not None:
            ax.plot(
                [target, target],
                [y - 0.35, y + 0.35],
                color=FAULT,
                lw=2,
                label="target" if y == 0 else None,
            )
        stat = statistic.get(scope)
        if stat is not None:
            ax.plot(
                [stat, stat],
                [y - 0.3, y + 0.3],
                color="#000",
                lw=2,
                ls="--",
                label=statistic_name if y == 0 else None,
            )
    ax.set_yticks(range(len(scopes)), scopes)
    ax.set_xlim(0, top * 1.15)
    ax.set_xlabel("RTO (s)")
    ax.set_title("RTO of every drill against the target", loc="left")
    ax.legend(loc="lower right", fontsize=8)
    _style(fig)
    return _save(fig, out)


def trend_chart(
    series: Mapping[str, Sequence[tuple[float, float | None]]],
    target: float | None,
    ylabel: str,
    title: str,
    out: Path,
) -> Path:
    """A figure over time, one line per series (x: UTC date); None values are skipped."""
    fig = Figure(figsize=(10, 3.4))
    ax = fig.subplots()
    for i, name in enumerate(sorted(series)):
        points = [(t, v) for t, v in series[name] if v is not None]
        if not points:
            continue
        xs = pd.to_datetime([t for t, _ in points], unit="s", utc=True)
        ax.plot(
            xs,
            [v for _, v in points],
            marker="o",
            lw=1.4,
            ms=4,
            color=PALETTE[i % len(PALETTE)],
            label=name,
        )
    if target is not None:
        ax.axhline(target, color=FAULT, ls="--", lw=1.2, label=f"target {target:g}")
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", fontsize=8, ncols=3)
    fig.autofmt_xdate()
    _style(fig)
    return _save(fig, out)
