"""The UI server: a FastAPI app with ``/healthz`` and the Gradio page, and the CLI entry point.

``fraud-ui --host 0.0.0.0 --port 7860`` (or ``make ui``). Settings come from ``FRAUD_UI_*``
environment variables (see :class:`ui.settings.UISettings`); command-line options override them.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import gradio as gr
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from ui.client import ScoringClient
from ui.form import load_examples
from ui.handlers import Handlers
from ui.layout import CSS, TITLE, build_blocks
from ui.settings import UISettings

HEALTH_PATH = "/healthz"


class RootPathMiddleware:
    """Serve the app under a public sub-path whether or not the proxy strips it.

    An ingress may forward ``/ui/x`` as ``/ui/x`` (path kept) or as ``/x`` (prefix stripped);
    both reach the same route, and Gradio builds its links with the prefix either way.
    """

    def __init__(self, app: ASGIApp, root_path: str) -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Prefix the path when the proxy stripped it and declare the root path to Starlette."""
        if self.root_path and scope["type"] in ("http", "websocket"):
            root = self.root_path
            path: str = scope["path"]
            scope = dict(scope)
            if path != root and not path.startswith(root + "/"):
                scope["path"] = root + path
                scope["raw_path"] = root.encode() + scope.get("raw_path", path.encode())
            scope["root_path"] = root
        await self.app(scope, receive, send)


def create_app(settings: UISettings, client: ScoringClient | None = None) -> ASGIApp:
    """Build the ASGI app: ``/healthz`` plus the Gradio page, under ``settings.root_path``."""
    client = client or ScoringClient(settings)
    handlers = Handlers(settings, client)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        handlers.close()
        client.close()

    api = FastAPI(title=TITLE, docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @api.get(HEALTH_PATH, include_in_schema=False)
    def healthz() -> dict[str, str]:
        """Liveness of the UI process itself (the API being down is shown on the page)."""
        return {"status": "ok"}

    blocks = build_blocks(
        handlers, load_examples(settings.examples_path), settings.refresh_interval_s
    )
    blocks.queue(default_concurrency_limit=8)
    gr.mount_gradio_app(
        api,
        blocks,
        path="/",
        root_path=settings.root_path or None,
        footer_links=[],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        allowed_paths=[str(settings.reports_dir.resolve())],
        max_file_size=f"{settings.max_upload_mb}mb",
        theme=gr.themes.Default(primary_hue="indigo", secondary_hue="slate"),
        css=CSS,
    )
    return RootPathMiddleware(api, settings.root_path)


def parse_args(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line overrides of the settings (only the options given)."""
    parser = argparse.ArgumentParser(prog="fraud-ui", description=__doc__)
    parser.add_argument("--host", help="interface to listen on (FRAUD_UI_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (FRAUD_UI_PORT, 7860)")
    parser.add_argument("--root-path", help="public sub-path, e.g. /ui (FRAUD_UI_ROOT_PATH)")
    parser.add_argument("--api-url", help="scoring API base URL (FRAUD_UI_API_URL)")
    args = parser.parse_args(argv)
    return {key: value for key, value in vars(args).items() if value is not None}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``fraud-ui``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = UISettings(**parse_args(argv))
    app = create_app(settings)
    logging.getLogger("fraud_ui").info(
        "UI on http://%s:%d%s/ using the API at %s",
        settings.host,
        settings.port,
        settings.root_path,
        settings.api_url,
    )
    # Open event streams (browsers) must not delay a rollout's SIGTERM for long.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
