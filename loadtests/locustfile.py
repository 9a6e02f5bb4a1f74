"""Locust load test for the fraud-scoring API: realistic traffic, validated answers, SLO gate.

Self-contained on purpose: this one file plus its data file (``payloads.json``, simulator
transactions) and an SLO file is everything a Locust master/worker needs, so Kubernetes can
mount the three from a ConfigMap. Only Locust and the standard library are imported.

Traffic: ``TransactionScorer`` users post one transaction per request to ``/v1/score``;
``BatchScorer`` users (fewer of them) post ``{"transactions": [...]}`` batches to
``/v1/score/batch``. Every transaction is drawn from the simulator pool (genuine and fraud
scenarios) and gets a unique ``transaction_id``; an answer counts as a success only if it is
a 200 *and* its body is a well-formed result for that very transaction (see
:func:`validate_score_result`).

Load shape (``FRAUD_LOADTEST_SHAPE``): ``ramp``, ``step``, ``spike`` or ``soak``, sized by
``FRAUD_LOADTEST_USERS`` (peak users) and ``FRAUD_LOADTEST_DURATION`` (seconds); each user
offers ``FRAUD_LOADTEST_USER_RPS`` requests/s, so the offered load is users x that rate.

When the run ends the SLO file (``FRAUD_LOADTEST_SLO``) is checked against the whole-run
statistics; a missed objective sets a non-zero exit code. Other settings (all optional):
``FRAUD_LOADTEST_API_KEY`` (sent as ``X-API-Key``), ``FRAUD_LOADTEST_PAYLOADS``,
``FRAUD_LOADTEST_BATCH_SIZE``, ``FRAUD_LOADTEST_BATCH_USER_WEIGHT``,
``FRAUD_LOADTEST_SLO_RESULT`` (where to write the verdict as JSON). The host is Locust's own
``--host`` / ``LOCUST_HOST``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from locust import FastHttpUser, LoadTestShape, constant_throughput, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

LOG = logging.getLogger("fraud.loadtest")
HERE: Final = Path(__file__).resolve().parent

# The contract in ``fraud_contract/api.py``, re-declared as literals so that this file runs
# alone in a Locust image without the project installed. tests/unit/test_loadtests_locustfile.py
# checks every one of them against the contract, so a contract change fails the test suite.
#: API routes.
SCORE_PATH: Final = "/v1/score"
BATCH_PATH: Final = "/v1/score/batch"
MODEL_PATH: Final = "/v1/model"
#: Header carrying the API key (``FRAUD_LOADTEST_API_KEY``).
API_KEY_HEADER: Final = "X-API-Key"
#: Request names in the statistics (what the SLO file refers to).
SCORE_NAME: Final = "POST /v1/score"
BATCH_NAME: Final = "POST /v1/score/batch"
TOTAL_NAME: Final = "Aggregated"

#: Keys of a ``ScoreResult``. ``reasons`` is always there but may be empty: by default only
#: flagged results carry reasons (the service's ``FRAUD_REASONS``; ``?explain=true`` asks for
#: all), and this test never asks, so an empty list is valid for any result.
RESULT_KEYS: Final = frozenset(
    {
        "transaction_id",
        "fraud_probability",
        "is_fraud",
        "risk_band",
        "threshold",
        "model_tag",
        "reasons",
    }
)
#: Keys of a ``Reason`` and of a ``BatchResult``.
REASON_KEYS: Final = frozenset({"feature", "value", "contribution"})
BATCH_KEYS: Final = frozenset({"model_tag", "results"})


def _env(name: str, default: str) -> str:
    return os.environ.get(f"FRAUD_LOADTEST_{name}", default)


# ---- payloads -----------------------------------------------------------------------------


def load_transactions(path: Path) -> list[dict[str, Any]]:
    """Read the transaction pool.

    Accepts the committed pool (``{"transactions": [...]}``), a bare list of transactions, or
    the simulator's ``examples.json`` (a list of ``{"name", "description", "transaction"}``).
    """
    data = json.loads(path.read_text())
    items = data["transactions"] if isinstance(data, dict) else data
    pool = [item.get("transaction", item) for item in items]
    if not pool or not all(isinstance(tx, dict) for tx in pool):
        raise ValueError(f"{path}: no transactions found")
    return pool


class TransactionSource:
    """Hands out pool transactions with fresh, unique ``transaction_id`` values."""

    def __init__(self, pool: Sequence[Mapping[str, Any]], prefix: str, seed: int | None = None):
        self._pool = list(pool)
        self._prefix = prefix
        self._counter = itertools.count()
        self._random = random.Random(seed)  # noqa: S311  (traffic mix, not secrets)

    def next(self) -> dict[str, Any]:
        """One transaction (a copy) with a unique id."""
        tx = dict(self._random.choice(self._pool))
        tx["transaction_id"] = f"{self._prefix}-{next(self._counter)}"
        return tx

    def batch(self, size: int) -> list[dict[str, Any]]:
        """``size`` transactions with unique ids."""
        return [self.next() for _ in range(size)]


# ---- response validation ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelExpectations:
    """What the model card promises about every result (learned from ``GET /v1/model``)."""

    model_tag: str | None = None
    threshold: float | None = None
    risk_bands: frozenset[str] | None = None

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> ModelExpectations:
        """Build from a model-card body; tolerant of absent keys (validation then loosens)."""
        bands = card.get("risk_bands")
        names = (
            frozenset(band["name"] if isinstance(band, dict) else str(band) for band in bands)
            if isinstance(bands, list) and bands
            else None
        )
        threshold = card.get("threshold")
        tag = card.get("tag", card.get("model_tag"))
        return cls(
            model_tag=str(tag) if tag else None,
            threshold=float(threshold) if isinstance(threshold, int | float) else None,
            risk_bands=names,
        )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_score_result(
    result: object, transaction_id: str | None, expect: ModelExpectations = ModelExpectations()
) -> str | None:
    """Return why ``result`` is not a valid score for ``transaction_id``, or None if it is."""
    if not isinstance(result, dict):
        return f"result is {type(result).__name__}, not an object"
    missing = RESULT_KEYS - result.keys()
    if missing:
        return f"result lacks {sorted(missing)}"
    problem: str | None = None
    probability, threshold = result["fraud_probability"], result["threshold"]
    if result["transaction_id"] != transaction_id:
        problem = f"transaction_id {result['transaction_id']!r} != sent {transaction_id!r}"
    elif not _is_number(probability) or not 0.0 <= probability <= 1.0:
        problem = f"fraud_probability {probability!r} is not a probability"
    elif not _is_number(threshold) or not 0.0 <= threshold <= 1.0:
        problem = f"threshold {threshold!r} is not a probability"
    elif not isinstance(result["is_fraud"], bool) or result["is_fraud"] != (
        probability >= threshold
    ):
        problem = f"is_fraud {result['is_fraud']!r} disagrees with {probability} vs {threshold}"
    elif not isinstance(result["risk_band"], str) or not result["risk_band"]:
        problem = f"risk_band {result['risk_band']!r} is not a band name"
    elif expect.risk_bands is not None and result["risk_band"] not in expect.risk_bands:
        problem = f"risk_band {result['risk_band']!r} not in the model card's bands"
    elif expect.threshold is not None and not math.isclose(threshold, expect.threshold):
        problem = f"threshold {threshold} != model card's {expect.threshold}"
    elif expect.model_tag is not None and result["model_tag"] != expect.model_tag:
        problem = f"model_tag {result['model_tag']!r} != model card's {expect.model_tag!r}"
    else:
        problem = _validate_reasons(result["reasons"])
    return problem


def _validate_reasons(reasons: object) -> str | None:
    """Why ``reasons`` is malformed, or None; an empty list is valid (see ``RESULT_KEYS``)."""
    if not isinstance(reasons, list):
        return "reasons is not a list"
    for reason in reasons:
        if not isinstance(reason, dict) or REASON_KEYS - reason.keys():
            return f"reason {reason!r} lacks {sorted(REASON_KEYS)}"
        if not isinstance(reason["feature"], str) or not _is_number(reason["contribution"]):
            return f"reason {reason!r} is malformed"
    return None


def validate_batch_response(
    body: object, transaction_ids: Sequence[str], expect: ModelExpectations = ModelExpectations()
) -> str | None:
    """Return why ``body`` is not a valid batch answer for ``transaction_ids`` (in order)."""
    if not isinstance(body, dict) or BATCH_KEYS - body.keys():
        return f"batch body lacks {sorted(BATCH_KEYS)}"
    if not isinstance(body["results"], list):
        return "batch body has no 'results' list"
    results = body["results"]
    if len(results) != len(transaction_ids):
        return f"{len(results)} results for {len(transaction_ids)} transactions"
    if expect.model_tag is not None and body["model_tag"] != expect.model_tag:
        return f"batch model_tag {body['model_tag']!r} != {expect.model_tag!r}"
    for index, (result, tx_id) in enumerate(zip(results, transaction_ids, strict=True)):
        problem = validate_score_result(result, tx_id, expect)
        if problem:
            return f"results[{index}]: {problem}"
    return None


# ---- load shapes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """Hold ``users`` (reached at ``spawn_rate`` users/s) until ``until`` seconds into the run."""

    until: float
    users: int
    spawn_rate: float


def stage_at(stages: Sequence[Stage], run_time: float) -> tuple[int, float] | None:
    """The ``(users, spawn_rate)`` in force at ``run_time``; None once the plan is over."""
    for stage in stages:
        if run_time < stage.until:
            return stage.users, stage.spawn_rate
    return None


def build_stages(kind: str, peak_users: int, duration: float) -> list[Stage]:
    """Stages of one named load shape, scaled to ``peak_users`` and ``duration`` seconds.

    * ``ramp``: spawn linearly to the peak over the first 40%, then hold it.
    * ``step``: four equal steps (25%, 50%, 75%, 100% of the peak).
    * ``spike``: 25% baseline, a sudden jump to the peak for 20% of the time, then back to the
      baseline for the last 40% (recovery is measured there).
    * ``soak``: a 30 s (at most 10%) ramp, then the peak held for the rest of the run.
    """
    if peak_users < 1 or duration <= 0:
        raise ValueError("a load shape needs at least 1 user and a positive duration")
    fast = float(max(peak_users, 1))  # reach a level within a second
    if kind == "ramp":
        ramp = max(duration * 0.4, 1.0)
        return [Stage(duration, peak_users, peak_users / ramp)]
    if kind == "step":
        levels = [max(1, round(peak_users * share)) for share in (0.25, 0.5, 0.75, 1.0)]
        return [Stage(duration * (i + 1) / 4, users, fast) for i, users in enumerate(levels)]
    if kind == "spike":
        base = max(1, round(peak_users * 0.25))
        return [
            Stage(duration * 0.4, base, fast),
            Stage(duration * 0.6, peak_users, fast),
            Stage(duration, base, fast),
        ]
    if kind == "soak":
        ramp = min(30.0, duration * 0.1)
        return [Stage(duration, peak_users, peak_users / max(ramp, 1.0))]
    raise ValueError(f"unknown load shape {kind!r}: use ramp, step, spike or soak")


class ConfiguredShape(LoadTestShape):
    """The load shape named by ``FRAUD_LOADTEST_SHAPE`` (see :func:`build_stages`)."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = build_stages(
            _env("SHAPE", "ramp"), int(_env("USERS", "20")), float(_env("DURATION", "60"))
        )

    def tick(self) -> tuple[int, float] | None:
        """Locust calls this every second: the users wanted now, or None to stop."""
        return stage_at(self.stages, self.get_run_time())


