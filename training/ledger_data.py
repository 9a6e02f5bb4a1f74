"""The decision ledger as a labelled transactions file (what ``make retrain`` trains on).

:func:`export_ledger` reads the ledger's ``decisions`` joined with each
transaction's latest label (PostgreSQL, ``FRAUD_DATABASE_URL``) and writes the table
``fraud-train --data`` reads (docs/ledger.md, "Retraining"):

* one row per transaction id (a transaction scored by several models counts once), with the
  transaction's own time, the keyed hash of its card as ``customer_id`` (the raw card id is never
  in the ledger; a consistent pseudonym is all the card windows need), terminal and amount;
* ``is_fraud`` is 1 when the latest label is ``fraud``; a transaction with no label is genuine,
  the rule the history store applies (fraud_contract/windows.py);
* only transactions at least the label delay older than the newest one are exported: for the
  newer ones "no label yet" does not mean genuine, and training on them would teach the model
  that recent frauds are genuine.

With no database URL and a ``make demo`` ledger on disk, the demo's embedded PostgreSQL is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import pandas as pd
import psycopg

from fraud_contract.windows import LABEL_DELAY_DAYS
from training.transactions_file import DataError

#: Where ``make demo`` keeps its embedded PostgreSQL (scripts/demo.py).
DEMO_DATABASE_DIR: Final = Path(__file__).resolve().parents[1] / ".tools" / "demo" / "postgres"

_NEWEST = "SELECT max(event_time) FROM decisions"
# DISTINCT ON keeps each transaction's first recorded decision; the label view already holds
# each transaction's latest report (by reported time, then arrival).
_ROWS = """
SELECT DISTINCT ON (d.transaction_id)
    d.transaction_id, d.event_time, d.card_hash, d.terminal_id, d.amount, l.label
FROM decisions AS d
LEFT JOIN latest_labels AS l USING (transaction_id)
WHERE d.event_time <= %(cutoff)s
ORDER BY d.transaction_id, d.recorded_at
"""


@dataclass(frozen=True)
class Export:
    """What an export wrote."""

    rows: int
    frauds: int
    labelled: int
    cutoff: datetime | None
    path: Path


def ledger_frame(
    url: str, label_delay_days: int = LABEL_DELAY_DAYS
) -> tuple[pd.DataFrame, datetime | None]:
    """The ledger's transactions with known labels, sorted by time, and the cut-off used."""
    with psycopg.connect(url) as connection:
        newest = connection.execute(_NEWEST).fetchone()
        cutoff = (
            None
            if newest is None or newest[0] is None
            else newest[0] - timedelta(days=label_delay_days)
        )
        rows = [] if cutoff is None else connection.execute(_ROWS, {"cutoff": cutoff}).fetchall()
    frame = pd.DataFrame(
        rows,
        columns=["transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "label"],
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame["amount"] = frame["amount"].astype("float64")
    frame["labelled"] = frame["label"].notna()
    frame["is_fraud"] = (frame["label"] == "fraud").astype("int8")
    frame = frame.drop(columns="label").sort_values(["timestamp", "transaction_id"])
    return frame.reset_index(drop=True), cutoff


def export_ledger(url: str, out: Path, label_delay_days: int = LABEL_DELAY_DAYS) -> Export:
    """Write the ledger's labelled transactions to ``out`` (Parquet, or CSV by its suffix)."""
    frame, cutoff = ledger_frame(url, label_delay_days)
    if frame.empty:
        msg = (
            "the ledger holds no decision older than the label delay "
            f"({label_delay_days} days before its newest one): nothing to train on yet"
        )
        raise DataError(msg)
    labelled = int(frame.pop("labelled").sum())
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.name.lower().endswith((".csv", ".csv.gz")):
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    return Export(len(frame), int(frame["is_fraud"].sum()), labelled, cutoff, out)


def database_url(given: str | None) -> str:
    """The ledger to read: ``given``, FRAUD_DATABASE_URL, or the demo's embedded server."""
    url = given or os.environ.get("FRAUD_DATABASE_URL")
    if url:
        return url
    if DEMO_DATABASE_DIR.is_dir():
        from service.ledger.embedded import start_embedded  # noqa: PLC0415 (dev dependency)

        return start_embedded(DEMO_DATABASE_DIR)
    msg = "no ledger: set FRAUD_DATABASE_URL (or --database-url), or run `make demo` first"
    raise DataError(msg)
