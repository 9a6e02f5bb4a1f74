"""``python -m service.ledger.bench DIR``: what the ledger costs, measured on this machine.

Prints the scoring thread's cost of :meth:`Ledger.record` per decision for batches of 1, 32
and 1000 (spool only, and while the writer drains), and the writer's rows/s into an embedded
PostgreSQL. Numbers go to docs/ledger.md, not into code.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.ledger.embedded import start_embedded, stop_embedded
from service.ledger.ledger import Ledger
from service.ledger.migrate import migrate
from service.ledger.model import Decision
from service.ledger.settings import LedgerSettings

_T0 = datetime(2018, 8, 9, 14)


def _decisions(start: int, count: int) -> list[Decision]:
    now = datetime.now(UTC)
    return [
        Decision(
            transaction_id=f"bench-{i}",
            event_time=_T0 + timedelta(seconds=i),
            card_hash="5f2b8c0e9a7d4b13c6e1f0a2b3c4d5e6",
            terminal_id=f"term-{i % 1000}",
            amount=42.5,
            probability=0.72 if i % 50 == 0 else 0.01,
            is_fraud=i % 50 == 0,
            risk_band="high" if i % 50 == 0 else "low",
            threshold=0.5,
            model_tag="fraud_detector:bench",
            reasons=[{"feature": "amount", "value": 42.5, "contribution": 0.8}] * 3
            if i % 50 == 0
            else None,
            request_id=f"req-{i}",
            history_used=True,
            recorded_at=now,
        )
        for i in range(start, start + count)
    ]


def _record_cost(ledger: Ledger, batch: int, total: int, offset: int) -> tuple[float, float]:
    """(median, p99) microseconds per decision of ``record`` over ``total`` decisions."""
    per: list[float] = []
    for start in range(offset, offset + total, batch):
        items = _decisions(start, batch)
        began = time.perf_counter()
        ledger.record(items)
        per.append((time.perf_counter() - began) * 1e6 / batch)
    per.sort()
    return statistics.median(per), per[int(len(per) * 0.99) - 1 if len(per) > 1 else 0]


def _with_writer_process(url: str, spool: Path) -> None:
    """The scoring side's cost while a separate writer process drains the same spool."""
    settings = LedgerSettings(
        database_url=url,  # type: ignore[arg-type]
        ledger_spool_dir=spool,
        ledger_writer="process",
    )
    ledger = Ledger(settings, run_migrations=False)
    env = dict(os.environ, FRAUD_DATABASE_URL=url, FRAUD_LEDGER_SPOOL_DIR=str(spool))
    writer = subprocess.Popen([sys.executable, "-m", "service.ledger", "writer"], env=env)
    try:
        offset = 30_000_000
        for batch, total in ((1, 5_000), (32, 32_000)):
            median, p99 = _record_cost(ledger, batch, total, offset)
            offset += total
            print(
                f"spool sync=normal batch={batch}: {median:.1f} us/decision median, "
                f"{p99:.1f} us p99 (writer process draining)"
            )
        ledger.flush(120)
    finally:
        writer.send_signal(signal.SIGTERM)
        writer.wait(30)
        ledger.close(drain_timeout=0)


def main() -> None:
    """Run the measurements and print one line each."""
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    data = args.directory / "pg"
    url = start_embedded(data)
    migrate(url)
    try:
        for sync in ("normal", "full"):
            settings = LedgerSettings(
                database_url=url,  # type: ignore[arg-type]
                ledger_spool_dir=args.directory / f"spool-{sync}",
                ledger_spool_sync=sync,
            )
            ledger = Ledger(settings, run_migrations=False)
            offset = 10_000_000 if sync == "full" else 0
            for batch, total in ((1, 5_000), (32, 32_000), (1000, 100_000)):
                median, p99 = _record_cost(ledger, batch, total, offset)
                offset += total
                print(
                    f"spool sync={sync} batch={batch}: {median:.1f} us/decision median, "
                    f"{p99:.1f} us p99 (writer idle)"
                )
            ledger.start()
            for batch, total in ((1, 5_000), (32, 32_000)):
                median, p99 = _record_cost(ledger, batch, total, offset + 20_000_000)
                offset += total
                print(
                    f"spool sync={sync} batch={batch}: {median:.1f} us/decision median, "
                    f"{p99:.1f} us p99 (writer draining)"
                )
            ledger.close(drain_timeout=120)

        _with_writer_process(url, args.directory / "spool-process")

        settings = LedgerSettings(
            database_url=url,  # type: ignore[arg-type]
            ledger_spool_dir=args.directory / "spool-drain",
        )
        ledger = Ledger(settings, run_migrations=False)
        for start in range(50_000_000, 50_000_000 + args.rows, 1000):
            ledger.record(_decisions(start, 1000))
        began = time.perf_counter()
        ledger.start()
        ledger.flush(600)
        took = time.perf_counter() - began
        print(
            f"writer: {args.rows} rows spool -> PostgreSQL in {took:.2f} s = "
            f"{args.rows / took:,.0f} rows/s (batch {settings.ledger_batch_size})"
        )
        ledger.close()
    finally:
        stop_embedded(data)


if __name__ == "__main__":
    main()
