"""The page: six tabs (Score, Live, Alerts, Batch, Model, Service) and their handlers."""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import gradio as gr
import pandas as pd

from fraud_contract import AGGREGATE_FIELDS, TRANSACTION_FIELDS
from ui.alerts import AlertHandlers, AlertsState
from ui.alerts_render import AGGREGATE_COLUMNS as ALERT_AGGREGATE_COLUMNS
from ui.alerts_render import LABEL_EFFECT, QUEUE_COLUMNS
from ui.form import (
    FORM_FIELDS,
    IDENTITY_FIELDS,
    TEXT_FIELDS,
    Example,
    default_transaction,
    field_help,
    field_label,
    form_values,
)
from ui.handlers import Handlers, ServiceState, empty_history
from ui.render import AGGREGATE_COLUMNS, STREAM_COLUMNS, empty_reasons
from ui.replay import SPEEDS

TITLE: Final = "Card fraud scoring"

CSS: Final = """
.fraud-error { background:#fef2f2; border:1px solid #fca5a5; color:#991b1b; padding:10px 14px;
  border-radius:8px; font-weight:600; }
.fraud-notice { background:#f1f5f9; border:1px solid #cbd5e1; color:#334155; padding:8px 12px;
  border-radius:8px; }
.fraud-result { padding:14px 18px; border-radius:12px; border:1px solid #e2e8f0; }
.fraud-result[data-decision=alert] { background:#fff1f2; border-color:#fda4af; }
.fraud-result[data-decision=clear] { background:#f0fdf4; border-color:#86efac; }
.fraud-decision { font-size:1.6em; font-weight:700; }
.fraud-decision.alert { color:#b91c1c; } .fraud-decision.clear { color:#15803d; }
.fraud-prob { font-size:1.2em; margin:6px 0; } .fraud-prob span { font-weight:700; }
.fraud-band { color:white; padding:2px 10px; border-radius:999px; font-weight:600; }
.fraud-meta { color:#64748b; font-size:0.9em; margin-top:6px; }
.fraud-summary { display:flex; flex-wrap:wrap; gap:10px; }
.fraud-tile { border:1px solid #e2e8f0; border-radius:10px; padding:8px 14px; min-width:140px; }
.fraud-tile b { font-size:1.3em; display:block; }
.fraud-tile ul { margin:0; padding-left:18px; }
.fraud-chart { margin:0; } .fraud-chart figcaption { font-weight:600; color:#334155; }
.fraud-history { margin-top:8px; padding:6px 10px; border-radius:8px; background:#f8fafc;
  border-left:4px solid #6366f1; }
.fraud-history[data-history=unavailable], .fraud-history[data-history=none] {
  border-left-color:#f59e0b; background:#fffbeb; }
.fraud-reasons { border-collapse:collapse; width:100%; }
.fraud-reasons caption { text-align:left; font-weight:600; color:#334155; padding-bottom:4px; }
.fraud-reasons td, .fraud-reasons th { padding:3px 8px; border-bottom:1px solid #e2e8f0; }
.fraud-num { text-align:right; font-variant-numeric:tabular-nums; }
.fraud-bar-cell { width:40%; } .fraud-bar { display:inline-block; height:12px; border-radius:3px; }
"""


def _sample_csv(examples: Sequence[Example]) -> str | None:
    """Write the examples as a CSV analysts can download and upload back; None if no examples."""
    if not examples:
        return None
    path = Path(tempfile.mkdtemp(prefix="fraud-ui-sample-")) / "sample-transactions.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(TRANSACTION_FIELDS))
        writer.writeheader()
        for example in examples:
            writer.writerow(example.transaction)
    return str(path)


def _form_inputs(defaults: dict[str, Any]) -> dict[str, gr.components.Component]:
    """One input per contract field: identity fields in a row, aggregates in an accordion."""
    inputs: dict[str, gr.components.Component] = {}

    def make(name: str) -> None:
        label = field_label(name)
        info = field_help(name)
        if name in TEXT_FIELDS:
            inputs[name] = gr.Textbox(
                value=defaults.get(name), label=label, info=info, elem_id=f"field-{name}"
            )
        elif name in AGGREGATE_FIELDS:
            # A text box, not gr.Number: a number box shows and sends 0 for "no value", which
            # would override the history store with zeros.
            inputs[name] = gr.Textbox(
                value=defaults.get(name),
                label=label,
                info=info,
                placeholder="from the history store",
                elem_id=f"field-{name}",
            )
        else:
            inputs[name] = gr.Number(
                value=defaults.get(name), label=label, info=info, elem_id=f"field-{name}"
            )

    with gr.Row():
        for name in IDENTITY_FIELDS[:3]:
            make(name)
    with gr.Row():
        for name in IDENTITY_FIELDS[3:]:
            make(name)
    with gr.Accordion(
        "Expert: override the card and terminal history (blank = computed by the service "
        "from its history store; a value typed here is sent and wins)",
        open=False,
        elem_id="expert-history",
    ):
        for group in ("customer_", "terminal_"):
            names = [n for n in AGGREGATE_FIELDS if n.startswith(group)]
            for start in range(0, len(names), 4):
                with gr.Row():
                    for name in names[start : start + 4]:
                        make(name)
    return inputs


