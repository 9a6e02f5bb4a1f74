"""Turn API answers into what the page shows: HTML cards, tables and chart data.

Pure functions of their inputs (no Gradio, no HTTP), so they are unit-tested directly.
Every string that came from outside is HTML-escaped.
"""

from __future__ import annotations

import itertools
from html import escape
from typing import Final

import numpy as np
import pandas as pd

from fraud_contract import AGGREGATE_FIELDS
from fraud_contract.api import ModelInfo, ScoreResult
from ui.form import field_label
from ui.replay import ReplaySnapshot
from ui.service_stats import ServiceStats

HISTOGRAM_BINS: Final = 20
#: Risk bands get a colour by their position (lowest band first).
_BAND_COLOURS: Final = ("#15803d", "#ca8a04", "#ea580c", "#b91c1c", "#7f1d1d")
REASON_COLUMNS: Final = ("feature", "contribution", "direction", "value")
AGGREGATE_COLUMNS: Final = ("aggregate", "value", "field")
STREAM_COLUMNS: Final = (
    "time",
    "card",
    "terminal",
    "amount",
    "probability",
    "band",
    "decision",
    "history",
)
#: What each ``history`` state of a result means, in the analyst's words.
HISTORY_WORDS: Final[dict[str | None, str]] = {
    "used": "History used: the service computed the card's and terminal's history from its "
    "store (any value typed in the expert section was sent and wins).",
    "replayed": "Already seen: this transaction id was scored before, so the service reused "
    "the history it stored then and did not record the transaction again.",
    "unavailable": "History store unavailable: the service scored this transaction without "
    "the card's and terminal's history (only the values sent were known to the model).",
    None: "No history store on this API: the aggregates were not computed server-side; the "
    "model saw only the fields sent (blank history fields are unknown to it).",
}
#: Short form for the Live tab's table.
HISTORY_SHORT: Final[dict[str, str]] = {
    "used": "used",
    "replayed": "replayed",
    "unavailable": "unavailable",
    "none": "no store",
}


def error_html(message: str) -> str:
    """A red call-out with one plain sentence."""
    return f'<div class="fraud-error" role="alert">{escape(message)}</div>'


def notice_html(message: str) -> str:
    """A neutral call-out (e.g. 'no plots yet')."""
    return f'<div class="fraud-notice">{escape(message)}</div>'


def band_colour(band: str, bands: list[str] | None) -> str:
    """Colour of a risk band: by its rank among the model's bands, grey if unknown."""
    if bands and band in bands:
        index = bands.index(band) * (len(_BAND_COLOURS) - 1) // max(1, len(bands) - 1)
        return _BAND_COLOURS[index]
    return "#475569"


def result_card_html(result: ScoreResult, latency_ms: float, bands: list[str] | None) -> str:
    """The score result card: probability, decision vs threshold, band, model, latency."""
    decision = "Fraud alert" if result.is_fraud else "No alert"
    decision_class = "alert" if result.is_fraud else "clear"
    comparison = "≥" if result.is_fraud else "<"
    colour = band_colour(result.risk_band, bands)
    tx = f" for {escape(result.transaction_id)}" if result.transaction_id else ""
    history_key = result.history or "none"
    return (
        f'<div class="fraud-result" data-decision="{decision_class}">'
        f'<div class="fraud-decision {decision_class}" id="fraud-decision">{decision}</div>'
        f'<div class="fraud-prob"><span id="fraud-probability">'
        f"{result.fraud_probability:.1%}</span> fraud probability{tx}</div>"
        f'<div class="fraud-detail">{result.fraud_probability:.4f} {comparison} threshold '
        f'<span id="fraud-threshold">{result.threshold:.4f}</span></div>'
        f'<div class="fraud-detail">Risk band: <span class="fraud-band" id="fraud-band" '
        f'style="background:{colour}">{escape(result.risk_band)}</span></div>'
        f'<div class="fraud-history" id="fraud-history" data-history="{history_key}">'
        f"{escape(HISTORY_WORDS[result.history])}</div>"
        f'<div class="fraud-meta">Model <code id="fraud-model">{escape(result.model_tag)}</code>'
        f' · round trip <span id="fraud-latency">{latency_ms:.0f} ms</span></div>'
        "</div>"
    )


def reasons_frame(result: ScoreResult) -> pd.DataFrame:
    """Top reasons as a frame for the bar chart (largest absolute contribution first)."""
    rows = [
        {
            "feature": reason.feature,
            "contribution": round(reason.contribution, 4),
            "direction": "raises risk" if reason.contribution >= 0 else "lowers risk",
            "value": "missing" if reason.value is None else f"{reason.value:.4g}",
        }
        for reason in sorted(result.reasons, key=lambda r: abs(r.contribution), reverse=True)
    ]
    return pd.DataFrame(rows, columns=list(REASON_COLUMNS))


