"""The API's documentation pages: Swagger UI, ReDoc and the OpenAPI document, all self-hosted.

The pages, their start-up scripts and the renderers' files are all served by this process
(Swagger UI's come with BentoML: :func:`service.bentoml_bridge.swagger_assets_dir`; ReDoc's
bundle is vendored in ``service/static/redoc``, see its README), so the pages where people paste
API keys load no script from anywhere else; their Content-Security-Policy says so to the
browser too.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import orjson

from service import bentoml_bridge
from service.openapi import build_spec

ASSETS_PREFIX = "/docs/assets"
_SCRIPT = b"text/javascript; charset=utf-8"
#: Served asset names -> content type. ``init.js`` and ``redoc-init.js`` are this module's own
#: start-up scripts; ``redoc.standalone.js`` is the vendored ReDoc bundle.
_ASSET_TYPES: dict[str, bytes] = {
    "swagger-ui-bundle.js": _SCRIPT,
    "swagger-ui-standalone-preset.js": _SCRIPT,
    "swagger-ui.css": b"text/css; charset=utf-8",
    "init.js": _SCRIPT,
    "redoc.standalone.js": _SCRIPT,
    "redoc-init.js": _SCRIPT,
}
ASSET_NAMES = tuple(_ASSET_TYPES)
#: ReDoc's bundle and its licence notices, as taken from the npm package (see the README there).
REDOC_DIR = Path(__file__).parent / "static" / "redoc"
#: The one third-party address in ReDoc's bundle that the page would load: the "API docs by
#: Redocly" logo. Served as an empty image instead (ReDoc drops an image that fails to load).
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
#: Only this origin's scripts, styles and API calls; no frames, no forms elsewhere.
PAGE_POLICY = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    b"script-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'"
)
#: ReDoc's page: the same, plus the search index's web worker, which ReDoc starts from a
#: ``blob:`` URL holding its own code (nothing fetched).
REDOC_POLICY = PAGE_POLICY + b"; worker-src blob:"

_INIT_SCRIPT = b"""window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
  });
};
"""

SWAGGER_PAGE = b"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Fraud scoring API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
  <script src="/docs/assets/init.js"></script>
</body>
</html>
"""


_REDOC_INIT_SCRIPT = b"""Redoc.init(
  "/docs.json",
  { expandResponses: "200", hideDownloadButton: false },
  document.getElementById("redoc"),
);
"""

REDOC_PAGE = b"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Fraud scoring API</title>
  <!-- No icon to fetch: the browser would ask for /favicon.ico, a 404. -->
  <link rel="icon" href="data:,">
</head>
<body>
  <div id="redoc"></div>
  <script src="/docs/assets/redoc.standalone.js"></script>
  <script src="/docs/assets/redoc-init.js"></script>
</body>
</html>
"""


@cache
def openapi_document() -> bytes:
    """The OpenAPI document, built once per process."""
    try:
        package_version = version("fraud-detection-serving")
    except PackageNotFoundError:  # running from a source tree that was never installed
        package_version = "0.0.0"
    return orjson.dumps(build_spec(package_version))


@cache
def asset(name: str) -> tuple[bytes, bytes]:
    """(content, content type) of one of :data:`ASSET_NAMES`."""
    if name == "init.js":
        return _INIT_SCRIPT, _ASSET_TYPES[name]
    if name == "redoc-init.js":
        return _REDOC_INIT_SCRIPT, _ASSET_TYPES[name]
    if name == "redoc.standalone.js":
        return redoc_bundle(), _ASSET_TYPES[name]
    path = bentoml_bridge.swagger_assets_dir() / name
    return path.read_bytes(), _ASSET_TYPES[name]


def redoc_bundle() -> bytes:
    """ReDoc's vendored bundle as served: its logo address replaced by an empty image."""
    content = (REDOC_DIR / "redoc.standalone.js").read_bytes()
    if content.count(_REDOC_LOGO) != 1:  # a new ReDoc version: check what else it loads
        raise RuntimeError(f"{REDOC_DIR}: expected ReDoc's logo address once in the bundle")
    return content.replace(_REDOC_LOGO, b"data:,")