# ---- service level objectives -------------------------------------------------------------

METRICS: Final = ("p50_ms", "p95_ms", "p99_ms", "error_ratio", "throughput_rps", "requests")


@dataclass(frozen=True)
class Objective:
    """One SLO: ``metric`` of ``request`` must stay at most ``max`` / at least ``min``."""

    request: str
    metric: str
    max: float | None = None
    min: float | None = None

    def describe(self) -> str:
        """E.g. ``POST /v1/score p99_ms <= 150``."""
        bound = f"<= {self.max:g}" if self.max is not None else f">= {self.min:g}"
        return f"{self.request} {self.metric} {bound}"


@dataclass(frozen=True)
class Observation:
    """Whole-run statistics of one request name (or of all requests)."""

    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput_rps: float

    @property
    def error_ratio(self) -> float:
        """Failed / all requests (1.0 when nothing was sent: no traffic is no success)."""
        return self.failures / self.requests if self.requests else 1.0

    def value(self, metric: str) -> float:
        """The named metric."""
        return float(getattr(self, metric))


@dataclass(frozen=True)
class Verdict:
    """An objective with what was observed and whether it held."""

    objective: Objective
    observed: float | None
    passed: bool

    def line(self) -> str:
        """One human-readable report line."""
        seen = "no requests" if self.observed is None else f"{self.observed:.4g}"
        return f"{'PASS' if self.passed else 'MISS'} {self.objective.describe()} (observed {seen})"


