"""The ledger bench target: its checks in the report and its pinned PostgreSQL."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loadtests import bench, bench_ledger, bench_report
from loadtests.process_memory import process_tree


def _target(rps: float, errors: int = 0) -> dict[str, Any]:
    step = {"offered_rps": 500.0, "achieved_rps": rps, "errors": errors, "passed": True}
    return {"max_sustained_rps": rps, "steps": [step], "at_max": step}


def _checks(without: float, with_ledger: float, left: float, errors: int = 0) -> dict[str, Any]:
    recorded = _target(with_ledger, errors)
    recorded["ledger"] = {
        "spool_rows_left": left,
        "drain_seconds": 1.5,
        "rows_stored": 900,
        "distinct_ids_stored": 900,
        "decisions_answered": 1000.0,
        "writer_errors": 0.0,
    }
    doc = {"targets": {bench.STATEFUL: _target(without), bench.STATEFUL_LEDGER: recorded}}
    return {c["target"]: c for c in bench_report.ledger_checks(doc)}


def test_the_ledger_target_must_stay_within_15_percent_without_errors_or_leftovers() -> None:
    good = _checks(1000.0, 900.0, 0.0)
    ratio = next(c for name, c in good.items() if name.startswith("ledger on / off"))
    assert ratio["value"] == pytest.approx(0.9) and ratio["met"] is True
    assert all(c["met"] in (True, None) for c in good.values())
    stored = next(c for name, c in good.items() if "distinct ids stored" in name)
    assert stored["value"] == pytest.approx(0.9)
    assert [c["value"] for c in _checks(1000.0, 800.0, 0.0).values() if c["met"] is False] == [
        pytest.approx(0.8)
    ]
    assert [c["value"] for c in _checks(1000.0, 900.0, 7.0).values() if c["met"] is False] == [7.0]
    assert [c["value"] for c in _checks(1000.0, 900.0, 0.0, 3).values() if c["met"] is False] == [3]
    assert bench_report.ledger_checks({"targets": {bench.STATEFUL: _target(1.0)}}) == []


def test_the_ledger_target_is_the_stateful_service_with_its_requests(tmp_path: Path) -> None:
    stateful, recorded = bench.make_targets(
        "m:1", tmp_path, 3000, [bench.STATEFUL, bench.STATEFUL_LEDGER]
    )
    assert recorded.command == stateful.command
    assert recorded.protocol == stateful.protocol == "stateful"
    assert "FRAUD_DATABASE_URL" not in recorded.env  # added once the database runs


def test_the_ledger_database_runs_pinned_to_the_server_core(tmp_path: Path) -> None:
    core = max(os.sched_getaffinity(0))
    data = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-ledger-{os.getpid()}" / "data"
    with bench_ledger.LedgerRun.started(core, data, tmp_path / "spool") as run:
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        for pid in process_tree(postmaster):
            assert os.sched_getaffinity(pid) == {core}, pid
        with psycopg.connect(run.url) as connection:  # a new backend inherits the pinning
            backend = connection.execute("SELECT pg_backend_pid()").fetchone()
            assert backend is not None
            assert os.sched_getaffinity(backend[0]) == {core}
        assert run.service_env["FRAUD_LEDGER_SPOOL_DIR"] == str(tmp_path / "spool")
    assert not (data / "postmaster.pid").exists()
    shutil.rmtree(data.parent, ignore_errors=True)
