"""Benchmark reports: ``bench.json`` (everything), ``bench.md`` (tables, target checks) and
``bench.png`` (latency and throughput against offered load).

Only files under the output directory are written; the analysis of a run is prose in
``docs/performance.md``, which quotes and links these reports.

    python -m loadtests.bench_report reports/bench.json   # re-render bench.md / bench.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

#: The issue's targets for single-transaction scoring, as ratios to the peers' capacity.
TARGET_VS_MLSERVER = 2.0
TARGET_VS_STOCK = 3.0
TARGET_VS_CEILING = 0.35
TARGET_FILE_VS_IN_PROCESS = 0.5
#: Issue 14: ``/v1/score/batch`` with 1,000-row batches, as a share of the in-process rate.
TARGET_BATCH_VS_IN_PROCESS = 0.5
TARGET_REJECTION_P99_MS = 20.0
#: Issue 14: requests admitted while the service sheds still answer within this p99.
TARGET_ADMITTED_P99_MS = 30.0
TARGET_RECOVERY_S = 5.0
#: Issue 17: single scoring with the history store, as a share of the stateless throughput.
TARGET_STATEFUL_VS_STATELESS = 0.6
#: Issue 18: the stateful path with the decision ledger on, as a share of it with the ledger off.
TARGET_LEDGER_VS_NO_LEDGER = 0.85


def _relative_checks(
    target: dict[str, Any], baseline: float | None, goal: float, what: str, name: str
) -> list[dict[str, Any]]:
    """``target``'s max sustained rate over ``baseline``'s (>= ``goal``), and its errors."""
    value = target["max_sustained_rps"] / baseline if baseline else None
    best = target.get("at_max") or {}
    up_to = best.get("offered_rps", 0.0)
    errors = sum(s["errors"] for s in target["steps"] if s["offered_rps"] <= up_to)
    return [
        {
            "target": f"{what} (p99 <= 15 ms) >= {goal:.0%}",
            "value": value,
            "met": None if value is None else value >= goal,
        },
        {
            "target": f"{name}: errors up to its max sustained rate",
            "value": errors,
            "met": errors == 0 if best else None,
        },
    ]


def stateful_checks(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 17's speed targets for ``service-stateful`` (nothing when it did not run)."""
    targets = doc["targets"]
    stateful = targets.get("service-stateful")
    if not stateful:
        return []
    stateless = targets.get("service", {}).get("max_sustained_rps")
    details = stateful.get("stateful") or {}
    degraded = details.get("degraded_rows")
    probe = details.get("store_round_trip") or {}
    what = "stateful / stateless throughput"
    return [
        *_relative_checks(stateful, stateless, TARGET_STATEFUL_VS_STATELESS, what, "stateful"),
        {
            "target": "stateful: rows scored without history (unavailable), whole ladder",
            "value": degraded,
            "met": None if degraded is None else degraded == 0,
        },
        {
            "target": "(context) store's share of the time per batch",
            "value": details.get("store_share_of_batch"),
            "met": None,
        },
        {
            "target": "(context) store round trip p99 ms (client-side, service's batch sizes)",
            "value": probe.get("p99_ms"),
            "met": None,
        },
    ]


