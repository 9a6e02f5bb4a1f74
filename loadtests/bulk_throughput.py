"""Bulk scoring throughput: the JSON batch and file endpoints against the in-process model.

All three are measured on the same rows (the load tests' transaction pool, repeated) and the
same server core, so a share of the in-process rate says how much of one core the HTTP path
leaves to the model:

- *in-process*: features + prediction of the whole table in this process, one thread, pinned to
  the server's core (best of three);
- ``POST /v1/score/batch``: ``{"transactions": [...]}`` bodies of
  :data:`~fraud_contract.api.MAX_BATCH_TRANSACTIONS` rows, two requests in flight (so the
  server never waits for the client between batches), posted again and again for a fixed time;
- ``POST /v1/score/file``: the whole table as one CSV or Parquet upload (best of three).

Only the public HTTP API is used. Every batch answer is checked row by row against the
in-process probability once, before the timed part; the timed part counts the results of each
answer without decoding it, so the client's JSON parsing does not limit what is measured. The
client runs pinned to its own core.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fraud_contract.api import MAX_BATCH_TRANSACTIONS, SCORE_BATCH_PATH, SCORE_FILE_PATH
from fraud_contract.features import columns_from_frame, compute_features

#: Rows per ``/v1/score/batch`` request: the contract's largest batch.
BATCH_ROWS = MAX_BATCH_TRANSACTIONS
#: Requests in flight against the batch endpoint (one being scored, one on the wire).
BATCH_CONCURRENCY = 2
#: Probabilities are compared with this tolerance (float32 model output).
PROBABILITY_TOLERANCE = 1e-4
#: Each result of a batch answer holds this key once (reasons do not).
_RESULT_KEY = b'"transaction_id"'


@contextlib.contextmanager
def pinned_to(core: int | None) -> Iterator[None]:
    """Run the calling thread (and threads it starts) on ``core``; None leaves it alone."""
    if core is None:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def bulk_frame(pool: list[dict[str, Any]], rows: int) -> pd.DataFrame:
    """``rows`` pool transactions (repeated) with unique ids, as a contract table."""
    frame = pd.DataFrame(pool)
    frame = frame.iloc[np.arange(rows) % len(frame)].reset_index(drop=True)
    frame["transaction_id"] = [f"bulk-{i}" for i in range(rows)]
    return frame


def in_process_rate(booster: Any, card: Any, frame: pd.DataFrame, core: int | None) -> float:
    """Rows/s of features + prediction for ``frame`` in this process on one core (best of 3)."""
    best = math.inf
    with pinned_to(core):
        for _ in range(3):
            start = time.perf_counter()
            features = compute_features(columns_from_frame(frame), card.feature_names)
            booster.inplace_predict(features)
            best = min(best, time.perf_counter() - start)
    return len(frame) / best


def in_process_probabilities(booster: Any, card: Any, frame: pd.DataFrame) -> np.ndarray:
    """The model's probability of every row of ``frame``, computed here."""
    features = compute_features(columns_from_frame(frame), card.feature_names)
    return np.asarray(booster.inplace_predict(features), dtype=np.float64)


@dataclass(frozen=True)
class BatchBody:
    """One pre-encoded batch request and what its answer must say."""

    body: bytes
    ids: list[str]
    probabilities: list[float]


def batch_bodies(
    frame: pd.DataFrame, probabilities: np.ndarray, rows: int = BATCH_ROWS
) -> list[BatchBody]:
    """``frame`` cut into batch requests of ``rows`` transactions (absent aggregates left out)."""
    records = frame.to_dict(orient="records")
    clean = [
        {k: v for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))}
        for r in records
    ]
    bodies = []
    for start in range(0, len(clean), rows):
        chunk = clean[start : start + rows]
        bodies.append(
            BatchBody(
                body=json.dumps({"transactions": chunk}).encode(),
                ids=[str(r["transaction_id"]) for r in chunk],
                probabilities=[float(p) for p in probabilities[start : start + rows]],
            )
        )
    return bodies


def check_batch_answer(answer: Any, expected: BatchBody) -> str | None:
    """Why ``answer`` is not the right batch answer to ``expected`` (None when it is)."""
    try:
        results = answer["results"]
        if len(results) != len(expected.ids):
            return f"{len(results)} results for {len(expected.ids)} transactions"
        for index, (result, tx_id, probability) in enumerate(
            zip(results, expected.ids, expected.probabilities, strict=True)
        ):
            if result["transaction_id"] != tx_id:
                return f"result {index}: transaction_id {result['transaction_id']!r} != {tx_id!r}"
            value = float(result["fraud_probability"])
            if abs(value - probability) > PROBABILITY_TOLERANCE:
                return f"result {index}: probability {value} != in-process {probability}"
            if result["is_fraud"] != (value >= float(result["threshold"])):
                return f"result {index}: is_fraud inconsistent with the threshold"
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return f"malformed answer: {exc!r}"
    return None


