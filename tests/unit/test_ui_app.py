"""The UI server: /healthz, the page under a root path, and handlers that never raise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from fraud_contract.schema import example_transaction
from ui.app import create_app, parse_args
from ui.client import ScoringClient
from ui.form import FORM_FIELDS, form_values
from ui.handlers import UNEXPECTED, Handlers
from ui.settings import UISettings


def settings(**overrides: object) -> UISettings:
    return UISettings(**{"api_url": "http://api.test", **overrides})  # type: ignore[arg-type]


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


def handlers_with(handler: Callable[[httpx.Request], httpx.Response], **kw: object) -> Handlers:
    conf = settings(**kw)
    return Handlers(conf, ScoringClient(conf, transport=httpx.MockTransport(handler)))


@pytest.mark.parametrize("root", ["", "/fraud-ui"])
def test_healthz_and_page_with_and_without_a_stripping_proxy(root: str) -> None:
    conf = settings(root_path=root)
    app = create_app(conf, ScoringClient(conf, transport=httpx.MockTransport(refused)))
    with TestClient(app) as http:
        for prefix in {"", root}:  # proxy stripped the prefix / proxy kept it
            assert http.get(f"{prefix}/healthz").json() == {"status": "ok"}
            page = http.get(f"{prefix}/")
            assert page.status_code == 200
            assert "<html" in page.text.lower()
        config = http.get(f"{root}/config").json()
        assert config["root"].endswith(root or "testserver")


def test_root_path_is_normalised_and_cli_overrides_only_given_options() -> None:
    assert settings(root_path="ui/").root_path == "/ui"
    assert settings(root_path="/").root_path == ""
    assert settings(api_url="http://x:3000/").api_url == "http://x:3000"
    assert parse_args(["--port", "9000"]) == {"port": 9000}


def test_score_handler_shows_sentences_for_bad_input_and_unreachable_api() -> None:
    handlers = handlers_with(refused)
    status, card, *_ = handlers.score(*["" for _ in FORM_FIELDS])
    assert "Invalid field timestamp" in status
    assert card == ""
    status, card, *_ = handlers.score(*form_values(example_transaction()))
    assert "is unreachable" in status
    assert "Traceback" not in status


def test_unexpected_errors_become_a_generic_sentence() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("boom")

    status, *_ = handlers_with(broken).service(None)
    assert UNEXPECTED.split(";")[0] in status
    assert "boom" not in status


def test_batch_handler_rejects_missing_and_unsupported_files(tmp_path: Path) -> None:
    handlers = handlers_with(refused)
    assert "Choose a CSV or Parquet file" in handlers.score_file(None)[0]
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "is not a CSV or Parquet file" in handlers.score_file(str(text))[0]


def test_model_tab_lists_plots_that_exist_and_survives_none(tmp_path: Path) -> None:
    handlers = handlers_with(refused, reports_dir=tmp_path / "absent")
    status, _card, _metrics, gallery, note = handlers.model()
    assert "unreachable" in status
    assert gallery["visible"] is False
    assert "No evaluation plots" in note

    (tmp_path / "pr_curve.png").write_bytes(b"\x89PNG")
    handlers = handlers_with(refused, reports_dir=tmp_path)
    assert [caption for _, caption in handlers.evaluation_plots()] == ["pr curve"]
