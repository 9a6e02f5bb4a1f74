"""``fraud-benchmark --data`` and ``fraud-train --data`` on a file a user brings.

The files are written by the simulator (tiny ``test`` preset, seconds): one Parquet file with
the scenario column, one CSV without it, and broken copies for the error messages.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from training import benchmark
from training.simulator import RAW_COLUMNS, preset, simulate
from training.train import train
from training.transactions_file import EXIT_DATA_ERROR, DataError, load_transactions


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return simulate(preset("test"))


@pytest.fixture(scope="module")
def parquet_file(raw: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "transactions.parquet"
    raw.loc[:, list(RAW_COLUMNS)].to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def csv_file(raw: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No scenario column, no transaction id, rows shuffled, an offset on every timestamp."""
    path = tmp_path_factory.mktemp("data") / "bank.csv"
    frame = raw.drop(columns=["fraud_scenario", "transaction_id"]).sample(frac=1.0, random_state=1)
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S+02:00")
    frame.to_csv(path, index=False)
    return path


def _benchmark(data: Path, out_dir: Path) -> dict:
    out = out_dir / "benchmark.json"
    benchmark.main(
        ["--data", str(data), "--out", str(out), "--report-dir", str(out_dir / "report"), "--quiet"]
    )
    return json.loads(out.read_text())


def test_benchmark_on_a_simulator_written_file(parquet_file: Path, tmp_path: Path) -> None:
    body = _benchmark(parquet_file, tmp_path)
    data = body["protocol"]["data"]
    assert data["kind"] == "file"
    assert data["path"] == str(parquet_file)
    assert data["sha256"] == hashlib.sha256(parquet_file.read_bytes()).hexdigest()
    assert data["rows"] == len(pd.read_parquet(parquet_file))
    assert data["period"]["first"].startswith("2018-04-01")
    assert data["has_fraud_scenario"] is True
    # The book's weeks are not in a 75-day file: the test week is the file's last 7 days.
    assert body["protocol"]["test"] == {
        "start": "2018-06-08",
        "end_exclusive": "2018-06-15",
        "days": 7,
    }
    assert body["protocol"]["worlds"] == ["file"]
    models = body["models"]
    for name in ("xgboost_defaults", "xgboost_current_defaults", "logistic_regression"):
        assert 0.5 < models[name]["auc_roc"] <= 1.0
        assert "library" in models[name]["settings"]
    book = models["xgboost_defaults"]["settings"]["params"]
    assert (book["tree_method"], book["base_score"]) == ("exact", 0.5)
    project = body["worlds"]["file"]["models"]["project_model"]
    assert project["auc_roc"] > 0.75
    assert 0.0 <= project["brier_score"] < 0.05
    assert project["scenario_recall_at_threshold"]  # the scenario column is there
    assert set(body["worlds"]["file"]["protocol"]["test_mix"]["by_scenario"]) == {
        "amount_over_220",
        "compromised_terminal",
        "compromised_card",
    }
    assert (tmp_path / "report" / "score_by_scenario.png").is_file()
    # Mean and worst of one world are that world.
    worst = models["project_model"]["worst"]["auc_roc"]
    assert worst == {"value": project["auc_roc"], "world": "file"}
    assert set(body["targets"]) == {"auc_roc", "average_precision", "card_precision_at_100"}


def test_benchmark_on_a_file_without_scenario_column(csv_file: Path, tmp_path: Path) -> None:
    body = _benchmark(csv_file, tmp_path)
    assert body["protocol"]["data"]["has_fraud_scenario"] is False
    world = body["worlds"]["file"]
    assert world["models"]["project_model"]["scenario_recall_at_threshold"] == {}
    assert "by_scenario" not in world["protocol"]["test_mix"]
    assert world["models"]["project_model"]["auc_roc"] > 0.75
    report = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    assert "score_by_scenario" not in report["plots"]
    assert not (tmp_path / "report" / "score_by_scenario.png").exists()
    assert "No fraud scenario column" in (tmp_path / "report" / "evaluation.md").read_text()


def test_train_on_a_file_records_the_data_in_the_card(csv_file: Path, raw: pd.DataFrame) -> None:
    result = train(data=csv_file, save=False, progress=False)
    source = result.card.dataset["source"]
    assert source["kind"] == "file"
    assert source["sha256"] == hashlib.sha256(csv_file.read_bytes()).hexdigest()
    assert source["rows"] == len(raw)
    assert source["frauds"] == int(raw["is_fraud"].sum())
    # Offsets are dropped (wall-clock time kept, as the scoring contract does).
    assert source["period"]["first"] == raw["timestamp"].min().isoformat()
    assert "preset" not in result.card.dataset
    assert result.card.scenario_recall == {}
    assert result.card.metrics["auc_roc"] > 0.75


def _broken(raw: pd.DataFrame, tmp_path: Path, change: str) -> Path:
    frame = raw.loc[:, list(RAW_COLUMNS)].copy()
    if change == "missing_amount":
        frame = frame.drop(columns=["amount"])
    elif change == "text_amount":
        frame["amount"] = frame["amount"].astype(object)
        frame.loc[5, "amount"] = "twelve"
    elif change == "negative_amount":
        frame.loc[3, "amount"] = -1.0
    elif change == "bad_label":
        frame["is_fraud"] = frame["is_fraud"].astype(int)
        frame.loc[7, "is_fraud"] = 2
    elif change == "bad_timestamp":
        frame["timestamp"] = frame["timestamp"].astype(str)
        frame.loc[2, "timestamp"] = "yesterday"
    elif change == "empty_card":
        frame["customer_id"] = frame["customer_id"].astype(object)
        frame.loc[4, "customer_id"] = None
    path = tmp_path / f"{change}.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ("missing_amount", "amount"),
        ("text_amount", "amount"),
        ("negative_amount", "amount"),
        ("bad_label", "is_fraud"),
        ("bad_timestamp", "timestamp"),
        ("empty_card", "customer_id"),
    ],
)
def test_bad_columns_are_named_in_one_line(
    raw: pd.DataFrame, tmp_path: Path, change: str, column: str
) -> None:
    path = _broken(raw, tmp_path, change)
    with pytest.raises(DataError) as error:
        load_transactions(path)
    message = str(error.value)
    assert f"'{column}'" in message
    assert "\n" not in message
    assert message.startswith(str(path))


def test_commands_exit_with_a_data_error_status(
    raw: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _broken(raw, tmp_path, "missing_amount")
    with pytest.raises(SystemExit) as done:
        benchmark.main(["--data", str(path), "--out", str(tmp_path / "b.json"), "--quiet"])
    assert done.value.code == EXIT_DATA_ERROR
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "missing column 'amount'" in err
    from training.train import main as train_main  # noqa: PLC0415

    with pytest.raises(SystemExit) as done:
        train_main(["--data", str(tmp_path / "absent.parquet")])
    assert done.value.code == EXIT_DATA_ERROR
    assert "no such file" in capsys.readouterr().err


def test_too_short_a_file_is_refused(raw: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "short.parquet"
    short = raw[raw["timestamp"] < raw["timestamp"].min() + pd.Timedelta(days=40)]
    short.loc[:, list(RAW_COLUMNS)].to_parquet(path, index=False)
    with pytest.raises(DataError, match=r"at least \d+ days"):
        benchmark.run_file(path, progress=False)
