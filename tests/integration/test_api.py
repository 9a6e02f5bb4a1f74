"""The API over HTTP: a real ``bentoml serve`` on a free port, with API keys and CORS on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from fraud_contract.api import (
    API_KEY_HEADER,
    DOCS_PATH,
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
from tests.support.api import served_process, tiny_model_tag
from tests.support.net import free_port
from tests.support.process import ServerProcess

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
        served_process(home, free_port(), env=env, log_name="test_api.log") as server,
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
        assert result.reasons
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
