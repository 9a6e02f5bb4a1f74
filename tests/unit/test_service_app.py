"""The front app in-process: routing, auth, limits, headers, admission and every bad input."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from fraud_contract.api import (
    API_KEY_HEADER,
    MAX_BATCH_TRANSACTIONS,
    MODEL_PATH,
    REQUEST_ID_HEADER,
    SCORE_BATCH_PATH,
    SCORE_FILE_PATH,
    SCORE_PATH,
    BatchResult,
    ErrorBody,
    ScoreResult,
)
from fraud_contract.schema import Transaction, example_transaction
from service.admission import ShedLog
from service.app import FrontApp
from service.logs import LOGGER_NAME
from service.model import LoadedModel
from service.runtime import AdaptiveScorer, build_runtime
from service.scoring import Scorer
from service.settings import ServiceSettings
from testkit.api import load_tiny_model

KEY = "unit-test-key"
HASH_KEY = "k" * 32
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingMetrics:
    """Stands in for the Prometheus metrics; records what the app reports."""

    def __init__(self) -> None:
        self.rejections: list[tuple[str, str]] = []
        self.batches: list[tuple[str, int]] = []
        self.requests: list[tuple[str, int]] = []
        self.in_progress = 0

    def request_started(self, route: str) -> None:
        self.in_progress += 1

    def request_finished(self, route: str, status: int, seconds: float) -> None:
        assert seconds >= 0
        self.in_progress -= 1
        self.requests.append((route, status))

    def observe_results(self, endpoint: str, results: list[Any], timings: Any) -> None:
        self.observe_batch(endpoint, len(results))

    def reject(self, endpoint: str, reason: str) -> None:
        self.rejections.append((endpoint, reason))

    def observe_batch(self, endpoint: str, rows: int) -> None:
        self.batches.append((endpoint, rows))

    def observe_scores(self, endpoint: str, probabilities: Any, is_fraud: Any) -> None:
        pass

    def observe_steps(self, endpoint: str, timings: Any) -> None:
        pass


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_tiny_model(tmp_path_factory.mktemp("bentoml"))


@pytest.fixture
def metrics() -> RecordingMetrics:
    return RecordingMetrics()


def front_app(
    model: LoadedModel, metrics: RecordingMetrics, score_one: Any = None, **settings: Any
) -> FrontApp:
    """A front app bound to the tiny model, as a started worker has it."""
    config = ServiceSettings(id_hash_key=HASH_KEY, **settings)
    app = FrontApp(config)
    if score_one is None:
        scorer = Scorer(model, threshold=config.threshold, top_k=3, reasons=config.reasons)

        async def score_one(transaction: Transaction, explain: bool) -> dict[str, Any]:
            return scorer.score([transaction], [explain])[0]

    app.bind(build_runtime(config, model, metrics, score_one=score_one))  # type: ignore[arg-type]
    return app


def client_for(app: Any, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers
    )


@pytest.fixture
def client(model: LoadedModel, metrics: RecordingMetrics) -> Iterator[httpx.AsyncClient]:
    app = front_app(
        model, metrics, api_keys=[KEY], max_body_bytes=64 * 1024, max_file_bytes=64 * 1024
    )
    yield client_for(app, **{API_KEY_HEADER: KEY})


def _error(response: httpx.Response, status: int) -> ErrorBody:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = ErrorBody.model_validate_json(response.content)
    assert "Traceback" not in response.text
    return body


async def test_score_returns_contract_result_with_security_headers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        SCORE_PATH, json=example_transaction(), headers={REQUEST_ID_HEADER: "req-1"}
    )
    assert response.status_code == 200
    result = ScoreResult.model_validate_json(response.content)
    assert result.transaction_id == "tx-1"
    # Default policy: reasons for flagged results only.
    assert len(result.reasons) == (3 if result.is_fraud else 0)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers[REQUEST_ID_HEADER] == "req-1"


async def test_batch_keeps_order(client: httpx.AsyncClient, metrics: RecordingMetrics) -> None:
    body = {
        "transactions": [
            example_transaction(transaction_id=f"b{i}", amount=i + 1.0) for i in range(7)
        ]
    }
    response = await client.post(SCORE_BATCH_PATH, json=body)
    result = BatchResult.model_validate_json(response.content)
    assert [r.transaction_id for r in result.results] == [f"b{i}" for i in range(7)]
    assert ("batch", 7) in metrics.batches


async def test_model_info_needs_the_key(client: httpx.AsyncClient) -> None:
    assert (await client.get(MODEL_PATH)).status_code == 200
    response = await client.get(MODEL_PATH, headers={API_KEY_HEADER: ""})
    _error(response, 401)


@pytest.mark.parametrize("key", [None, "", "wrong", KEY + "x", KEY[:-1]])
async def test_wrong_or_missing_key_is_401_without_details(
    client: httpx.AsyncClient, key: str | None
) -> None:
    headers = {API_KEY_HEADER: key} if key is not None else {}
    async with httpx.AsyncClient(transport=client._transport, base_url="http://test") as bare:
        response = await bare.post(SCORE_PATH, json=example_transaction(), headers=headers)
    body = _error(response, 401)
    assert body.error == "unauthorized"
    assert body.errors == []
    assert KEY not in response.text


BAD_SINGLE: list[tuple[str, Any, int, str]] = [
    ("missing fields", {"amount": 1.0}, 422, "customer_id"),
    ("wrong type", example_transaction(amount="lots"), 422, "amount"),
    ("wrong type of id", example_transaction(customer_id=12), 422, "customer_id"),
    ("negative amount", example_transaction(amount=-1.0), 422, "amount"),
    ("absurd amount", example_transaction(amount=1e12), 422, "amount"),
    ("negative count", example_transaction(customer_nb_tx_1d=-3), 422, "customer_nb_tx_1d"),
    ("ratio above 1", example_transaction(terminal_risk_1d=1.5), 422, "terminal_risk_1d"),
    ("bad timestamp", example_transaction(timestamp="yesterday"), 422, "timestamp"),
    ("unknown field", example_transaction(cardholder_name="x"), 422, "cardholder_name"),
    ("not an object", [1, 2], 422, "body"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "field"), BAD_SINGLE, ids=[c[0] for c in BAD_SINGLE]
)
async def test_bad_single_input_names_the_field(
    client: httpx.AsyncClient, case: str, body: Any, status: int, field: str
) -> None:
    error = _error(await client.post(SCORE_PATH, json=body), status)
    assert field in {e.field for e in error.errors}, error
    # and the process keeps serving
    assert (await client.post(SCORE_PATH, json=example_transaction())).status_code == 200


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_non_finite_amounts_are_rejected(client: httpx.AsyncClient, literal: str) -> None:
    raw = json.dumps(example_transaction(amount=0.0)).replace("0.0", literal, 1)
    response = await client.post(
        SCORE_PATH, content=raw, headers={"content-type": "application/json"}
    )
    error = _error(response, 422) if response.status_code == 422 else _error(response, 400)
    assert error.errors


async def test_malformed_json_is_400(client: httpx.AsyncClient, metrics: RecordingMetrics) -> None:
    response = await client.post(
        SCORE_PATH, content=b'{"amount": ', headers={"content-type": "application/json"}
    )
    assert _error(response, 400).error == "malformed_json"
    assert ("single", "malformed_json") in metrics.rejections


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_wrong_content_type_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post(
        SCORE_PATH,
        content=json.dumps(example_transaction()),
        headers={"content-type": content_type},
    )
    assert _error(response, 415).errors[0].field == "content-type"


async def test_oversized_body_is_413_declared_or_streamed(client: httpx.AsyncClient) -> None:
    big = b'{"transactions": [' + b" " * (70 * 1024) + b"]}"
    response = await client.post(
        SCORE_BATCH_PATH, content=big, headers={"content-type": "application/json"}
    )
    _error(response, 413)

    async def stream() -> Any:
        for _ in range(80):
            yield b" " * 1024

    response = await client.post(
        SCORE_PATH, content=stream(), headers={"content-type": "application/json"}
    )
    _error(response, 413)


async def test_batch_limits(client: httpx.AsyncClient) -> None:
    error = _error(await client.post(SCORE_BATCH_PATH, json={"transactions": []}), 422)
    assert error.errors[0].field == "transactions"
    too_many = {"transactions": [{"amount": 1}] * (MAX_BATCH_TRANSACTIONS + 1)}
    app_settings_limit = await client.post(SCORE_BATCH_PATH, json=too_many)
    assert app_settings_limit.status_code in (413, 422)
    bad_row = {"transactions": [example_transaction(), example_transaction(amount="x")]}
    error = _error(await client.post(SCORE_BATCH_PATH, json=bad_row), 422)
    assert error.errors[0].field == "transactions.1.amount"


async def test_methods_and_unknown_routes(client: httpx.AsyncClient) -> None:
    response = await client.get(SCORE_PATH)
    assert _error(response, 405).error == "method_not_allowed"
    assert response.headers["allow"] == "POST"
    _error(await client.get("/v1/nothing-here"), 404)
    _error(await client.post("/internal/score-adaptive", json={}), 404)
    _error(await client.get("/v1"), 404)  # no redirect (that echoed the Host header)


async def test_file_endpoint_bad_inputs(client: httpx.AsyncClient) -> None:
    _error(await client.post(SCORE_FILE_PATH, json={"file": "x"}), 415)
    response = await client.post(SCORE_FILE_PATH, files={"other": ("a.csv", b"x")})
    assert _error(response, 422).errors[0].field == "file"
    garbage = b"timestamp,customer_id,terminal_id,amount\nnope,C1,T1,abc\n"
    response = await client.post(SCORE_FILE_PATH, files={"file": ("a.csv", garbage, "text/csv")})
    fields = {e.field for e in _error(response, 422).errors}
    assert {"rows.0.timestamp", "rows.0.amount"} <= fields
    response = await client.post(
        SCORE_FILE_PATH, files={"file": ("a.csv", b"x" * (65 * 1024), "text/csv")}
    )
    _error(response, 413)


async def test_file_endpoint_scores_csv(client: httpx.AsyncClient) -> None:
    csv = (
        b"timestamp,customer_id,terminal_id,amount\n"
        b"2018-04-01T10:00:00,C1,T1,12.5\n2018-04-01T11:00:00,C2,T2,900\n"
    )
    response = await client.post(SCORE_FILE_PATH, files={"file": ("day.csv", csv, "text/csv")})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.strip().splitlines()
    assert lines[0].endswith("fraud_probability,is_fraud,risk_band")
    assert len(lines) == 3


async def test_explain_query_parameter_forces_reasons(client: httpx.AsyncClient) -> None:
    response = await client.post(SCORE_PATH + "?explain=true", json=example_transaction())
    result = ScoreResult.model_validate_json(response.content)
    assert len(result.reasons) == 3
    contributions = [abs(reason.contribution) for reason in result.reasons]
    assert contributions == sorted(contributions, reverse=True)

    body = {"transactions": [example_transaction(transaction_id=f"e{i}") for i in range(3)]}
    batch = BatchResult.model_validate_json(
        (await client.post(SCORE_BATCH_PATH + "?explain=1", json=body)).content
    )
    assert all(len(r.reasons) == 3 for r in batch.results)
    plain = BatchResult.model_validate_json(
        (await client.post(SCORE_BATCH_PATH + "?explain=false", json=body)).content
    )
    assert all(len(r.reasons) == (3 if r.is_fraud else 0) for r in plain.results)


async def test_bad_explain_value_is_422_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post(SCORE_PATH + "?explain=maybe", json=example_transaction())
    body = _error(response, 422)
    assert [e.field for e in body.errors] == ["explain"]


async def test_request_metrics_by_route_and_status(
    client: httpx.AsyncClient, metrics: RecordingMetrics
) -> None:
    await client.post(SCORE_PATH, json=example_transaction())
    await client.post(SCORE_PATH, json={"amount": 1})
    await client.get("/v1/" + "x" * 40)
    assert metrics.requests == [(SCORE_PATH, 200), (SCORE_PATH, 422), ("other", 404)]
    assert metrics.in_progress == 0


def test_shed_requests_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    shed = ShedLog(interval_s=3600)
    shed.since -= 3600  # the first shed of an episode is logged at once
    with caplog.at_level("WARNING", logger=LOGGER_NAME):
        for _ in range(50):
            shed.count(SCORE_PATH)
    lines = [r for r in caplog.records if r.getMessage().startswith("requests shed")]
    assert len(lines) == 1
    assert lines[0].shed == {SCORE_PATH: 1}  # type: ignore[attr-defined]
    assert shed.shed == {SCORE_PATH: 49}


async def test_every_route_gets_request_id_and_security_headers(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/livez", "/readyz", "/docs", "/docs.json", "/nowhere", "/v1/nope"):
        response = await client.get(path, headers={REQUEST_ID_HEADER: "rid-7"})
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers[REQUEST_ID_HEADER] == "rid-7", path
        assert "strict-transport-security" not in response.headers


async def test_hsts_only_behind_tls(model: LoadedModel, metrics: RecordingMetrics) -> None:
    async with client_for(front_app(model, metrics, behind_tls=True)) as client:
        response = await client.get("/livez")
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_admission_limit_sheds_and_recovers(model: LoadedModel) -> None:
    scorer = Scorer(model, threshold=None, top_k=3)
    release = anyio.Event()

    async def slow_score_one(transaction: Transaction, explain: bool) -> dict[str, Any]:
        await release.wait()
        return scorer.score([transaction])[0]

    metrics = RecordingMetrics()
    app = front_app(model, metrics, slow_score_one, max_concurrency=2)
    async with client_for(app) as client:
        answers: list[httpx.Response] = []

        async def post() -> None:
            answers.append(await client.post(SCORE_PATH, json=example_transaction()))

        async with anyio.create_task_group() as group:
            group.start_soon(post)
            group.start_soon(post)
            await anyio.wait_all_tasks_blocked()
            shed = await client.post(
                SCORE_PATH, json=example_transaction(), headers={REQUEST_ID_HEADER: "abc-1"}
            )
            health = await client.get("/readyz")  # health is never shed
            release.set()
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == "1"
        assert shed.headers[REQUEST_ID_HEADER] == "abc-1"
        assert shed.headers["x-content-type-options"] == "nosniff"
        assert ErrorBody.model_validate_json(shed.content).error == "overloaded"
        assert health.status_code == 200
        assert [a.status_code for a in answers] == [200, 200]
        assert ("single", "overloaded") in metrics.rejections
        assert (SCORE_PATH, 503) in metrics.requests
        assert (await client.post(SCORE_PATH, json=example_transaction())).status_code == 200
    assert app.admission.in_flight == 0
    assert metrics.in_progress == 0


async def test_slow_bodies_get_408_and_hold_no_admission_slot(model: LoadedModel) -> None:
    metrics = RecordingMetrics()
    app = front_app(model, metrics, max_concurrency=1, body_timeout_s=0.3)
    stalled = anyio.Event()

    async def trickle() -> Any:
        yield b'{"timestamp": '
        stalled.set()
        await anyio.sleep(3600)

    async with client_for(app) as client:
        answers: list[httpx.Response] = []

        async def slow_post() -> None:
            answers.append(
                await client.post(
                    SCORE_PATH, content=trickle(), headers={"content-type": "application/json"}
                )
            )

        async with anyio.create_task_group() as group:
            group.start_soon(slow_post)
            await stalled.wait()
            # The slow client is still sending: a normal request is admitted meanwhile.
            normal = await client.post(SCORE_PATH, json=example_transaction())
    assert normal.status_code == 200
    slow = _error(answers[0], 408)
    assert slow.error == "request_timeout"
    assert slow.errors[0].field == "body"
    assert app.admission.in_flight == 0


def _sleeping_batch(*_: Any) -> Any:
    time.sleep(0.5)
    return [], None


@pytest.mark.parametrize("path", [SCORE_PATH, SCORE_BATCH_PATH])
async def test_every_route_keeps_the_request_timeout(
    model: LoadedModel, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = RecordingMetrics()

    async def never(transaction: Transaction, explain: bool) -> dict[str, Any]:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    app = front_app(model, metrics, never, request_timeout_s=0.2)
    assert app.runtime is not None
    app.runtime.scorer.score_timed = _sleeping_batch  # type: ignore[method-assign]
    app.runtime.scorer.score_columns = _sleeping_batch  # type: ignore[method-assign]
    app.runtime.scorer.score_columns_rows = _sleeping_batch  # type: ignore[method-assign]
    body: Any = example_transaction()
    if path == SCORE_BATCH_PATH:
        body = {"transactions": [example_transaction()]}
    with caplog.at_level("WARNING", logger=LOGGER_NAME):
        async with client_for(app) as client:
            late = await client.post(path, json=body, headers={REQUEST_ID_HEADER: "slow-1"})
    assert late.status_code == 504
    assert ErrorBody.model_validate_json(late.content).error == "timeout"
    assert late.headers["x-content-type-options"] == "nosniff"
    assert late.headers[REQUEST_ID_HEADER] == "slow-1"
    assert metrics.requests == [(path, 504)]
    assert app.admission.in_flight == 0
    failed = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert [r.status for r in failed] == [504]  # type: ignore[attr-defined]


async def test_a_cancelled_request_is_closed_in_the_metrics(model: LoadedModel) -> None:
    async def never(transaction: Transaction, explain: bool) -> dict[str, Any]:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    metrics = RecordingMetrics()
    app = front_app(model, metrics, never)
    body = json.dumps(example_transaction()).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": SCORE_PATH,
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    with anyio.move_on_after(0.2):  # what a server shutting down does
        await app(scope, receive, send)
    assert metrics.in_progress == 0
    assert metrics.requests == [(SCORE_PATH, 504)]
    assert app.admission.in_flight == 0


async def test_not_ready_until_bound() -> None:
    app = FrontApp(ServiceSettings(id_hash_key=HASH_KEY))
    async with client_for(app) as client:
        assert (await client.get("/livez")).status_code == 200
        assert _error(await client.get("/readyz"), 503).error == "not_ready"
        response = await client.post(SCORE_PATH, json=example_transaction())
        assert _error(response, 503).error == "not_ready"


async def test_cors_only_for_configured_origins(
    model: LoadedModel, metrics: RecordingMetrics
) -> None:
    origin = "https://analyst.example"
    elsewhere = "https://x.example"
    app = front_app(model, metrics, cors_origins=[origin])
    preflight = {"access-control-request-method": "POST"}
    async with client_for(app) as client:
        allowed = await client.options(SCORE_PATH, headers={"origin": origin, **preflight})
        denied = await client.options(SCORE_PATH, headers={"origin": elsewhere, **preflight})
        ok = await client.post(SCORE_PATH, json=example_transaction(), headers={"origin": origin})
        other = await client.post(
            SCORE_PATH, json=example_transaction(), headers={"origin": elsewhere}
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == origin
    assert "x-api-key" in allowed.headers["access-control-allow-headers"]
    assert denied.status_code == 400
    assert "access-control-allow-origin" not in denied.headers
    assert ok.headers["access-control-allow-origin"] == origin
    assert "access-control-allow-origin" not in other.headers


async def test_docs_page_loads_only_this_origins_files(
    model: LoadedModel, metrics: RecordingMetrics
) -> None:
    async with client_for(front_app(model, metrics)) as client:
        page = await client.get("/docs")
        root = await client.get("/")
        spec = (await client.get("/docs.json")).json()
        sources = [
            part.split('"', 2)[1]
            for attribute in ("src=", "href=")
            for part in page.text.split(attribute)[1:]
        ]
        assert sources
        for source in sources:
            assert source.startswith("/docs/assets/"), source
            assert (await client.get(source)).status_code == 200, source
    assert root.text == page.text
    assert "script-src 'self'" in page.headers.get_list("content-security-policy")[-1]
    assert "googletagmanager" not in page.text
    assert spec["info"]["title"] == "Fraud scoring API"
    assert spec["info"]["version"]
    assert not [path for path in spec["paths"] if "internal" in path]


@pytest.mark.parametrize("access", ["key", "off"])
async def test_docs_and_metrics_can_be_keyed_or_off(
    model: LoadedModel, metrics: RecordingMetrics, access: str
) -> None:
    app = front_app(model, metrics, api_keys=[KEY], docs_access=access, metrics_access=access)
    async with client_for(app) as client:
        for path in ("/docs", "/docs.json", "/metrics"):
            response = await client.get(path)
            assert response.status_code == (401 if access == "key" else 404), path
            if access == "key":
                keyed = await client.get(path, headers={API_KEY_HEADER: KEY})
                assert keyed.status_code == 200, path


async def test_the_adaptive_scorer_batches_concurrent_requests(
    model: LoadedModel, metrics: RecordingMetrics
) -> None:
    settings = ServiceSettings(id_hash_key=HASH_KEY, max_batch_size=64)
    scorer = Scorer(model, threshold=None, top_k=3)
    adaptive = AdaptiveScorer(scorer, metrics, settings)  # type: ignore[arg-type]
    transactions = [
        Transaction.model_validate(example_transaction(transaction_id=f"t{i}", amount=i + 1.0))
        for i in range(40)
    ]
    results: dict[str, dict[str, Any]] = {}

    async def one(transaction: Transaction) -> None:
        results[transaction.transaction_id or ""] = await adaptive(transaction, False)

    async with anyio.create_task_group() as group:
        for transaction in transactions:
            group.start_soon(one, transaction)
    assert [results[f"t{i}"] for i in range(40)] == scorer.score(transactions)
    sizes = [rows for endpoint, rows in metrics.batches if endpoint == "single"]
    assert sum(sizes) == 40
    assert max(sizes) > 1  # concurrent requests were scored together


async def test_one_api_key_cannot_take_every_slot(model: LoadedModel) -> None:
    scorer = Scorer(model, threshold=None, top_k=3)
    release = anyio.Event()

    async def slow_score_one(transaction: Transaction, explain: bool) -> dict[str, Any]:
        await release.wait()
        return scorer.score([transaction])[0]

    other_key = "second-key-0123"
    app = front_app(
        model,
        RecordingMetrics(),
        slow_score_one,
        api_keys=[KEY, other_key],
        max_concurrency=8,
        max_concurrency_per_key=2,
    )
    async with client_for(app) as client:
        answers: list[httpx.Response] = []

        async def post(key: str) -> None:
            headers = {API_KEY_HEADER: key}
            answers.append(
                await client.post(SCORE_PATH, json=example_transaction(), headers=headers)
            )

        async with anyio.create_task_group() as group:
            group.start_soon(post, KEY)
            group.start_soon(post, KEY)
            await anyio.wait_all_tasks_blocked()
            greedy = await client.post(
                SCORE_PATH, json=example_transaction(), headers={API_KEY_HEADER: KEY}
            )
            group.start_soon(post, other_key)  # the other client still gets in
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert _error(greedy, 503).message.endswith("for this API key; retry shortly.")
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert app.admission.in_flight == 0
    assert app.admission.by_key == {0: 0, 1: 0}


async def test_a_draining_worker_closes_connections_and_leaves_rotation(
    model: LoadedModel, metrics: RecordingMetrics
) -> None:
    app = front_app(model, metrics)
    async with client_for(app) as client:
        before = await client.post(SCORE_PATH, json=example_transaction())
        app.drain()
        during = await client.post(SCORE_PATH, json=example_transaction())
        ready = await client.get("/readyz")
    assert "connection" not in before.headers
    assert during.status_code == 200
    assert during.headers["connection"] == "close"
    assert _error(ready, 503).error == "shutting_down"
    assert ready.headers["connection"] == "close"


def _slow_batches(*args: Any) -> Any:
    time.sleep(0.3)
    return [
        {"transaction_id": None, "fraud_probability": 0.1, "is_fraud": False} for _ in args[0]
    ], None


async def test_single_scores_are_shed_while_the_batcher_is_behind(
    model: LoadedModel, metrics: RecordingMetrics
) -> None:
    settings = ServiceSettings(id_hash_key=HASH_KEY, max_queue_wait_ms=20)
    scorer = Scorer(model, threshold=None, top_k=3)
    adaptive = AdaptiveScorer(scorer, metrics, settings)  # type: ignore[arg-type]
    metrics.observe_results = lambda *a: None  # type: ignore[method-assign]
    scorer.score_timed = _slow_batches  # type: ignore[method-assign]
    app = front_app(model, metrics, adaptive, max_queue_wait_ms=20, max_batch_size=2)
    assert app.admission.queue is adaptive
    async with client_for(app) as client:
        answers: list[httpx.Response] = []

        async def post() -> None:
            answers.append(await client.post(SCORE_PATH, json=example_transaction()))

        async with anyio.create_task_group() as group:
            group.start_soon(post)  # its batch takes 300 ms in the scoring thread
            await anyio.sleep(0.05)
            group.start_soon(post)  # one full batch (2) in flight, the first one late
            await anyio.sleep(0.05)
            shed = await client.post(SCORE_PATH, json=example_transaction())
            batch = await client.post(SCORE_BATCH_PATH, json={"transactions": []})
        after = await client.post(SCORE_PATH, json=example_transaction())
    assert _error(shed, 503).error == "overloaded"
    assert batch.status_code == 422  # only single scores queue in the batcher
    assert [a.status_code for a in answers] == [200, 200]
    assert after.status_code == 200
    assert adaptive.oldest_wait_s(time.perf_counter()) == 0.0
