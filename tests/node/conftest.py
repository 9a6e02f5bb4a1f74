"""The ``node`` marker: tests that run real pods on the real node of ``make cluster-up``."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (selected with ``-m node``; ``make test-node`` runs this directory)."""
    config.addinivalue_line(
        "markers", "node: real pods on the real node of make cluster-up (make test-node)"
    )
