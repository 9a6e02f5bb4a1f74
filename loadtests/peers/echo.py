"""Peer (d): a bare Starlette JSON echo on uvicorn, the Python HTTP ceiling of one core.

It parses the JSON body and sends it back: what any Python JSON API pays before doing work.
Serve: ``uvicorn loadtests.peers.echo:app --no-access-log``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request: Request) -> JSONResponse:
    """Return the posted JSON object unchanged."""
    return JSONResponse(await request.json())


async def ready(_: Request) -> JSONResponse:
    """Readiness for the benchmark harness."""
    return JSONResponse({"status": "ready"})


app = Starlette(routes=[Route("/v1/score", echo, methods=["POST"]), Route("/readyz", ready)])