def ledger_checks(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 18's speed target for ``service-stateful-ledger`` (nothing when it did not run)."""
    targets = doc["targets"]
    recorded = targets.get("service-stateful-ledger")
    if not recorded:
        return []
    without = targets.get("service-stateful", {}).get("max_sustained_rps")
    ledger = recorded.get("ledger") or {}
    left = ledger.get("spool_rows_left")
    answered = ledger.get("decisions_answered")
    what = "ledger on / off, stateful"
    return [
        *_relative_checks(recorded, without, TARGET_LEDGER_VS_NO_LEDGER, what, "ledger on"),
        {
            "target": "ledger on: decisions left in the spool after the drain",
            "value": left,
            "met": None if left is None else left == 0,
        },
        {
            "target": "(context) ledger: seconds to drain the spool after the ladder",
            "value": ledger.get("drain_seconds"),
            "met": None,
        },
        {
            "target": "(context) ledger: distinct ids stored / decisions answered",
            "value": ledger["distinct_ids_stored"] / answered if answered else None,
            "met": None,
        },
    ]


def target_checks(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each issue target with the measured value and whether it is met (None: not measured)."""
    targets = doc["targets"]
    ours = targets.get("service", {})
    capacity = ours.get("max_sustained_rps", 0.0)
    checks: list[dict[str, Any]] = []

    def ratio_check(peer: str, goal: float, what: str) -> None:
        other = targets.get(peer, {}).get("max_sustained_rps")
        if other == 0 and capacity > 0 and peer in targets:
            value: float | None = math.inf  # the peer never met the p99 bound at any rate
        else:
            value = capacity / other if other else None
        checks.append(
            {
                "target": f"{what} >= {goal:g}x",
                "value": value,
                "met": None if value is None else value >= goal,
            }
        )

    ratio_check("mlserver", TARGET_VS_MLSERVER, "throughput vs MLServer")
    ratio_check("stock-bentoml", TARGET_VS_STOCK, "throughput vs stock BentoML")
    ratio_check("starlette-echo", TARGET_VS_CEILING, "throughput vs Starlette ceiling")
    # Secondary view for noisy machines: error-free peak throughput, whatever the latency.
    own_peak = ours.get("peak_rps", 0.0)
    for peer, goal, what in (
        ("mlserver", TARGET_VS_MLSERVER, "MLServer"),
        ("stock-bentoml", TARGET_VS_STOCK, "stock BentoML"),
        ("starlette-echo", TARGET_VS_CEILING, "Starlette ceiling"),
    ):
        other = targets.get(peer, {}).get("peak_rps")
        value = own_peak / other if other and own_peak else None
        checks.append(
            {
                "target": f"(peak, any p99) vs {what} >= {goal:g}x",
                "value": value,
                "met": None if value is None else value >= goal,
            }
        )
    steps = ours.get("steps", [])
    below = [s for s in steps if s["offered_rps"] <= capacity]
    early_rejections = sum(s.get("rejections", 0) for s in below)
    checks.append(
        {
            "target": "no 503/429 below capacity",
            "value": early_rejections,
            "met": early_rejections == 0 if steps else None,
        }
    )
    over = ours.get("overload") or {}
    rejection_p99 = over.get("rejection_p99_ms")
    checks.append(
        {
            "target": f"rejection p99 < {TARGET_REJECTION_P99_MS:g} ms (2x capacity)",
            "value": rejection_p99,
            "met": None if rejection_p99 is None else rejection_p99 < TARGET_REJECTION_P99_MS,
        }
    )
    admitted_p99 = over.get("admitted_p99_ms")
    if admitted_p99 is not None:
        checks.append(
            {
                "target": f"admitted requests' p99 during the overload <= "
                f"{TARGET_ADMITTED_P99_MS:g} ms",
                "value": admitted_p99,
                "met": admitted_p99 <= TARGET_ADMITTED_P99_MS,
            }
        )
    floor = (targets.get("starlette-echo", {}).get("overload_floor") or {}).get("overload_p99_ms")
    if floor is not None:
        checks.append(
            {
                "target": "(context) bare echo p99 under the same overload plan and client",
                "value": floor,
                "met": None,
            }
        )
    recovery = over.get("recovery_s_after_drop")
    checks.append(
        {
            "target": f"recovery <= {TARGET_RECOVERY_S:g} s after load drops",
            "value": recovery,
            "met": None if not over else recovery is not None and recovery <= TARGET_RECOVERY_S,
        }
    )
    bulk = ours.get("bulk") or {}
    batch_share = bulk.get("batch_vs_in_process")
    if batch_share is not None:
        rows = bulk.get("batch_size", 1000)
        checks.append(
            {
                "target": f"batch endpoint ({rows:,} rows per request) "
                f">= {TARGET_BATCH_VS_IN_PROCESS:.0%} of in-process",
                "value": batch_share,
                "met": batch_share >= TARGET_BATCH_VS_IN_PROCESS,
            }
        )
    for fmt, share in (bulk.get("file_vs_in_process") or {}).items():
        checks.append(
            {
                "target": f"file endpoint ({fmt}) >= 50% of in-process",
                "value": share,
                "met": share >= TARGET_FILE_VS_IN_PROCESS,
            }
        )
    return checks + stateful_checks(doc) + ledger_checks(doc)


def stateful_section(doc: dict[str, Any]) -> list[str]:
    """Where a stateful batch's time goes: the service's metrics, Valkey's, the store probe."""
    details = (doc["targets"].get("service-stateful") or {}).get("stateful")
    if not details:
        return []
    service, cpu = details["service"], details["valkey_script_cpu"]
    probe, fill = details["store_round_trip"], details["backfill"]
    share = details.get("store_share_of_batch")
    return [
        "",
        "Stateful target (history in Valkey on loopback, pinned to the server core; raw "
        f"fields only): backfilled {fill['rows']:,.0f} rows at {fill['rows_per_second']:,.0f} "
        f"rows/s; over its ladder the service scored {service['rows']:,.0f} rows in "
        f"{service['batches']:,.0f} adaptive batches (mean {service['mean_batch_rows']:.2f} "
        f"rows), history {_fmt_counts(service['history_rows'])}.",
        "",
        "| per adaptive batch | ms |",
        "|---|---:|",
        f"| model steps (preprocess + predict + postprocess, service metrics) | "
        f"{service['model_seconds_per_batch'] * 1e3:.3f} |",
        f"| Valkey CPU per script call (`INFO commandstats`, {cpu['calls']:,.0f} calls) | "
        f"{cpu['cpu_us_per_call'] / 1e3:.3f} |",
        f"| store round trip, client-side probe: mean / p50 / p99 ({probe['calls']:,.0f} "
        f"calls, mean {probe['mean_batch_rows']:.2f} rows) | {probe['mean_ms']:.3f} / "
        f"{probe['p50_ms']:.3f} / {probe['p99_ms']:.3f} |",
        "",
        "Store share of the time per batch = probe mean / (probe mean + model steps): "
        f"{_fmt(None if share is None else share * 100)}% (the probe runs with the service "
        "idle, so it does not include the store's wait for the shared core under load); "
        "Valkey's own CPU time alone is "
        f"{_fmt(_share(cpu['cpu_us_per_call'] / 1e3, service['model_seconds_per_batch'] * 1e3))}"
        "% of (its CPU + the model steps).",
    ]


def _share(part: float, rest: float) -> float | None:
    return 100 * part / (part + rest) if part + rest > 0 else None


def _fmt_counts(counts: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:,.0f}" for name, value in counts.items())


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def render_markdown(doc: dict[str, Any]) -> str:
    """The human-readable report: method, tables per system, bulk rates and target checks."""
    lines = [
        f"Measured {doc['generated_at']} with `{doc['command']}` (model `{doc['model_tag']}`): "
        f"server pinned to core {doc['method']['server_core']}, {doc['method']['client']} on "
        f"core {doc['method']['client_core']}, {doc['method']['step_seconds']:g} s per step. "
        f"Sustained = {doc['method']['sustained']} (bound {doc['method']['p99_bound_ms']:g} ms). "
        f"Load average at start/end: {_fmt(doc['machine']['load_average_at_start'][0], 2)} / "
        f"{_fmt(doc['machine'].get('load_average_at_end', [None])[0], 2)}.",
        "",
        "| system | max sustained req/s (p99 <= 15 ms) | p50 / p99 ms there | "
        "peak req/s (0 errors, any p99) | p50 / p99 ms at peak | RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for result in doc["targets"].values():
        best = result.get("at_max") or {}
        top = result.get("at_peak") or {}
        lines.append(
            f"| {result['label']} | {_fmt(result['max_sustained_rps'], 0)} | "
            f"{_fmt(best.get('p50_ms'))} / {_fmt(best.get('p99_ms'))} | "
            f"{_fmt(result.get('peak_rps'), 0)} | "
            f"{_fmt(top.get('p50_ms'))} / {_fmt(top.get('p99_ms'))} | "
            f"{_fmt(result['rss_mb']['end'], 0)} |"
        )
    bulk = doc["targets"].get("service", {}).get("bulk")
    if bulk:
        lines += [
            "",
            f"Bulk scoring, {bulk['rows']:,} rows, transactions/s on one server core:",
            "",
            "| path | rows/s/core | share of in-process |",
            "|---|---:|---:|",
            f"| in-process (features + predict, 1 thread) | "
            f"{_fmt(bulk['in_process_rows_per_s'], 0)} | 100% |",
            f"| `/v1/score/batch` ({bulk['batch_size']:,} rows per request) | "
            f"{_fmt(bulk['batch_endpoint_rows_per_s'], 0)} | "
            f"{bulk['batch_vs_in_process']:.0%} |",
        ]
        for fmt, rate in bulk["file_endpoint_rows_per_s"].items():
            lines.append(
                f"| `/v1/score/file` ({fmt}) | {_fmt(rate, 0)} | "
                f"{bulk['file_vs_in_process'][fmt]:.0%} |"
            )
        batch = bulk.get("batch_endpoint")
        if batch:
            lines += [
                "",
                f"Batch endpoint: {batch['requests']:,} requests of {batch['rows_per_request']:,} "
                f"rows in {batch['seconds']:.1f} s, {batch['in_flight']} in flight; every answer "
                "was checked row by row against the in-process probabilities before the timed "
                "part. File endpoint: the whole table in one upload, best of 3.",
            ]
    lines += ["", "| target (issues 7, 14 and 17) | measured | met |", "|---|---:|---|"]
    for check in target_checks(doc):
        met = {True: "yes", False: "**no**", None: "not measured"}[check["met"]]
        if check["target"].startswith("(context)"):
            met = "-"
        lines.append(f"| {check['target']} | {_fmt(check['value'], 2)} | {met} |")
    lines += stateful_section(doc)
    profile = doc["targets"].get("service", {}).get("profile")
    if profile:
        lines += [
            "",
            f"py-spy profile of the service at {profile['rate_rps']:,.0f} req/s "
            f"({profile['samples']:,} samples, all server processes; collapsed stacks in "
            f"`{profile['raw_file']}`):",
            "",
            "| function (self time) | share | function (inclusive) | share |",
            "|---|---:|---|---:|",
        ]
        for own, total in zip(profile["top_self"][:12], profile["top_total"][:12], strict=False):
            lines.append(
                f"| `{own['function']}` | {own['share']:.1%} | "
                f"`{total['function']}` | {total['share']:.1%} |"
            )
    lines += [
        "",
        "How this is measured and what the runs showed: "
        "[docs/performance.md](../docs/performance.md).",
    ]
    return "\n".join(lines) + "\n"


def plot(doc: dict[str, Any], out: Path) -> Path:
    """Latency (p50, p99) and achieved throughput against offered load, per system."""
    fig, (lat_ax, rps_ax) = plt.subplots(1, 2, figsize=(13, 5))
    for name, result in doc["targets"].items():
        steps = result["steps"]
        offered = [s["offered_rps"] for s in steps]
        (line,) = lat_ax.plot(
            offered, [s["p99_ms"] for s in steps], marker="o", label=f"{name} p99"
        )
        lat_ax.plot(
            offered,
            [s["p50_ms"] for s in steps],
            ls=":",
            color=line.get_color(),
            label=f"{name} p50",
        )
        rps_ax.plot(
            offered,
            [s["achieved_rps"] for s in steps],
            marker="o",
            label=name,
            color=line.get_color(),
        )
    lat_ax.axhline(doc["method"]["p99_bound_ms"], color="red", lw=0.8, ls="--", label="15 ms")
    lat_ax.set(
        xscale="log",
        yscale="log",
        xlabel="offered req/s",
        ylabel="latency ms",
        title="Latency vs offered load (one core)",
    )
    rps_ax.set(
        xscale="log",
        yscale="log",
        xlabel="offered req/s",
        ylabel="served req/s",
        title="Throughput vs offered load",
    )
    lat_ax.legend(fontsize=7)
    rps_ax.legend(fontsize=8)
    for axis in (lat_ax, rps_ax):
        axis.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_reports(doc: dict[str, Any], out_dir: Path) -> None:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {**doc, "checks": target_checks(doc)}
    (out_dir / "bench.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out_dir / "bench.md").write_text("# Benchmark\n\n" + render_markdown(doc))
    plot(doc, out_dir / "bench.png")


def main(argv: list[str] | None = None) -> None:
    """CLI: re-render ``bench.md`` and ``bench.png`` beside an existing ``bench.json``."""
    parser = argparse.ArgumentParser(description="Re-render the benchmark report.")
    parser.add_argument("bench_json", type=Path)
    args = parser.parse_args(argv)
    doc = json.loads(args.bench_json.read_text())
    write_reports(doc, args.bench_json.parent)


if __name__ == "__main__":
    main()