def count_results(content: bytes) -> int:
    """Results in a batch answer, counted without decoding it (one id key per result)."""
    return content.count(_RESULT_KEY)


def batch_endpoint_rate(
    base_url: str, bodies: list[BatchBody], seconds: float, client_core: int | None
) -> dict[str, Any]:
    """Rows/s through ``POST /v1/score/batch``: every body checked once, then ``seconds`` timed.

    Raises RuntimeError on any wrong answer or non-200 status.
    """
    import httpx  # noqa: PLC0415  (bench-only dependency)

    url = base_url + SCORE_BATCH_PATH
    headers = {"content-type": "application/json"}
    with pinned_to(client_core), contextlib.ExitStack() as stack:
        clients = [stack.enter_context(httpx.Client(timeout=120)) for _ in range(BATCH_CONCURRENCY)]
        for item in bodies:  # correctness (and warm-up), untimed
            answer = clients[0].post(url, content=item.body, headers=headers)
            answer.raise_for_status()
            problem = check_batch_answer(answer.json(), item)
            if problem:
                raise RuntimeError(f"batch endpoint: {problem}")
        start = time.perf_counter()
        deadline = start + seconds

        def post_until_deadline(worker: int) -> tuple[int, int]:
            client, rows, requests = clients[worker], 0, 0
            while time.perf_counter() < deadline:
                item = bodies[(requests * BATCH_CONCURRENCY + worker) % len(bodies)]
                answer = client.post(url, content=item.body, headers=headers)
                answer.raise_for_status()
                scored = count_results(answer.content)
                if scored != len(item.ids):
                    raise RuntimeError(f"batch endpoint: {scored} results for {len(item.ids)}")
                rows, requests = rows + scored, requests + 1
            return rows, requests

        with ThreadPoolExecutor(BATCH_CONCURRENCY) as workers:
            done = list(workers.map(post_until_deadline, range(BATCH_CONCURRENCY)))
        elapsed = time.perf_counter() - start
    rows = sum(r for r, _ in done)
    return {
        "rows_per_s": rows / elapsed,
        "rows": rows,
        "requests": sum(n for _, n in done),
        "seconds": elapsed,
        "rows_per_request": BATCH_ROWS,
        "in_flight": BATCH_CONCURRENCY,
    }


def file_endpoint_rates(
    base_url: str, frame: pd.DataFrame, client_core: int | None
) -> dict[str, float]:
    """Rows/s through ``POST /v1/score/file`` per format (whole table, best of 3)."""
    import httpx  # noqa: PLC0415  (bench-only dependency)

    rates = {}
    with pinned_to(client_core), httpx.Client(timeout=120) as client:
        for fmt in ("csv", "parquet"):
            buffer = io.BytesIO()
            if fmt == "csv":
                frame.to_csv(buffer, index=False)
            else:
                frame.to_parquet(buffer, index=False)
            payload = buffer.getvalue()
            best = math.inf
            for _ in range(3):
                start = time.perf_counter()
                answer = client.post(
                    base_url + SCORE_FILE_PATH, files={"file": (f"bulk.{fmt}", payload)}
                )
                answer.raise_for_status()
                best = min(best, time.perf_counter() - start)
            scored = (
                pd.read_csv(io.BytesIO(answer.content))
                if fmt == "csv"
                else pd.read_parquet(io.BytesIO(answer.content))
            )
            if len(scored) != len(frame) or "fraud_probability" not in scored:
                raise RuntimeError(f"file endpoint ({fmt}) returned a wrong table")
            rates[fmt] = len(frame) / best
    return rates


def measure(
    base_url: str,
    booster: Any,
    card: Any,
    *,
    pool: list[dict[str, Any]],
    rows: int,
    server_core: int | None,
    client_core: int | None,
    batch_seconds: float,
) -> dict[str, Any]:
    """Rows/s on one server core: in-process, the batch endpoint and the file endpoint."""
    frame = bulk_frame(pool, rows)
    model_rate = in_process_rate(booster, card, frame, server_core)
    bodies = batch_bodies(frame, in_process_probabilities(booster, card, frame))
    batch = batch_endpoint_rate(base_url, bodies, batch_seconds, client_core)
    file_rates = file_endpoint_rates(base_url, frame, client_core)
    return {
        "rows": rows,
        "in_process_rows_per_s": model_rate,
        "batch_endpoint_rows_per_s": batch["rows_per_s"],
        "batch_size": BATCH_ROWS,
        "batch_endpoint": batch,
        "batch_vs_in_process": batch["rows_per_s"] / model_rate,
        "file_endpoint_rows_per_s": file_rates,
        "file_vs_in_process": {k: v / model_rate for k, v in file_rates.items()},
    }
