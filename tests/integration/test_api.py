"""The API over HTTP: one real ``bentoml serve`` (two workers, API keys and CORS on) for all.

One server for the whole module keeps the suite inside its time budget: starting a served
model is the expensive part. Two workers make the metrics test meaningful.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from prometheus_client.parser import text_string_to_metric_families

from fraud_contract.api import (
    API_KEY_HEADER,
    DOCS_PATH,
    EXPLAIN_PARAM,
    LIVE_PATH,
    METRICS_PATH,
    MODEL_PATH,
    OPENAPI_PATH,
    READY_PATH,
    SCORE_BATCH_PATH,
    SCORE_FILE_PATH,
    SCORE_PATH,
    BatchResult,
    ErrorBody,
    ModelInfo,
    ScoreResult,
)
from fraud_contract.schema import example_transaction
from service.openapi import load_examples
from testkit.api import served_process, tiny_model_tag
from testkit.net import free_port
from testkit.process import ServerProcess

pytestmark = pytest.mark.integration

KEY = "integration-key-0123456789"
ORIGIN = "https://analyst.example"


@dataclass
class Served:
    """The served API: an authenticated client, the server process and the model tag."""

    client: httpx.Client
    server: ServerProcess
    tag: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("bentoml")
    tag = tiny_model_tag(home)
    key_file = tmp_path_factory.mktemp("secrets") / "keys"
    key_file.write_text("file-key-abc\n")
    env = {
        "FRAUD_API_KEYS": KEY,
        "FRAUD_API_KEYS_FILE": str(key_file),
        "FRAUD_CORS_ORIGINS": ORIGIN,
        "FRAUD_ACCESS_LOG": "true",
        "FRAUD_MAX_BODY_BYTES": str(256 * 1024),
    }
    with (
        served_process(home, free_port(), workers=2, env=env, log_name="test_api.log") as server,
        httpx.Client(base_url=server.base_url, headers={API_KEY_HEADER: KEY}, timeout=30) as client,
    ):
        yield Served(client, server, tag)


@pytest.fixture
def api(served: Served) -> httpx.Client:
    return served.client


def _error(response: httpx.Response, status: int) -> ErrorBody:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    return ErrorBody.model_validate_json(response.content)


def test_health_and_metrics_need_no_key(api: httpx.Client) -> None:
    with httpx.Client(base_url=str(api.base_url)) as bare:
        for path in (LIVE_PATH, READY_PATH, METRICS_PATH):
            assert bare.get(path).status_code == 200, path
        assert bare.post(SCORE_PATH, json=example_transaction()).status_code == 401
        assert bare.get(MODEL_PATH).status_code == 401
        other_key = bare.get(MODEL_PATH, headers={API_KEY_HEADER: "file-key-abc"})
        assert other_key.status_code == 200  # keys from the mounted file work too


def test_score_every_simulator_example(api: httpx.Client, served: Served) -> None:
    for example in load_examples():
        response = api.post(SCORE_PATH, json=example["transaction"])
        assert response.status_code == 200, response.text
        result = ScoreResult.model_validate_json(response.content)
        assert result.model_tag == served.tag
        assert bool(result.reasons) == result.is_fraud  # default: reasons for flagged ones
        explained = api.post(
            SCORE_PATH, json=example["transaction"], params={EXPLAIN_PARAM: "true"}
        )
        assert ScoreResult.model_validate_json(explained.content).reasons
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"


def test_batch_and_model_info(api: httpx.Client, served: Served) -> None:
    body = {"transactions": [example_transaction(transaction_id=f"t{i}") for i in range(25)]}
    result = BatchResult.model_validate_json(api.post(SCORE_BATCH_PATH, json=body).content)
    assert [r.transaction_id for r in result.results] == [f"t{i}" for i in range(25)]
    info = ModelInfo.model_validate_json(api.get(MODEL_PATH).content)
    assert info.tag == served.tag
    assert info.feature_names
    assert "amount" in info.schema_["properties"]


def test_file_scoring_csv(api: httpx.Client) -> None:
    csv = "timestamp,customer_id,terminal_id,amount\n2018-04-01T10:00:00,C1,T1,12.5\n"
    response = api.post(SCORE_FILE_PATH, files={"file": ("day.csv", csv.encode(), "text/csv")})
    assert response.status_code == 200, response.text
    assert "fraud_probability,is_fraud,risk_band" in response.text.splitlines()[0]


def test_cors_only_for_the_configured_origin(api: httpx.Client) -> None:
    preflight = {"access-control-request-method": "POST"}
    allowed = api.options(SCORE_PATH, headers={"origin": ORIGIN, **preflight})
    assert allowed.headers.get("access-control-allow-origin") == ORIGIN
    denied = api.options(SCORE_PATH, headers={"origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in denied.headers
    simple = api.post(
        SCORE_PATH, json=example_transaction(), headers={"origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in simple.headers


def test_docs_at_root_and_docs_with_real_examples(api: httpx.Client) -> None:
    assert "swagger" in api.get("/").text.lower()
    assert "swagger" in api.get(DOCS_PATH).text.lower()
    spec = api.get(OPENAPI_PATH).json()
    operation = spec["paths"][SCORE_PATH]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert [e["value"] for e in examples.values()] == [e["transaction"] for e in load_examples()]
    assert {SCORE_BATCH_PATH, SCORE_FILE_PATH, MODEL_PATH, READY_PATH} <= set(spec["paths"])
    assert not any(path.startswith("/internal") for path in spec["paths"])


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        (b'{"amount": 1', "application/json", 400, "body"),
        (json.dumps(example_transaction()).encode(), "text/plain", 415, "content-type"),
        (b'{"amount": 1.0}', "application/json", 422, "timestamp"),
        (json.dumps(example_transaction(amount="x")).encode(), "application/json", 422, "amount"),
        (
            b'{"timestamp": "2018-01-01T00:00:00", "customer_id": "C", "terminal_id": "T", '
            b'"amount": NaN}',
            "application/json",
            422,
            "amount",
        ),
        (
            b'{"timestamp": "2018-01-01T00:00:00", "customer_id": "C", "terminal_id": "T", '
            b'"amount": Infinity}',
            "application/json",
            422,
            "amount",
        ),
        (json.dumps(example_transaction(amount=-5)).encode(), "application/json", 422, "amount"),
        (json.dumps(example_transaction(amount=5e9)).encode(), "application/json", 422, "amount"),
        (json.dumps(example_transaction(vip=True)).encode(), "application/json", 422, "vip"),
    ],
    ids=[
        "malformed",
        "content-type",
        "missing",
        "type",
        "nan",
        "inf",
        "negative",
        "absurd",
        "unknown-field",
    ],
)
def test_bad_single_inputs(
    api: httpx.Client, body: bytes, content_type: str, status: int, field: str
) -> None:
    response = api.post(SCORE_PATH, content=body, headers={"content-type": content_type})
    error = _error(response, status)
    assert field in [e.field for e in error.errors]
    assert api.post(SCORE_PATH, json=example_transaction()).status_code == 200


def test_bad_batches_and_files(api: httpx.Client) -> None:
    assert _error(api.post(SCORE_BATCH_PATH, json={"transactions": []}), 422).errors
    over = {"transactions": [example_transaction()] * 1001}
    assert api.post(SCORE_BATCH_PATH, json=over).status_code in (413, 422)
    huge = b'{"transactions": [' + b" " * (300 * 1024) + b"]}"
    _error(
        api.post(SCORE_BATCH_PATH, content=huge, headers={"content-type": "application/json"}), 413
    )
    missing = api.post(
        SCORE_FILE_PATH, files={"file": ("x.csv", b"timestamp,amount\n2018-01-01,1\n")}
    )
    assert {e.field for e in _error(missing, 422).errors} == {"customer_id", "terminal_id"}
    garbage = b"timestamp,customer_id,terminal_id,amount\n2018-01-01,C1,T1,1\nxx,C2,T2,abc\n"
    rows = _error(api.post(SCORE_FILE_PATH, files={"file": ("x.csv", garbage)}), 422)
    assert {"rows.1.timestamp", "rows.1.amount"} <= {e.field for e in rows.errors}
    assert api.get(READY_PATH).status_code == 200


def test_logs_are_json_with_request_id_and_no_raw_customer_ids(
    api: httpx.Client, served: Served
) -> None:
    customer = "CUSTOMER-SECRET-77"
    response = api.post(
        SCORE_PATH,
        json=example_transaction(customer_id=customer),
        headers={"x-request-id": "trace-me-123"},
    )
    assert response.headers["x-request-id"] == "trace-me-123"
    api.get(READY_PATH)
    logs = served.server.logs()
    assert customer not in logs
    ours = [json.loads(line) for line in logs.splitlines() if line.startswith('{"ts"')]
    traced = [entry for entry in ours if entry.get("request_id") == "trace-me-123"]
    assert traced and all(entry["model_version"] for entry in traced)
    assert not any(READY_PATH in json.dumps(entry) for entry in ours)


def test_internal_batching_route_is_not_reachable(api: httpx.Client) -> None:
    assert api.post("/internal/score-adaptive", json={"transactions": []}).status_code == 404


FUZZ_REQUESTS = 1_000


def _samples(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(base_url + METRICS_PATH, timeout=30).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and set(labels.items()) <= set(sample_labels)
    )


def test_metrics_are_correct_across_two_workers(served: Served) -> None:
    proc, tag = served.server, served.tag
    auth = {API_KEY_HEADER: KEY}
    workers = [
        child for child in psutil.Process(proc.process.pid).children(recursive=True)
        if "worker.service" in " ".join(child.cmdline())
    ]  # fmt: skip
    assert len(workers) == 2
    before = _samples(proc.base_url)
    singles, batch_rows, bad = 120, 30, 7

    def score(i: int) -> int:
        # A fresh connection per request, so the kernel spreads them over both workers.
        body = example_transaction(transaction_id=f"m{i}", amount=float(i))
        return httpx.post(
            proc.base_url + SCORE_PATH, json=body, headers=auth, timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(score, range(singles)))
    assert statuses == [200] * singles
    batch = {"transactions": [example_transaction()] * batch_rows}
    response = httpx.post(proc.base_url + SCORE_BATCH_PATH, json=batch, headers=auth, timeout=30)
    assert response.status_code == 200
    for _ in range(bad):
        response = httpx.post(
            proc.base_url + SCORE_PATH, json={"amount": 1.0}, headers=auth, timeout=30
        )
        assert response.status_code == 422

    # Whichever worker answers the scrape, the totals are the sum over both workers.
    for _ in range(4):
        after = _samples(proc.base_url)

        def delta(name: str, **labels: str) -> float:
            return _value(after, name, **labels) - _value(before, name, **labels)  # noqa: B023

        assert delta("fraud_decisions_total", endpoint="single") == singles
        assert delta("fraud_decisions_total", endpoint="batch") == batch_rows
        assert delta("fraud_score_probability_count", endpoint="single") == singles
        assert delta("fraud_model_batch_size_rows_sum", endpoint="single") == singles
        calls = delta("fraud_model_batch_size_rows_count", endpoint="single")
        assert 1 <= calls <= singles
        assert (
            delta("fraud_input_rejections_total", endpoint="single", reason="missing_field") == bad
        )
        info = [key for key in after if key[0] == "fraud_model_info"]
        assert len(info) == 1
        assert dict(info[0][1])["model_tag"] == tag
        assert after[info[0]] == 1.0
        assert delta("bentoml_service_request_total", endpoint=SCORE_PATH) == singles + bad


def test_fuzz_the_openapi_spec_finds_no_server_errors(served: Served) -> None:
    proc = served.server
    schema = schemathesis.openapi.from_url(proc.base_url + OPENAPI_PATH)
    calls: list[int] = []
    failures: list[str] = []

    def run(mode: schemathesis.GenerationMode, examples: int) -> None:
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=schema.as_strategy(generation_mode=mode))
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(base_url=proc.base_url, headers={API_KEY_HEADER: KEY}, timeout=30)
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")

        fuzz()

    run(schemathesis.GenerationMode.POSITIVE, FUZZ_REQUESTS // 2 + 50)
    run(schemathesis.GenerationMode.NEGATIVE, FUZZ_REQUESTS // 2 + 50)
    assert len(calls) >= FUZZ_REQUESTS
    assert not failures, failures[:10]
    assert any(status == 200 for status in calls)
    assert any(400 <= status < 500 for status in calls)
    assert httpx.get(proc.base_url + "/readyz", timeout=10).status_code == 200
