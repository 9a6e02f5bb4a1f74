"""Requiring external tools: skip locally with an install hint, fail under CI=true."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"


def in_ci() -> bool:
    """True when running under CI (a missing tool must then fail, never skip)."""
    return os.environ.get("CI", "").lower() == "true"


def require_tool(name: str, install_hint: str) -> str:
    """Return the path of executable ``name`` or skip/fail the test that needs it.

    Looks on PATH and in the project's ``.tools/bin`` (where ``make system-deps`` installs Go
    tools). Outside CI the test is skipped with ``install_hint``; under ``CI=true`` it fails.
    """
    found = shutil.which(name) or shutil.which(name, path=str(TOOLS_BIN))
    if found:
        return found
    message = f"{name} not found; install it with: {install_hint}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")  # pragma: no cover  (skip/fail raise)
