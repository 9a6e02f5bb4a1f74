"""The ledger's drops, rejections and last write reach ``/metrics`` with the right values.

Each worker runs in its own process against one ``PROMETHEUS_MULTIPROC_DIR``, as under
BentoML: the counters must add up over workers (those that exited included) and grow by the
difference between two reports of a worker's running totals. The drops come from a real spool
filled past its bound.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

WORKER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from pathlib import Path

    from service.ledger.model import Decision, LedgerStats
    from service.ledger.spool import Spool
    from service.metrics import create_metrics

    spool_dir, bound, offered, rejected, last_write = sys.argv[1:6]
    decisions = [
        Decision(
            transaction_id=f"t{i}", event_time=datetime(2018, 8, 9), card_hash="h",
            terminal_id="term", amount=1.0, probability=0.1, is_fraud=False, risk_band="low",
            threshold=0.5, model_tag="m:1", reasons=None, request_id=None, history_used=False,
            recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        for i in range(int(offered))
    ]
    spool = Spool(Path(spool_dir), max_rows=int(bound))
    metrics = create_metrics("m:1", 0.5)

    def report(rejected_total: int) -> None:
        metrics.observe_ledger(
            LedgerStats(
                spool_depth=spool.depth, spool_dropped_total=spool.dropped_total,
                written_total=0, redelivered_total=0, writer_errors_total=0,
                rejected_total=rejected_total, last_error=None,
                last_write_unix=float(last_write) if last_write != "none" else None,
            )
        )

    half = len(decisions) // 2
    spool.append(decisions[:half])
    report(int(rejected) // 2)
    report(int(rejected) // 2)  # an unchanged total adds nothing
    spool.append(decisions[half:])
    report(int(rejected))
    """
)

EXPOSE = textwrap.dedent(
    """
    import prometheus_client as prom
    from prometheus_client import multiprocess

    registry = prom.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    print(prom.generate_latest(registry).decode())
    """
)


def run(code: str, *args: str, multiproc: Path) -> str:
    """Run ``code`` in a fresh interpreter, as a worker of the multi-process store."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(multiproc), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def samples(text: str) -> dict[str, float]:
    """``name value`` lines of the exposition (no labels on the ledger families)."""
    found = {}
    for line in text.splitlines():
        if line.startswith("fraud_ledger_"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_drops_rejections_and_last_write_are_exported(tmp_path: Path) -> None:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    # Worker 1: bound 30, offered 50 -> 20 dropped; 6 rejected; wrote at t=1000.
    run(WORKER, str(tmp_path / "w1"), "30", "50", "6", "1000.5", multiproc=multiproc)
    # Worker 2: bound 100, offered 40 -> none dropped; 3 rejected; wrote at t=2000.
    run(WORKER, str(tmp_path / "w2"), "100", "40", "3", "2000.25", multiproc=multiproc)
    # Worker 3: never wrote, nothing dropped or rejected.
    run(WORKER, str(tmp_path / "w3"), "100", "0", "0", "none", multiproc=multiproc)
    exported = samples(run(EXPOSE, multiproc=multiproc))
    assert exported["fraud_ledger_spool_dropped_total"] == 20
    assert exported["fraud_ledger_rejected_total"] == 3 + 6  # halves of 6 and 3: 3+3, 1+2
    # The latest write of any worker (worker 3's gauge is still 0: never set).
    assert exported["fraud_ledger_last_write_timestamp_seconds"] == 2000.25


def test_one_worker_reports_its_queue_errors_and_last_write(tmp_path: Path) -> None:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    # A later report of the same worker: gauges take its values, counters never go back.
    code = (
        WORKER
        + "metrics.observe_ledger(LedgerStats(spool_depth=7, spool_dropped_total=0,"
        + " written_total=0, redelivered_total=0, writer_errors_total=2, rejected_total=0,"
        + " last_error=None, last_write_unix=1500.0))\n"
        + EXPOSE
    )
    exported = samples(
        run(code, str(tmp_path / "w"), "30", "50", "4", "1000.5", multiproc=multiproc)
    )
    assert exported["fraud_ledger_spool_dropped_total"] == 20
    assert exported["fraud_ledger_rejected_total"] == 4
    assert exported["fraud_ledger_last_write_timestamp_seconds"] == 1500.0
    assert exported["fraud_ledger_spool_rows"] == 7
    assert exported["fraud_ledger_writer_errors"] == 2
