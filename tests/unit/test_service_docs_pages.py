"""The docs pages in-process: ReDoc at /redoc, served from the package under a strict policy.

The browser-side checks (it renders every operation, its search worker runs, no request
leaves the origin, no console error) are in tests/e2e/test_docs_page.py.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pathspec
import pytest
import yaml

from fraud_contract.api import API_KEY_HEADER
from service import docs_pages
from service.model import LoadedModel
from testkit.api import load_tiny_model
from tests.unit.test_service_app import KEY, RecordingMetrics, client_for, front_app

pytestmark = pytest.mark.anyio
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Pinned in service/static/redoc/README.md: the bundle is npm's redoc 2.5.4, byte for byte.
REDOC_SHA256 = "dcaf76612bc4a3fbcc923a8966dee2f6146a5f32e5ce1b6f02dd60cbbf89500b"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_tiny_model(tmp_path_factory.mktemp("bentoml"))


def _policy(response: httpx.Response) -> dict[str, str]:
    """The page's own Content-Security-Policy (the last one), directive -> sources."""
    policy = response.headers.get_list("content-security-policy")[-1]
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def _page_sources(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', html)


async def test_redoc_page_loads_only_this_origins_files_under_a_strict_policy(
    model: LoadedModel,
) -> None:
    async with client_for(front_app(model, RecordingMetrics())) as client:
        page = await client.get("/redoc")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        sources = _page_sources(page.text)
        assert "/docs/assets/redoc.standalone.js" in sources
        for source in sources:
            if source.startswith("data:"):
                continue
            assert source.startswith("/docs/assets/"), source
            asset = await client.get(source)
            assert asset.status_code == 200, source
            assert asset.headers["content-type"] == "text/javascript; charset=utf-8", source
        bundle = await client.get("/docs/assets/redoc.standalone.js")
    policy = _policy(page)
    assert policy["script-src"] == "'self'"  # no inline script, no eval
    assert policy["connect-src"] == "'self'"
    assert policy["worker-src"] == "blob:"  # ReDoc's search worker, built from its own code
    assert policy["default-src"] == "'self'"
    assert policy["base-uri"] == "'none'"
    assert "frame-ancestors 'none'" in page.headers.get_list("content-security-policy")
    # The bundle as served names no other origin it would load from (its logo is blanked).
    assert b"cdn.redoc.ly" not in bundle.content
    assert b"Redoc" in bundle.content
    assert len(bundle.content) > 500_000


def test_the_vendored_bundle_is_npms_redoc_and_ships_its_licences() -> None:
    bundle = docs_pages.REDOC_DIR / "redoc.standalone.js"
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == REDOC_SHA256
    readme = (docs_pages.REDOC_DIR / "README.md").read_text()
    assert REDOC_SHA256 in readme
    assert "redoc-2.5.4.tgz" in readme
    assert (
        'Version: "2.5.4"' in (docs_pages.REDOC_DIR / "redoc.standalone.js.LICENSE.txt").read_text()
    )
    assert "MIT License" in (docs_pages.REDOC_DIR / "LICENSE").read_text()


def test_the_bento_ships_the_vendored_bundle() -> None:
    """bentofile.yaml's include list must take service/static (the image serves /redoc)."""
    include = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())["include"]
    spec = pathspec.GitIgnoreSpec.from_lines(include)  # git's patterns, as BentoML reads them
    files = [
        path.relative_to(REPO_ROOT) for path in docs_pages.REDOC_DIR.iterdir() if path.is_file()
    ]
    missing = [str(f) for f in files if f.suffix != ".md" and not spec.match_file(str(f))]
    assert not missing, f"add service/static/** to bentofile.yaml's include: {missing}"


@pytest.mark.parametrize("access", ["key", "off"])
async def test_redoc_follows_the_docs_access_setting(model: LoadedModel, access: str) -> None:
    app = front_app(model, RecordingMetrics(), api_keys=[KEY], docs_access=access)
    async with client_for(app) as client:
        page = await client.get("/redoc")
        keyed = await client.get("/redoc", headers={API_KEY_HEADER: KEY})
    assert page.status_code == (401 if access == "key" else 404)
    assert keyed.status_code == (200 if access == "key" else 404)
