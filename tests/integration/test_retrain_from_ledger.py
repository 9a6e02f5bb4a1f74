"""Retraining from the ledger: decisions and labels in a real PostgreSQL -> fraud-train --data."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from fraud_contract.windows import LABEL_DELAY_DAYS
from service.ledger.embedded import start_embedded, stop_embedded
from service.ledger.migrate import migrate
from testkit.tools import REPO_ROOT
from training.ledger_data import export_ledger
from training.retrain import EXIT_UNAVAILABLE, main
from training.simulator import preset, simulate
from training.transactions_file import EXIT_DATA_ERROR, DataError

pytestmark = pytest.mark.integration

_COPY_DECISIONS = (
    "COPY decisions (transaction_id, event_time, card_hash, terminal_id, amount, probability,"
    " is_fraud, risk_band, threshold, model_tag, history_used, recorded_at) FROM STDIN"
)
_COPY_LABELS = "COPY label_events (transaction_id, label, reported_at, source, status) FROM STDIN"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    # Outside pytest's 0700 temp tree: the server runs as its own system user when root.
    data = Path(tempfile.mkdtemp(prefix="retrain-pg-")) / "data"
    yield start_embedded(data)
    stop_embedded(data)
    shutil.rmtree(data.parent, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """A new, migrated database on the server."""
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    url = make_conninfo(server_url, dbname=name)
    migrate(url)
    return url


def _copy(connection: psycopg.Connection, statement: str, rows: list[tuple]) -> None:
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(str(value) for value in row) + "\n")
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(buffer.getvalue())


def fill_ledger(url: str, served: pd.DataFrame) -> None:
    """Every simulated transaction as a served decision; its fraud reported as a chargeback.

    Two models scored the first transaction (one row must come out); one genuine transaction
    was first reported fraud, then corrected to genuine (the latest report wins).
    """
    now = datetime(2026, 1, 1)
    decisions = [
        (t.transaction_id, t.timestamp, f"hash-{t.customer_id}", t.terminal_id, t.amount, 0.5,
         "f", "low", 0.5, "fraud-model:a", "t", now)
        for t in served.itertuples()
    ]  # fmt: skip
    first = served.iloc[0]
    decisions.append(
        (first.transaction_id, first.timestamp, f"hash-{first.customer_id}", first.terminal_id,
         first.amount, 0.9, "t", "high", 0.5, "fraud-model:b", "t", now + timedelta(seconds=1))
    )  # fmt: skip
    frauds = served[served["is_fraud"] == 1]
    labels = [(tx, "fraud", now, "chargeback", "new") for tx in frauds["transaction_id"]]
    corrected = served[served["is_fraud"] == 0].iloc[10]["transaction_id"]
    labels += [
        (corrected, "fraud", now, "analyst", "new"),
        (corrected, "genuine", now + timedelta(hours=1), "analyst", "contradicting"),
    ]
    with psycopg.connect(url) as connection:
        _copy(connection, _COPY_DECISIONS, decisions)
        _copy(connection, _COPY_LABELS, labels)


def test_the_ledger_exports_labelled_transactions_and_a_model_trains_on_them(
    server_url: str, tmp_path: Path
) -> None:
    served = simulate(preset("test"))
    url = fresh_database(server_url, "retrain_full")
    fill_ledger(url, served)

    out = tmp_path / "ledger.parquet"
    done = export_ledger(url, out)

    cutoff = served["timestamp"].max() - timedelta(days=LABEL_DELAY_DAYS)
    expected = served[served["timestamp"] <= cutoff].sort_values(["timestamp", "transaction_id"])
    got = pd.read_parquet(out)
    assert done.rows == len(got) == len(expected)
    assert got["transaction_id"].tolist() == expected["transaction_id"].tolist()
    assert got["customer_id"].tolist() == ("hash-" + expected["customer_id"]).tolist()
    assert got["amount"].tolist() == expected["amount"].tolist()
    # Every fraud came back as a label; the corrected one is genuine; the rest are genuine.
    assert got["is_fraud"].tolist() == expected["is_fraud"].astype(int).tolist()
    assert done.frauds == int(expected["is_fraud"].sum())


def retrain(url: str, home: Path, out: Path) -> tuple[dict, str]:
    """``python -m training.retrain`` against ``url`` with the model store in ``home``."""
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("FRAUD_MODEL_TAG", None)
    done = subprocess.run(
        [sys.executable, "-m", "training.retrain", "--database-url", url, "--out-dir", str(out)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "retrain.json").read_text()), done.stdout


def test_retraining_saves_a_challenger_only_when_it_beats_the_serving_model(
    server_url: str, tmp_path: Path
) -> None:
    url = fresh_database(server_url, "retrain_models")
    fill_ledger(url, simulate(preset("test")))
    home = tmp_path / "bentoml"

    first, _ = retrain(url, home, tmp_path / "first")
    assert first["decision"] == "saved"
    assert first["champion_tag"] is None
    assert first["challenger"]["auc_roc"] > 0.7  # the test world's frauds are learnable
    assert first["test_frauds"] > 0
    saved = first["challenger_tag"]
    assert (home / "models" / saved.replace(":", "/")).is_dir()

    # The same ledger again: an identical challenger is not better than the model it would
    # replace, so the store keeps serving the first one.
    second, out = retrain(url, home, tmp_path / "second")
    assert second["champion_tag"] == saved
    assert second["champion"] == second["challenger"] == first["challenger"]
    assert second["decision"] == "kept"
    assert second["challenger_tag"] is None
    assert out.splitlines()[-1] == saved
    assert "kept" in (tmp_path / "second" / "retrain.md").read_text()


def test_an_empty_ledger_says_there_is_nothing_to_train_on(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = fresh_database(server_url, "retrain_empty")
    with pytest.raises(DataError, match="no decision older than the label delay"):
        export_ledger(url, tmp_path / "out.parquet")
    with pytest.raises(SystemExit) as exited:
        main(["--out-dir", str(tmp_path), "--database-url", url])
    assert exited.value.code == EXIT_DATA_ERROR
    assert "nothing to train on yet" in capsys.readouterr().err


def test_an_unreachable_database_is_one_line_and_its_own_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    with pytest.raises(SystemExit) as exited:
        main(["--out-dir", str(tmp_path), "--database-url", url])
    assert exited.value.code == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith("retrain: cannot read the ledger:")
    assert len(err.strip().splitlines()) == 1
