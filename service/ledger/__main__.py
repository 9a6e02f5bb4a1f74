"""``python -m service.ledger migrate|retention|writer|embedded|apply-labels``: the jobs.

``migrate`` (the Helm hook Job) applies pending migrations; ``retention`` (the CronJob)
deletes what is older than FRAUD_LEDGER_RETENTION_DAYS; ``writer`` drains the spool in
FRAUD_LEDGER_SPOOL_DIR until SIGTERM (the sidecar when FRAUD_LEDGER_WRITER=process);
``embedded DIR`` starts a local PostgreSQL for the demo and prints its URI; ``apply-labels``
applies the ledger's winning labels to the history store at FRAUD_HISTORY_URL (after a store
outage or a fresh store: idempotent, safe beside live label calls). Settings come from FRAUD_*
variables.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime

from service.ledger.settings import LedgerSettings


def run_writer(settings: LedgerSettings) -> int:
    """Drain the spool from this process until SIGTERM/SIGINT, then stop after the batch."""
    from service.ledger.ledger import Ledger  # noqa: PLC0415

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ledger = Ledger(settings.model_copy(update={"ledger_writer": "thread"}))
    ledger.start()
    print(f"ledger writer draining {ledger.spool.path}", flush=True)
    stop.wait()
    ledger.close(drain_timeout=5.0)
    return 0


def apply_labels(settings: LedgerSettings, args: argparse.Namespace) -> int:
    """Apply the winning labels (received since ``--since``) to the history store."""
    from psycopg_pool import ConnectionPool  # noqa: PLC0415

    from service.enrichment import history_labels  # noqa: PLC0415
    from service.history import HistoryStore  # noqa: PLC0415
    from service.ledger.labels import replay_labels  # noqa: PLC0415
    from service.ledger.model import LabelTarget  # noqa: PLC0415

    if not args.history_url:
        print("FRAUD_HISTORY_URL is not set (or pass --history-url)", file=sys.stderr)
        return 2
    store = HistoryStore.from_url(args.history_url, cluster=args.cluster)

    def apply(targets: list[LabelTarget]) -> int:
        return store.record_labels(history_labels(targets)).matched

    since = datetime.fromisoformat(args.since) if args.since else None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # no offset means UTC, as for reported_at
    try:
        with ConnectionPool(settings.url(), min_size=1, max_size=1) as pool:
            total, matched = replay_labels(pool, apply, received_since=since, chunk=args.chunk)
    finally:
        store.close()
    print(f"labels applied to the history store: {total} transactions, {matched} found in it")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one ledger command; exit status 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m service.ledger")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending schema migrations")
    keep = sub.add_parser("retention", help="delete decisions and labels past retention")
    keep.add_argument("--days", type=int, default=None, help="override the retention setting")
    sub.add_parser("writer", help="drain the spool into PostgreSQL until SIGTERM")
    embedded = sub.add_parser("embedded", help="start an embedded PostgreSQL, print its URI")
    embedded.add_argument("directory")
    labels = sub.add_parser("apply-labels", help="apply the ledger's labels to the history store")
    labels.add_argument("--history-url", default=os.environ.get("FRAUD_HISTORY_URL"))
    labels.add_argument(
        "--cluster",
        action="store_true",
        default=os.environ.get("FRAUD_HISTORY_CLUSTER", "").lower() in ("1", "true", "yes"),
        help="Valkey cluster mode (default: FRAUD_HISTORY_CLUSTER)",
    )
    labels.add_argument(
        "--since", help="only transactions with a label received since (ISO 8601; UTC if no offset)"
    )
    labels.add_argument("--chunk", type=int, default=10_000, help="labels per round trip")
    args = parser.parse_args(argv)

    if args.command == "embedded":
        from service.ledger.embedded import start_embedded  # noqa: PLC0415 - dev dependency

        print(start_embedded(args.directory), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0

    settings = LedgerSettings()
    if settings.database_url is None:
        print("FRAUD_DATABASE_URL is not set", file=sys.stderr)
        return 2
    if args.command == "migrate":
        from service.ledger.migrate import migrate  # noqa: PLC0415

        applied = migrate(settings.url())
        print(f"applied migrations: {applied or 'none pending'}")
        return 0

    if args.command == "writer":
        return run_writer(settings)

    if args.command == "apply-labels":
        return apply_labels(settings, args)

    from psycopg_pool import ConnectionPool  # noqa: PLC0415

    from service.ledger.retention import delete_older_than  # noqa: PLC0415

    days = args.days if args.days is not None else settings.ledger_retention_days
    with ConnectionPool(settings.url(), min_size=1, max_size=1) as pool:
        result = delete_older_than(pool, days)
    print(
        f"retention {days} d (before {result.cutoff.isoformat()}): "
        f"{result.decisions_deleted} decisions, {result.labels_deleted} labels deleted"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