def parse_slo(data: Mapping[str, Any]) -> list[Objective]:
    """Objectives from an SLO document ``{"objectives": [{"request", "metric", "max"|"min"}]}``."""
    objectives = []
    for index, item in enumerate(data.get("objectives", [])):
        metric = item.get("metric")
        if metric not in METRICS:
            raise ValueError(f"objectives[{index}].metric must be one of {METRICS}: {metric!r}")
        if ("max" in item) == ("min" in item):
            raise ValueError(f"objectives[{index}] needs exactly one of 'max' or 'min'")
        objectives.append(
            Objective(
                request=str(item.get("request", TOTAL_NAME)),
                metric=metric,
                max=float(item["max"]) if "max" in item else None,
                min=float(item["min"]) if "min" in item else None,
            )
        )
    if not objectives:
        raise ValueError("the SLO file defines no objectives")
    return objectives


def load_slo(path: Path) -> list[Objective]:
    """Read an SLO file (JSON; YAML too when PyYAML is installed)."""
    text = path.read_text()
    if path.suffix in {".yaml", ".yml"}:
        import yaml  # noqa: PLC0415  (optional: JSON needs nothing beyond the stdlib)

        return parse_slo(yaml.safe_load(text))
    return parse_slo(json.loads(text))


def evaluate_slo(
    objectives: Sequence[Objective], observations: Mapping[str, Observation]
) -> list[Verdict]:
    """Check every objective; a request name that was never sent fails its objectives."""
    verdicts = []
    for objective in objectives:
        seen = observations.get(objective.request)
        if seen is None or seen.requests == 0:
            verdicts.append(Verdict(objective, None, passed=False))
            continue
        value = seen.value(objective.metric)
        passed = (objective.max is None or value <= objective.max) and (
            objective.min is None or value >= objective.min
        )
        verdicts.append(Verdict(objective, value, passed))
    return verdicts