def build_blocks(
    handlers: Handlers, examples: Sequence[Example], refresh_interval_s: float
) -> gr.Blocks:
    """Assemble the page; every event runs a handler that cannot raise."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as blocks:
        gr.Markdown(
            f"# {TITLE}\nScore card transactions with the fraud model, see why it decided, "
            "and watch the scoring service live."
        )
        with gr.Tabs():
            with gr.Tab("Score", id="score", elem_id="tab-score"):
                _score_tab(handlers, examples)
            with gr.Tab("Live", id="live", elem_id="tab-live") as live_tab:
                # Refreshed when the tab is opened, not at page load: its charts must not be
                # drawn while the tab is not mounted.
                _live_tab(handlers, live_tab)
            with gr.Tab("Alerts", id="alerts", elem_id="tab-alerts") as alerts_tab:
                _alerts_tab(handlers.alerts, alerts_tab)
            with gr.Tab("Batch", id="batch", elem_id="tab-batch"):
                _batch_tab(handlers, examples)
            with gr.Tab("Model", id="model", elem_id="tab-model") as model_tab:
                model_load = _model_tab(handlers, model_tab)
            with gr.Tab("Service", id="service", elem_id="tab-service"):
                service_load = _service_tab(handlers, refresh_interval_s)
        blocks.load(**model_load)
        blocks.load(**service_load)
    return blocks


def _score_tab(handlers: Handlers, examples: Sequence[Example]) -> None:
    with gr.Row():
        with gr.Column(scale=3):
            if examples:
                gr.Markdown("**Examples from the simulator** (one click fills the form and scores)")
                with gr.Row():
                    buttons = [
                        gr.Button(
                            example.name.replace("_", " "),
                            size="sm",
                            elem_id=f"example-{example.name}",
                            elem_classes=["fraud-example"],
                        )
                        for example in examples
                    ]
                gr.Markdown(
                    "\n".join(
                        f"- **{example.name.replace('_', ' ')}**: {example.description}"
                        for example in examples
                        if example.description
                    ),
                    elem_id="example-descriptions",
                )
            else:
                buttons = []
                gr.Markdown("_No simulator examples are installed; fill in the form._")
            inputs = _form_inputs(default_transaction(examples))
            score_button = gr.Button("Score transaction", variant="primary", elem_id="score-btn")
        with gr.Column(scale=2):
            status = gr.HTML(elem_id="score-status")
            card = gr.HTML(elem_id="score-result")
            reasons = gr.BarPlot(
                empty_reasons(),
                x="feature",
                y="contribution",
                # One colour: a categorical colour whose categories change between results
                # left stale bars in Gradio's chart; the sign already shows the direction.
                title="Top reasons (above 0 raises the fraud log-odds, below 0 lowers it)",
                x_label_angle=-30,
                tooltip=["feature", "contribution", "direction", "value"],
                elem_id="score-reasons",
                label="Top reasons",
                visible=False,
            )
            aggregates = gr.Dataframe(
                pd.DataFrame(columns=list(AGGREGATE_COLUMNS)),
                label="Aggregates the model saw (from the history store or the expert section; "
                "empty when the API keeps no history store)",
                elem_id="score-aggregates",
                interactive=False,
            )
    form = [inputs[name] for name in FORM_FIELDS]
    outputs = [status, card, reasons, aggregates]
    score_button.click(handlers.score, inputs=form, outputs=outputs)
    for button, example in zip(buttons, examples, strict=True):
        button.click(_filler(example), outputs=form, show_progress="hidden").then(
            handlers.score, inputs=form, outputs=outputs
        )


def _filler(example: Example) -> Callable[[], list[Any]]:
    values = form_values(example.transaction)
    return lambda: list(values)


def _live_tab(handlers: Handlers, tab: gr.Tab) -> None:
    gr.Markdown(
        "Replay simulated transactions through the scoring API, raw fields only (time, card, "
        "terminal, amount): the service adds each card's and terminal's history from its "
        "store. The speed is simulated seconds per real second; Stop pauses and the next "
        "Start continues the stream. One replay per UI server, shared by every open page."
    )
    with gr.Row():
        speed = gr.Radio(
            [f"{value:g}x" for value in SPEEDS],
            value=f"{SPEEDS[2]:g}x",
            label="Speed (simulated time)",
            elem_id="live-speed",
        )
        start = gr.Button("Start replay", variant="primary", elem_id="live-start")
        stop = gr.Button("Stop", variant="stop", elem_id="live-stop")
    status = gr.HTML(elem_id="live-status")
    counters = gr.HTML(elem_id="live-counters")
    with gr.Row():
        distribution = gr.HTML(elem_id="live-distribution-box")
        alert_rate = gr.HTML(elem_id="live-alert-rate")
    stream = gr.Dataframe(
        pd.DataFrame(columns=list(STREAM_COLUMNS)),
        label="Stream (newest first, last 50)",
        elem_id="live-stream",
        interactive=False,
    )
    timer = gr.Timer(1.0, active=False)
    outputs = [status, counters, stream, distribution, alert_rate, timer]
    start.click(handlers.live_start, inputs=speed, outputs=outputs, show_progress="hidden")
    stop.click(handlers.live_stop, outputs=outputs, show_progress="hidden")
    event: dict[str, Any] = {
        "fn": handlers.live_refresh,
        "outputs": outputs,
        "show_progress": "hidden",
    }
    timer.tick(**event)
    tab.select(**event)


def _alerts_tab(alerts: AlertHandlers, tab: gr.Tab) -> None:
    gr.Markdown(
        "The queue of alerts not yet labelled, from the API's decision ledger, newest "
        "transaction first. Click a row to open it: the decision, its top reasons (TreeSHAP), "
        "every history aggregate the model saw and the recent decisions of the card and of the "
        "terminal (alerts or not, with their labels). Then label it."
    )
    queue_state = gr.State(AlertsState())
    opened = gr.State("")
    with gr.Row():
        refresh = gr.Button("Refresh", size="sm", elem_id="alerts-refresh")
        newest = gr.Button("Newest", size="sm", elem_id="alerts-newest")
        newer = gr.Button("◀ Newer", size="sm", elem_id="alerts-newer")
        older = gr.Button("Older ▶", size="sm", elem_id="alerts-older")
    status = gr.HTML(elem_id="alerts-status")
    queue = gr.Dataframe(
        pd.DataFrame(columns=list(QUEUE_COLUMNS)),
        label="Alert queue (not labelled yet; click a row to open it)",
        elem_id="alerts-queue",
        interactive=False,
    )
    page_info = gr.HTML(elem_id="alerts-page-info")
    with gr.Row():
        pick = gr.Dropdown(
            choices=[],
            label="Transaction on this page",
            elem_id="alerts-pick",
            allow_custom_value=True,
            scale=3,
        )
        open_button = gr.Button("Open", elem_id="alerts-open", scale=1)
    detail_status = gr.HTML(elem_id="alert-status")
    with gr.Row():
        with gr.Column(scale=3):
            decision = gr.HTML(elem_id="alert-decision")
            with gr.Row():
                fraud = gr.Button("Fraud", variant="stop", interactive=False, elem_id="alert-fraud")
                genuine = gr.Button(
                    "Genuine", variant="secondary", interactive=False, elem_id="alert-genuine"
                )
            gr.Markdown(LABEL_EFFECT, elem_id="alert-label-effect")
            label_events = gr.HTML(elem_id="alert-labels")
        with gr.Column(scale=2):
            reasons = gr.HTML(elem_id="alert-reasons")
            aggregates = gr.Dataframe(
                pd.DataFrame(columns=list(ALERT_AGGREGATE_COLUMNS)),
                label="History aggregates the model saw (missing: unknown to the model)",
                elem_id="alert-aggregates",
                interactive=False,
            )
    history_note = gr.HTML(elem_id="alert-history-note")
    with gr.Row():
        card_history = gr.Dataframe(
            label="Recent decisions of this card", elem_id="alert-card-history"
        )
        terminal_history = gr.Dataframe(
            label="Recent decisions at this terminal", elem_id="alert-terminal-history"
        )
    queue_out = [status, queue, page_info, pick, queue_state]
    detail_out = [
        detail_status,
        decision,
        reasons,
        aggregates,
        card_history,
        terminal_history,
        history_note,
        label_events,
        fraud,
        genuine,
        opened,
    ]
    quiet: dict[str, Any] = {"show_progress": "hidden"}
    tab.select(alerts.refresh, inputs=queue_state, outputs=queue_out, **quiet)
    refresh.click(alerts.refresh, inputs=queue_state, outputs=queue_out, **quiet)
    newest.click(alerts.first, inputs=queue_state, outputs=queue_out, **quiet)
    newer.click(alerts.newer, inputs=queue_state, outputs=queue_out, **quiet)
    older.click(alerts.older, inputs=queue_state, outputs=queue_out, **quiet)
    queue.select(alerts.open_row, inputs=queue_state, outputs=detail_out, **quiet)
    open_button.click(alerts.open, inputs=pick, outputs=detail_out, **quiet)
    for button, action in ((fraud, alerts.label_fraud), (genuine, alerts.label_genuine)):
        button.click(action, inputs=opened, outputs=detail_out, **quiet).then(
            alerts.refresh, inputs=queue_state, outputs=queue_out, **quiet
        )


def _batch_tab(handlers: Handlers, examples: Sequence[Example]) -> None:
    gr.Markdown(
        "Upload a CSV or Parquet file with one transaction per row (the same columns as the "
        "Score form). The scored file adds `fraud_probability`, `is_fraud` and `risk_band`."
    )
    with gr.Row():
        upload = gr.File(
            label="Transactions (CSV or Parquet)",
            file_types=[".csv", ".parquet"],
            type="filepath",
            elem_id="batch-upload",
        )
        sample = _sample_csv(examples)
        if sample is not None:
            gr.File(value=sample, label="Sample file to try", elem_id="batch-sample")
    run = gr.Button("Score file", variant="primary", elem_id="batch-btn")
    status = gr.HTML(elem_id="batch-status")
    summary = gr.HTML(elem_id="batch-summary")
    with gr.Row():
        histogram = gr.BarPlot(
            None,
            x="score",
            y="transactions",
            title="Fraud probability distribution",
            x_label_angle=-45,
            elem_id="batch-histogram",
            label="Score histogram",
        )
        download = gr.File(label="Scored file", elem_id="batch-download", interactive=False)
    table = gr.Dataframe(label="Scored transactions", elem_id="batch-table", interactive=False)
    run.click(
        handlers.score_file, inputs=upload, outputs=[status, summary, table, histogram, download]
    )


def _model_tab(handlers: Handlers, tab: gr.Tab) -> dict[str, Any]:
    status = gr.HTML(elem_id="model-status")
    with gr.Row():
        with gr.Column():
            card = gr.Markdown(elem_id="model-card")
            refresh = gr.Button("Reload model card", size="sm", elem_id="model-refresh")
        metrics = gr.Dataframe(
            label="Held-out evaluation", elem_id="model-metrics", interactive=False
        )
    plot_note = gr.HTML(elem_id="model-plots-note")
    gallery = gr.Gallery(
        label="Evaluation plots from training",
        columns=3,
        height="auto",
        elem_id="model-plots",
        allow_preview=True,
        visible=False,
    )
    event: dict[str, Any] = {
        "fn": handlers.model,
        "outputs": [status, card, metrics, gallery, plot_note],
        "show_progress": "hidden",
    }
    refresh.click(**event)
    tab.select(**event)
    return event


def _service_tab(handlers: Handlers, refresh_interval_s: float) -> dict[str, Any]:
    gr.Markdown(
        f"Live numbers from the scoring API's `/metrics`, refreshed every "
        f"{refresh_interval_s:g} s (scoring endpoints only)."
    )
    state = gr.State(ServiceState())
    status = gr.HTML(elem_id="service-status")
    tiles = gr.HTML(elem_id="service-tiles")
    chart = gr.LinePlot(
        empty_history(),
        x="time",
        y="value",
        color="series",
        title="Throughput (req/s) and p95 latency (ms)",
        elem_id="service-chart",
        label="History",
    )
    timer = gr.Timer(refresh_interval_s)
    event: dict[str, Any] = {
        "fn": handlers.service,
        "inputs": [state],
        "outputs": [status, tiles, chart, state],
        "show_progress": "hidden",
    }
    timer.tick(**event)
    return event
