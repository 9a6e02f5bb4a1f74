"""The API's documentation pages: Swagger UI and the OpenAPI document, nothing third-party.

The page, its start-up script and Swagger UI's files are all served by this process (the
files come with BentoML: :func:`service.bentoml_bridge.swagger_assets_dir`), so the page where
people paste API keys loads no script from anywhere else; its Content-Security-Policy says so
to the browser too.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

import orjson

from service import bentoml_bridge
from service.openapi import build_spec

ASSETS_PREFIX = "/docs/assets"
#: Served asset names -> content type. ``init.js`` is this module's own start-up script.
_ASSET_TYPES: dict[str, bytes] = {
    "swagger-ui-bundle.js": b"text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": b"text/javascript; charset=utf-8",
    "swagger-ui.css": b"text/css; charset=utf-8",
    "init.js": b"text/javascript; charset=utf-8",
}
ASSET_NAMES = tuple(_ASSET_TYPES)
#: Only this origin's scripts, styles and API calls; no frames, no forms elsewhere.
PAGE_POLICY = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    b"script-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'"
)

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
    path = bentoml_bridge.swagger_assets_dir() / name
    return path.read_bytes(), _ASSET_TYPES[name]