def observations_from_stats(environment: Environment) -> dict[str, Observation]:
    """Whole-run observations per request name (plus ``Aggregated``) from Locust's stats."""
    stats = environment.stats
    entries = {entry.name: entry for entry in stats.entries.values()}
    entries[TOTAL_NAME] = stats.total
    return {
        name: Observation(
            requests=entry.num_requests,
            failures=entry.num_failures,
            p50_ms=float(entry.get_response_time_percentile(0.50) or 0),
            p95_ms=float(entry.get_response_time_percentile(0.95) or 0),
            p99_ms=float(entry.get_response_time_percentile(0.99) or 0),
            throughput_rps=float(entry.total_rps),
        )
        for name, entry in entries.items()
    }


@events.quitting.add_listener
def _enforce_slo(environment: Environment, **_: Any) -> None:
    """At the end of the run (master or standalone): check the SLO, fail the run on a miss."""
    if isinstance(environment.runner, WorkerRunner):
        return  # workers hold partial statistics; the master decides
    slo_file = _env("SLO", "")
    if not slo_file:
        return
    verdicts = evaluate_slo(load_slo(Path(slo_file)), observations_from_stats(environment))
    for verdict in verdicts:
        (LOG.info if verdict.passed else LOG.error)("SLO %s", verdict.line())
    result_path = _env("SLO_RESULT", "")
    if result_path:
        Path(result_path).write_text(
            json.dumps(
                {
                    "slo_file": slo_file,
                    "passed": all(v.passed for v in verdicts),
                    "objectives": [
                        {
                            "objective": v.objective.describe(),
                            "observed": v.observed,
                            "passed": v.passed,
                        }
                        for v in verdicts
                    ],
                },
                indent=2,
            )
            + "\n"
        )
    # The SLO decides the exit code (an error ratio within its bound is not a failed run).
    environment.process_exit_code = 0 if all(v.passed for v in verdicts) else 1


