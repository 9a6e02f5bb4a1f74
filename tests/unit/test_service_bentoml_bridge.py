"""Each BentoML internal the service relies on (service/bentoml_bridge.py) still holds.

Every assertion names the assumption, so a BentoML upgrade that breaks one fails with a line
saying which, instead of a service that misbehaves at run time.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bentoml
import pytest

from service import bentoml_bridge
from service.errors import Overloaded

TESTED_WITH = "1.4."


def test_bentoml_version_is_the_one_the_bridge_was_written_for() -> None:
    assert bentoml.__version__.startswith(TESTED_WITH), (
        f"BentoML {bentoml.__version__}: re-check every assumption in service/bentoml_bridge.py "
        f"(written against {TESTED_WITH}x), then update TESTED_WITH"
    )


def test_the_adaptive_batcher_groups_concurrent_jobs_in_order() -> None:
    calls: list[list[int]] = []

    async def score(jobs: Sequence[int]) -> list[int]:
        calls.append(list(jobs))
        await asyncio.sleep(0.01)
        return [job * 10 for job in jobs]

    async def scenario() -> list[int]:
        submit = bentoml_bridge.adaptive_batcher(
            score, max_batch_size=16, max_latency_ms=5_000, on_shed=_shed
        )
        return list(await asyncio.gather(*(submit(i) for i in range(30))))

    results = asyncio.run(scenario())
    assert results == [i * 10 for i in range(30)], "CorkDispatcher: one result per job, in order"
    assert max(len(call) for call in calls) > 1, "CorkDispatcher no longer batches queued jobs"
    assert max(len(call) for call in calls) <= 16, "CorkDispatcher ignores max_batch_size"


def _shed() -> Any:
    raise Overloaded("The scoring queue is full; retry shortly.")


def test_a_job_past_the_latency_budget_gets_the_fallback() -> None:
    async def slow(jobs: Sequence[int]) -> list[int]:
        await asyncio.sleep(0.3)
        return list(jobs)

    async def scenario() -> list[Any]:
        submit = bentoml_bridge.adaptive_batcher(
            slow, max_batch_size=1, max_latency_ms=20, on_shed=_shed
        )
        return list(await asyncio.gather(*(submit(i) for i in range(20)), return_exceptions=True))

    outcomes = asyncio.run(scenario())
    shed = [o for o in outcomes if isinstance(o, Overloaded)]
    assert shed, "CorkDispatcher no longer sheds jobs past max_latency_in_ms through fallback()"
    assert all(isinstance(o, (int, Overloaded)) for o in outcomes), outcomes


def test_the_worker_serves_what_service_to_asgi_returns() -> None:
    import _bentoml_impl.worker.service as worker  # noqa: PLC0415

    source = inspect.getsource(worker)
    assert "service.to_asgi(" in source, (
        "BentoML's worker no longer builds its app with service.to_asgi(): "
        "serve_front_app() would not put the front app in front"
    )


def test_serve_front_app_wraps_only_the_given_service() -> None:
    @bentoml.service(name="bridge_test_ours")
    class Ours:
        pass

    @bentoml.service(name="bridge_test_theirs")
    class Theirs:
        pass

    service_class = type(Ours)
    original = service_class.to_asgi
    try:
        bentoml_bridge.serve_front_app(Ours, lambda app: ("front", app))
        bentoml_bridge.serve_front_app(Ours, lambda app: ("front", app))  # idempotent
        front, behind = Ours.to_asgi()
        assert front == "front"
        assert callable(behind), "to_asgi() no longer returns an ASGI app"
        assert not isinstance(Theirs.to_asgi(), tuple), "another service's app was wrapped"
    finally:
        service_class.to_asgi = original


def test_the_xgboost_version_hook_exists() -> None:
    import _bentoml_impl.frameworks.xgboost as bentoml_xgboost  # noqa: PLC0415

    assert callable(getattr(bentoml_xgboost, "get_pkg_version", None)), (
        "_bentoml_impl.frameworks.xgboost.get_pkg_version is gone: allow_xgboost_cpu_wheel()"
    )
    bentoml_bridge.allow_xgboost_cpu_wheel()
    bentoml_bridge.allow_xgboost_cpu_wheel()  # idempotent
    assert bentoml_xgboost.get_pkg_version("xgboost")


def test_bentoml_sets_the_multiprocess_metrics_directory() -> None:
    import bentoml._internal.server  # noqa: PLC0415

    package = Path(bentoml._internal.server.__file__).parents[2]
    sources = "".join(
        path.read_text(encoding="utf-8", errors="ignore") for path in package.rglob("*.py")
    )
    assert bentoml_bridge.MULTIPROC_ENV in sources, (
        f"BentoML no longer sets {bentoml_bridge.MULTIPROC_ENV}: /metrics would only show "
        "one worker's samples"
    )


def test_metrics_exposition_reads_a_multiprocess_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(bentoml_bridge.MULTIPROC_ENV, str(tmp_path))
    body, content_type = bentoml_bridge.metrics_exposition()
    assert content_type.startswith("text/plain")
    assert isinstance(body, bytes)


def test_swagger_assets_ship_with_bentoml() -> None:
    folder = bentoml_bridge.swagger_assets_dir()
    missing = [name for name in bentoml_bridge.SWAGGER_FILES if not (folder / name).is_file()]
    assert not missing, f"Swagger UI files gone from BentoML's static_content: {missing}"


def test_server_labels_come_from_the_public_server_context() -> None:
    assert len(bentoml_bridge.server_labels()) == 3
