"""The API's docs pages in a real browser: they render, and no request leaves this origin."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraud_contract.api import SCORE_BATCH_PATH
from testkit.api import served_process, tiny_model_tag
from testkit.net import free_port
from testkit.tools import require_tool
from tests.e2e.test_ui import CHROMIUM_FLAGS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
WAIT_MS = 30_000


@contextmanager
def _browser_on_api(tmp_path: Path) -> Iterator[tuple[str, Callable[[], Any]]]:
    """A served API and a fresh headless Chromium: yields (base URL, new page factory)."""
    chromium = require_tool("chromium", "make system-deps (Debian package 'chromium')")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    tiny_model_tag(tmp_path)
    with (
        served_process(tmp_path, free_port(), log_name="docs-page.log") as server,
        sync_playwright() as playwright,
        tempfile.TemporaryDirectory() as profile,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium, args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield server.base_url, context.new_page
        finally:
            context.close()


def _watched(page: Any) -> tuple[list[str], list[str]]:
    """Record the page's requests and its console errors (CSP refusals show up there too)."""
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    return requested, errors


def test_swagger_ui_renders_from_this_origin_only(tmp_path: Path) -> None:
    with _browser_on_api(tmp_path) as (base_url, new_page):
        page = new_page()
        requested, _ = _watched(page)
        page.goto(base_url + "/docs")
        # Swagger UI rendered the document: the title and the scoring route are on the page.
        page.get_by_text("Fraud scoring API").first.wait_for(timeout=WAIT_MS)
        page.get_by_text("/v1/score/batch").first.wait_for(timeout=WAIT_MS)
    assert requested
    elsewhere = [url for url in requested if not url.startswith(base_url + "/")]
    assert not elsewhere, elsewhere
    assert base_url + "/docs.json" in requested


def test_redoc_renders_every_operation_from_this_origin_only(tmp_path: Path) -> None:
    with _browser_on_api(tmp_path) as (base_url, new_page):
        spec = httpx.get(base_url + "/docs.json", timeout=30).json()
        summaries = [
            operation["summary"]
            for methods in spec["paths"].values()
            for operation in methods.values()
        ]
        page = new_page()
        requested, errors = _watched(page)
        page.goto(base_url + "/redoc")
        headings = page.locator("h1, h2")
        headings.filter(has_text="Fraud scoring API").first.wait_for(timeout=WAIT_MS)
        for summary in summaries:  # every operation rendered as a section of its own
            headings.get_by_text(summary, exact=True).first.wait_for(timeout=WAIT_MS)
        # The search index lives in ReDoc's web worker (started from a blob: URL): a search
        # that finds the batch operation shows the worker ran under the page's policy.
        page.get_by_placeholder("Search...").fill("batch")
        results = page.locator('[data-role="search:results"] li')
        batch = spec["paths"][SCORE_BATCH_PATH]["post"]["summary"]
        results.filter(has_text=batch).first.wait_for(timeout=WAIT_MS)
    assert not errors, errors
    here = (base_url + "/", f"blob:{base_url}/", "data:")
    elsewhere = [url for url in requested if not url.startswith(here)]
    assert not elsewhere, elsewhere
    assert base_url + "/docs/assets/redoc.standalone.js" in requested
    assert base_url + "/docs.json" in requested
