"""The ``node`` marker and the fixtures every real-node module shares (node, image)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.node.node_support import (
    NodeImage,
    check_real_node,
    side_load_image,
    side_load_ui_image,
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (selected with ``-m node``; ``make test-node`` runs this directory)."""
    config.addinivalue_line(
        "markers", "node: real pods on the real node of make cluster-up (make test-node)"
    )


@pytest.fixture(scope="session")
def real_node() -> dict[str, Any]:
    """The real node of ``make cluster-up``, Ready (skips locally, fails under CI, without it)."""
    return check_real_node()


@pytest.fixture(scope="session")
def image(real_node: dict[str, Any], artifacts_dir: Path) -> NodeImage:
    """The API image of the working tree (reused when identical), side-loaded into containerd."""
    return side_load_image(artifacts_dir)


@pytest.fixture(scope="session")
def ui_image(real_node: dict[str, Any], artifacts_dir: Path) -> str:
    """The UI image of the working tree, side-loaded into containerd; its name there."""
    return side_load_ui_image(artifacts_dir)