# ---- users --------------------------------------------------------------------------------

_POOL: list[dict[str, Any]] | None = None
_EXPECT: ModelExpectations | None = None


def _pool() -> list[dict[str, Any]]:
    global _POOL  # noqa: PLW0603  (one pool per Locust process, read on first use)
    if _POOL is None:
        _POOL = load_transactions(Path(_env("PAYLOADS", str(HERE / "payloads.json"))))
    return _POOL


def _headers() -> dict[str, str]:
    key = _env("API_KEY", "")
    return {API_KEY_HEADER: key} if key else {}


class _ScoringClient(FastHttpUser):
    """Shared set-up: transaction source, API key, model-card expectations."""

    abstract = True
    wait_time: Callable[..., float] = constant_throughput(float(_env("USER_RPS", "10")))

    def on_start(self) -> None:
        """Learn the model card once per process (tag, threshold, bands) for validation."""
        global _EXPECT  # noqa: PLW0603
        self.source = TransactionSource(_pool(), prefix=f"lt-{id(self):x}")
        self.headers = _headers()
        if _EXPECT is None:
            with self.client.get(
                MODEL_PATH, headers=self.headers, name=f"GET {MODEL_PATH}", catch_response=True
            ) as response:
                if response.status_code == 200 and isinstance(response.json(), dict):
                    _EXPECT = ModelExpectations.from_card(response.json())
                else:
                    response.failure(f"model card: HTTP {response.status_code}")
        self.expect = _EXPECT or ModelExpectations()


class TransactionScorer(_ScoringClient):
    """A payment front-end: one transaction per request."""

    weight = 10

    @task
    def score(self) -> None:
        """Score one simulator transaction and check the answer is for it."""
        tx = self.source.next()
        with self.client.post(
            SCORE_PATH, json=tx, headers=self.headers, name=SCORE_NAME, catch_response=True
        ) as response:
            _judge(
                response,
                lambda body: validate_score_result(body, tx["transaction_id"], self.expect),
            )


class BatchScorer(_ScoringClient):
    """A back-office job: occasional batches of transactions."""

    weight = int(_env("BATCH_USER_WEIGHT", "1"))
    wait_time = constant_throughput(float(_env("BATCH_USER_RPS", "2")))

    @task
    def score_batch(self) -> None:
        """Score a batch and check one valid result per transaction, in order."""
        batch = self.source.batch(int(_env("BATCH_SIZE", "32")))
        ids = [tx["transaction_id"] for tx in batch]
        with self.client.post(
            BATCH_PATH,
            json={"transactions": batch},
            headers=self.headers,
            name=BATCH_NAME,
            catch_response=True,
        ) as response:
            _judge(response, lambda body: validate_batch_response(body, ids, self.expect))


def _judge(response: Any, check: Callable[[Any], str | None]) -> None:
    """Mark ``response`` failed unless it is a 200 whose JSON body passes ``check``."""
    if response.status_code != 200:
        response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        response.failure("body is not JSON")
        return
    problem = check(body)
    if problem:
        response.failure(problem)
    else:
        response.success()
