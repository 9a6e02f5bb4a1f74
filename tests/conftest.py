"""Fixtures shared by all test tiers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.net import free_port
from testkit.tools import REPO_ROOT


@pytest.fixture
def port() -> int:
    """A free loopback port."""
    return free_port()


@pytest.fixture
def bentoml_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty, temporary BentoML home (model store) for this test only."""
    home = tmp_path / "bentoml"
    home.mkdir()
    monkeypatch.setenv("BENTOML_HOME", str(home))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    yield home


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests keep files worth reading after a run (logs, screenshots, reports)."""
    path = REPO_ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