def aggregates_frame(result: ScoreResult) -> pd.DataFrame:
    """The 19 aggregates the model saw (contract order); empty when the API sent none."""
    seen = result.aggregates or {}
    rows = [
        {
            "aggregate": field_label(name),
            "field": name,
            "value": "missing" if seen.get(name) is None else f"{seen[name]:.4g}",
        }
        for name in AGGREGATE_FIELDS
        if result.aggregates is not None
    ]
    return pd.DataFrame(rows, columns=list(AGGREGATE_COLUMNS))


def empty_reasons() -> pd.DataFrame:
    """An empty reasons frame (chart with no bars)."""
    return pd.DataFrame(columns=list(REASON_COLUMNS))


def score_histogram(probabilities: pd.Series) -> pd.DataFrame:
    """Counts of fraud probabilities in 20 equal bins over [0, 1], labelled by their range."""
    values = pd.to_numeric(probabilities, errors="coerce").dropna().clip(0.0, 1.0)
    counts, edges = np.histogram(values.to_numpy(), bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    labels = [f"{lo:.2f}-{hi:.2f}" for lo, hi in itertools.pairwise(edges)]
    return pd.DataFrame({"score": labels, "transactions": counts.astype(int)})


def batch_summary_html(scored: pd.DataFrame) -> str:
    """Rows, alerts, alert rate and rows per risk band of a scored file."""
    rows = len(scored)
    alerts = int(pd.Series(scored["is_fraud"]).astype(str).str.lower().isin({"true", "1"}).sum())
    rate = alerts / rows if rows else 0.0
    bands = scored["risk_band"].astype(str).value_counts()
    band_items = "".join(
        f"<li>{escape(str(band))}: {int(count)}</li>" for band, count in bands.items()
    )
    return (
        '<div class="fraud-summary">'
        f'<div class="fraud-tile"><b id="batch-rows">{rows}</b> transactions</div>'
        f'<div class="fraud-tile"><b id="batch-alerts">{alerts}</b> alerts</div>'
        f'<div class="fraud-tile"><b id="batch-alert-rate">{rate:.2%}</b> alert rate</div>'
        f'<div class="fraud-tile">By risk band<ul>{band_items}</ul></div>'
        "</div>"
    )


def model_card_markdown(info: ModelInfo) -> str:
    """The model card as Markdown: identity, threshold, bands, training data."""
    bands = ", ".join(f"**{b.name}** from {b.lower:.3f}" for b in info.risk_bands)
    override = (
        f" (overrides the model's {info.model_threshold:.4f})"
        if abs(info.threshold - info.model_threshold) > 1e-12
        else ""
    )
    dataset = ", ".join(f"{k}: {v}" for k, v in sorted(info.dataset.items())) or "not recorded"
    return "\n".join(
        [
            f"### Model `{info.tag}`",
            f"- **Trained at:** {info.trained_at}",
            f"- **Decision threshold:** {info.threshold:.4f}{override}",
            f"- **How the threshold was chosen:** {info.threshold_rule}",
            f"- **Risk bands:** {bands}",
            f"- **Features:** {len(info.feature_names)}",
            f"- **Training data:** {dataset}",
            f"- **Code version:** `{info.code_version}`",
        ]
    )


def metrics_frame(info: ModelInfo) -> pd.DataFrame:
    """Evaluation metrics and per-scenario recall as a two-column table."""
    rows = [{"metric": name, "value": round(value, 4)} for name, value in info.metrics.items()]
    rows += [
        {"metric": f"recall: {scenario}", "value": round(value, 4)}
        for scenario, value in info.scenario_recall.items()
    ]
    return pd.DataFrame(rows, columns=["metric", "value"])


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def service_stats_html(stats: ServiceStats) -> str:
    """Tiles for throughput, latency percentiles, error rate and totals."""
    if stats.basis == "window" and stats.window_s:
        basis = f"Rates and percentiles over the last {stats.window_s:.0f} s."
    elif stats.window_s:
        basis = (
            f"No scoring requests in the last {stats.window_s:.0f} s; "
            "error rates and percentiles since the API started."
        )
    else:
        basis = (
            "Error rates and percentiles since the API started; throughput from the next refresh."
        )
    tiles = [
        ("svc-throughput", _fmt(stats.throughput_rps, "{:.1f} req/s"), "throughput"),
        ("svc-p50", _fmt(stats.p50_ms, "{:.0f} ms"), "p50 latency"),
        ("svc-p95", _fmt(stats.p95_ms, "{:.0f} ms"), "p95 latency"),
        ("svc-p99", _fmt(stats.p99_ms, "{:.0f} ms"), "p99 latency"),
        ("svc-error-rate", _fmt(stats.error_rate, "{:.2%}"), "server errors (5xx)"),
        ("svc-rejected-rate", _fmt(stats.rejected_rate, "{:.2%}"), "rejected input (4xx)"),
        ("svc-total", f"{stats.total_requests:.0f}", "scoring requests in total"),
        ("svc-in-progress", _fmt(stats.in_progress, "{:.0f}"), "in progress now"),
    ]
    body = "".join(
        f'<div class="fraud-tile"><b id="{tid}">{value}</b> {label}</div>'
        for tid, value, label in tiles
    )
    return f'<div class="fraud-summary">{body}</div><div class="fraud-meta">{escape(basis)}</div>'


def stream_frame(snapshot: ReplaySnapshot) -> pd.DataFrame:
    """The Live tab's stream table, newest first."""
    rows = [
        {
            "time": row.time,
            "card": row.card,
            "terminal": row.terminal,
            "amount": f"{row.amount:.2f}",
            "probability": f"{row.probability:.3f}",
            "band": row.band,
            "decision": "ALERT" if row.alert else "clear",
            "history": HISTORY_SHORT.get(row.history, row.history),
        }
        for row in snapshot.rows
    ]
    return pd.DataFrame(rows, columns=list(STREAM_COLUMNS))


def live_counters_html(snapshot: ReplaySnapshot) -> str:
    """Tiles: scored, scored/min, alerts, history unavailable, failed calls, simulated time."""
    rate = snapshot.alerts / snapshot.scored if snapshot.scored else 0.0
    state = f"running at {snapshot.speed:g}x" if snapshot.running else "stopped"
    tiles = [
        ("live-state", state, "replay"),
        ("live-scored", f"{snapshot.scored}", "transactions scored"),
        ("live-per-min", f"{snapshot.scored_per_min:.0f}", "scored in the last minute"),
        ("live-alerts", f"{snapshot.alerts}", f"alerts ({rate:.2%})"),
        ("live-unavailable", f"{snapshot.history_unavailable}", "scored without history"),
        ("live-failed", f"{snapshot.failed_calls}", "failed API calls"),
        ("live-sim-time", escape(snapshot.simulated_time or "n/a"), "simulated time"),
    ]
    body = "".join(
        f'<div class="fraud-tile"><b id="{tid}">{value}</b> {label}</div>'
        for tid, value, label in tiles
    )
    return f'<div class="fraud-summary">{body}</div>'


def _svg(title: str, body: str, width: int, height: int, element_id: str) -> str:
    return (
        f'<figure class="fraud-chart" id="{element_id}"><figcaption>{escape(title)}</figcaption>'
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}">{body}</svg></figure>'
    )


