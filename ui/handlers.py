"""What happens when an analyst clicks: each handler returns page content, never raises.

Every failure becomes one sentence in the tab's status area (API unreachable, unauthorised,
invalid field X, ...). Unexpected exceptions are logged with their traceback for operators
and shown as a generic sentence, so the page never shows a stack trace or hangs.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import gradio as gr
import pandas as pd

from fraud_contract.api import SCORE_COLUMNS
from ui.alerts import AlertHandlers
from ui.client import APIError, ScoringClient
from ui.form import build_transaction
from ui.render import (
    AGGREGATE_COLUMNS,
    aggregates_frame,
    alert_rate_svg,
    batch_summary_html,
    distribution_svg,
    empty_reasons,
    error_html,
    live_counters_html,
    metrics_frame,
    model_card_markdown,
    notice_html,
    reasons_frame,
    result_card_html,
    score_histogram,
    service_stats_html,
    stream_frame,
)
from ui.replay import Replay, ReplaySnapshot
from ui.service_stats import MetricsSnapshot, compute_stats, parse_metrics
from ui.settings import UISettings

logger = logging.getLogger("fraud_ui")

T = TypeVar("T")
UNEXPECTED: Final = "Something unexpected went wrong in the UI; the details are in the UI's log."
SUPPORTED_SUFFIXES: Final = (".csv", ".parquet", ".pq")
#: Service-tab history kept per browser session (points on the throughput chart).
HISTORY_POINTS: Final = 60


@dataclass
class ServiceState:
    """Per-session state of the Service tab: the last scrape and a short history."""

    previous: MetricsSnapshot | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def empty_history() -> pd.DataFrame:
    """An empty frame for the throughput/latency chart."""
    return pd.DataFrame(
        {
            "time": pd.Series(dtype=str),
            "value": pd.Series(dtype=float),
            "series": pd.Series(dtype=str),
        }
    )


class Handlers:
    """The UI's callbacks, bound to one API client."""

    def __init__(self, settings: UISettings, client: ScoringClient) -> None:
        self.settings = settings
        self.client = client
        self._band_names: list[str] | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="fraud-ui-"))
        self._replay: Replay | None = None
        self.alerts = AlertHandlers(client)

    def _guard(self, action: Callable[[], T], on_error: Callable[[str], T]) -> T:
        try:
            return action()
        except APIError as exc:
            return on_error(exc.message)
        except Exception:
            logger.exception("unexpected error in a UI handler")
            return on_error(UNEXPECTED)

    def _bands(self) -> list[str] | None:
        """Risk band names of the served model (cached; only used to colour the badge)."""
        if self._band_names is None:
            try:
                self._band_names = [band.name for band in self.client.model_info().risk_bands]
            except APIError:
                return None
        return self._band_names

    # ---- Score tab -------------------------------------------------------------------------
    def score(self, *values: Any) -> tuple[str, str, Any, Any]:
        """Validate the form, score it; return (status, result card, reasons, aggregates)."""

        def fail(message: str) -> tuple[str, str, Any, Any]:
            return (
                error_html(message),
                "",
                # Values only, no hiding: a Gradio plot hidden after it was drawn throws in
                # the browser when the layout around it changes (its resize observer stays).
                gr.update(value=empty_reasons()),
                pd.DataFrame(columns=list(AGGREGATE_COLUMNS)),
            )

        def action() -> tuple[str, str, Any, Any]:
            try:
                body = build_transaction(values)
            except ValueError as exc:
                return fail(str(exc))
            timed = self.client.score(body)
            card = result_card_html(timed.result, timed.latency_ms, self._bands())
            aggregates = aggregates_frame(timed.result)
            return (
                "",
                card,
                gr.update(value=reasons_frame(timed.result), visible=True),
                aggregates,
            )

        return self._guard(action, fail)

    # ---- Batch tab -------------------------------------------------------------------------
    def score_file(
        self, upload: str | None
    ) -> tuple[str, str, pd.DataFrame | None, pd.DataFrame | None, str | None]:
        """Score an uploaded file; return (status, summary, preview, histogram, download)."""

        def fail(message: str) -> tuple[str, str, None, None, None]:
            return error_html(message), "", None, None, None

        def action() -> tuple[str, str, pd.DataFrame | None, pd.DataFrame | None, str | None]:
            if not upload:
                return fail("Choose a CSV or Parquet file of transactions first.")
            source = Path(upload)
            suffix = source.suffix.lower()
            if suffix not in SUPPORTED_SUFFIXES:
                return fail(f"'{source.name}' is not a CSV or Parquet file (.csv, .parquet).")
            if source.stat().st_size > self.settings.max_upload_mb * 1024 * 1024:
                return fail(f"The file is larger than {self.settings.max_upload_mb} MB.")
            content = self.client.score_file(source)
            target_dir = Path(tempfile.mkdtemp(dir=self._workdir))
            target = target_dir / f"{source.stem}-scored{suffix}"
            target.write_bytes(content)
            try:
                scored = pd.read_parquet(target) if suffix != ".csv" else pd.read_csv(target)
            except Exception:
                logger.exception("could not read the scored file")
                return fail("The scoring API sent back a file the UI cannot read.")
            missing = [column for column in SCORE_COLUMNS if column not in scored.columns]
            if missing:
                return fail(f"The scored file lacks the columns {', '.join(missing)}.")
            preview = scored.head(self.settings.preview_rows).round({"fraud_probability": 4})
            note = (
                notice_html(
                    f"Showing the first {len(preview)} of {len(scored)} rows; "
                    "download the file for all of them."
                )
                if len(scored) > len(preview)
                else ""
            )
            return (
                note,
                batch_summary_html(scored),
                preview,
                score_histogram(scored["fraud_probability"]),
                str(target),
            )

        return self._guard(action, fail)

    # ---- Model tab -------------------------------------------------------------------------
    def evaluation_plots(self) -> list[tuple[str, str]]:
        """Training's evaluation plots (*.png) with captions; empty when there are none."""
        directory = self.settings.reports_dir
        if not directory.is_dir():
            return []
        return [
            (str(path.resolve()), path.stem.replace("_", " ").replace("-", " "))
            for path in sorted(directory.glob("*.png"))
        ]

    def model(self) -> tuple[str, str, pd.DataFrame | None, Any, str]:
        """Model card from the API and local plots: (status, card, metrics, plots, plot note)."""
        plots = self.evaluation_plots()
        plot_note = (
            ""
            if plots
            else notice_html(
                f"No evaluation plots found in {self.settings.reports_dir} "
                "(training writes them there)."
            )
        )

        gallery = gr.update(value=plots, visible=bool(plots))

        def action() -> tuple[str, str, pd.DataFrame | None, Any, str]:
            info = self.client.model_info()
            self._band_names = [band.name for band in info.risk_bands]
            return "", model_card_markdown(info), metrics_frame(info), gallery, plot_note

        return self._guard(action, lambda msg: (error_html(msg), "", None, gallery, plot_note))

    # ---- Service tab -----------------------------------------------------------------------
    def service(self, state: ServiceState | None) -> tuple[str, str, pd.DataFrame, ServiceState]:
        """Scrape /metrics; return (status, tiles, history chart, new state)."""
        state = state or ServiceState()

        def action() -> tuple[str, str, pd.DataFrame, ServiceState]:
            text = self.client.metrics_text()
            try:
                snapshot = parse_metrics(text, taken_at=time.time())
            except ValueError:
                return fail("The API's /metrics answer is not in Prometheus text format.")
            stats = compute_stats(snapshot, state.previous)
            history = list(state.history)
            now = time.strftime("%H:%M:%S", time.gmtime(snapshot.taken_at))
            if stats.throughput_rps is not None:
                history.append({"time": now, "value": stats.throughput_rps, "series": "req/s"})
            if stats.basis == "window" and stats.p95_ms is not None:
                history.append({"time": now, "value": stats.p95_ms, "series": "p95 ms"})
            history = history[-2 * HISTORY_POINTS :]
            frame = pd.DataFrame(history) if history else empty_history()
            return (
                "",
                service_stats_html(stats),
                frame,
                ServiceState(previous=snapshot, history=history),
            )

        def fail(message: str) -> tuple[str, str, pd.DataFrame, ServiceState]:
            frame = pd.DataFrame(state.history) if state.history else empty_history()
            return error_html(message), "", frame, state

        return self._guard(action, fail)

    # ---- Live tab --------------------------------------------------------------------------
    @property
    def replay(self) -> Replay:
        """The UI process's one replay (loaded on first use, so the page loads without it)."""
        if self._replay is None:
            self._replay = Replay(send=self.client.score_batch)
        return self._replay

    def live_start(self, speed: Any) -> tuple[str, str, pd.DataFrame, Any, Any, Any]:
        """Start the replay at ``speed`` (e.g. '100x'); the timer refreshes the tab."""
        try:
            value = float(str(speed).rstrip("x"))
        except ValueError:
            value = 0.0
        if value <= 0:
            return (error_html("Choose a replay speed such as 100x."), *self._live_view(None))
        try:
            self.replay.start(value)
        except Exception:
            logger.exception("could not start the replay")
            return (error_html(UNEXPECTED), *self._live_view(None))
        return self.live_refresh()

    def live_stop(self) -> tuple[str, str, pd.DataFrame, Any, Any, Any]:
        """Stop the replay (the next start continues the stream)."""
        if self._replay is not None:
            self._replay.stop()
        return self.live_refresh()

    def live_refresh(self) -> tuple[str, str, pd.DataFrame, Any, Any, Any]:
        """(status, counters, stream, distribution, alert rate, timer) from the replay."""
        if self._replay is None:
            return (
                notice_html("No replay yet: choose a speed and press Start."),
                *self._live_view(None),
            )
        snapshot = self._replay.snapshot()
        if snapshot.last_error:
            status = error_html(snapshot.last_error + " The replay keeps trying.")
        elif snapshot.scored and snapshot.history_missing == snapshot.scored:
            status = notice_html(
                "This API keeps no history store: the replay sends raw fields only, so every "
                "transaction was scored without the card's and terminal's history."
            )
        elif snapshot.history_unavailable:
            status = notice_html(
                f"{snapshot.history_unavailable} transactions were scored while the history "
                "store was unavailable (without their history)."
            )
        else:
            status = ""
        return (status, *self._live_view(snapshot))

    @staticmethod
    def _live_view(
        snapshot: ReplaySnapshot | None,
    ) -> tuple[str, pd.DataFrame, Any, Any, Any]:
        if snapshot is None:
            empty = ReplaySnapshot(
                running=False,
                speed=0.0,
                scored=0,
                alerts=0,
                history_unavailable=0,
                history_missing=0,
                failed_calls=0,
                scored_per_min=0.0,
                last_error=None,
                simulated_time=None,
                rows=[],
                probabilities=[],
                alert_rate=[],
            )
            return (
                live_counters_html(empty),
                stream_frame(empty),
                distribution_svg([]),
                alert_rate_svg([]),
                gr.Timer(active=False),
            )
        return (
            live_counters_html(snapshot),
            stream_frame(snapshot),
            distribution_svg(snapshot.probabilities),
            alert_rate_svg(snapshot.alert_rate),
            gr.Timer(active=snapshot.running),
        )

    def close(self) -> None:
        """Stop the replay; remove scored files written for download."""
        if self._replay is not None:
            self._replay.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)
