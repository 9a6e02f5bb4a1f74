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
from ui.client import APIError, ScoringClient
from ui.form import build_transaction
from ui.render import (
    batch_summary_html,
    empty_reasons,
    error_html,
    metrics_frame,
    model_card_markdown,
    notice_html,
    reasons_frame,
    result_card_html,
    score_histogram,
    service_stats_html,
)
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
    def score(self, *values: Any) -> tuple[str, str, Any]:
        """Validate the form, score it; return (status, result card, reasons chart update)."""

        def fail(message: str) -> tuple[str, str, Any]:
            return error_html(message), "", gr.update(value=empty_reasons(), visible=False)

        def action() -> tuple[str, str, Any]:
            try:
                body = build_transaction(values)
            except ValueError as exc:
                return fail(str(exc))
            timed = self.client.score(body)
            card = result_card_html(timed.result, timed.latency_ms, self._bands())
            return "", card, gr.update(value=reasons_frame(timed.result), visible=True)

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

    def close(self) -> None:
        """Remove scored files written for download."""
        shutil.rmtree(self._workdir, ignore_errors=True)