def distribution_svg(probabilities: list[float], bins: int = HISTOGRAM_BINS) -> str:
    """The score distribution as an inline SVG bar chart (20 bins over [0, 1]).

    Plain SVG rather than a Gradio plot: the Live tab refreshes every second, also while
    another tab is shown, and Gradio's plots throw in the browser when redrawn while hidden.
    """
    width, height, base = 400, 140, 120
    counts, _ = np.histogram(np.clip(probabilities, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    top = max(1, int(counts.max())) if len(probabilities) else 1
    step = width / bins
    bars = "".join(
        f'<rect x="{i * step + 1:.1f}" y="{base - base * int(c) / top:.1f}" '
        f'width="{step - 2:.1f}" height="{base * int(c) / top:.1f}" fill="#6366f1">'
        f"<title>{i / bins:.2f}-{(i + 1) / bins:.2f}: {int(c)}</title></rect>"
        for i, c in enumerate(counts)
    )
    axis = (
        f'<line x1="0" y1="{base}" x2="{width}" y2="{base}" stroke="#94a3b8"/>'
        f'<text x="0" y="{height - 4}" font-size="11" fill="#475569">0</text>'
        f'<text x="{width / 2 - 8}" y="{height - 4}" font-size="11" fill="#475569">0.5</text>'
        f'<text x="{width - 8}" y="{height - 4}" font-size="11" fill="#475569">1</text>'
    )
    title = f"Score distribution (last {len(probabilities)} transactions, max {top} per bin)"
    return _svg(title, bars + axis, width, height, "live-distribution")


def alert_rate_svg(points: list[tuple[str, float]]) -> str:
    """The alert rate per few seconds as an inline SVG line (same reason as above)."""
    width, height, base = 400, 140, 120
    peak = max((rate for _, rate in points), default=0.0)
    top = max(peak, 0.01)
    if len(points) >= 2:
        step = width / (len(points) - 1)
        coords = " ".join(
            f"{i * step:.1f},{base - base * rate / top:.1f}" for i, (_, rate) in enumerate(points)
        )
        line = f'<polyline points="{coords}" fill="none" stroke="#b91c1c" stroke-width="2"/>'
    elif points:
        y = base - base * points[0][1] / top
        line = f'<circle cx="{width / 2}" cy="{y:.1f}" r="3" fill="#b91c1c"/>'
    else:
        line = ""
    span = f"{points[0][0]} to {points[-1][0]} UTC" if points else "no data yet"
    axis = (
        f'<line x1="0" y1="{base}" x2="{width}" y2="{base}" stroke="#94a3b8"/>'
        f'<text x="0" y="{height - 4}" font-size="11" fill="#475569">{escape(span)}</text>'
    )
    title = f"Alert rate per 5 s (peak {peak:.1%})"
    return _svg(title, line + axis, width, height, "live-alert-rate-svg")
