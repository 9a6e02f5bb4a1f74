"""The API's docs page in a real browser: it renders, and no request leaves this origin."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from testkit.api import served_process, tiny_model_tag
from testkit.net import free_port
from testkit.tools import require_tool
from tests.e2e.test_ui import CHROMIUM_FLAGS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_swagger_ui_renders_from_this_origin_only(tmp_path: Path) -> None:
    chromium = require_tool("chromium", "make system-deps (Debian package 'chromium')")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    tiny_model_tag(tmp_path)
    requested: list[str] = []
    with (
        served_process(tmp_path, free_port(), log_name="docs-page.log") as server,
        sync_playwright() as playwright,
        tempfile.TemporaryDirectory() as profile,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium, args=CHROMIUM_FLAGS, headless=True
        )
        try:
            page = context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(server.base_url + "/docs")
            # Swagger UI rendered the document: the title and the scoring route are on the page.
            page.get_by_text("Fraud scoring API").first.wait_for(timeout=30_000)
            page.get_by_text("/v1/score/batch").first.wait_for(timeout=30_000)
        finally:
            context.close()
    assert requested
    elsewhere = [url for url in requested if not url.startswith(server.base_url + "/")]
    assert not elsewhere, elsewhere
    assert server.base_url + "/docs.json" in requested
