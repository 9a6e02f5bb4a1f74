"""MLServer 1.7 (xgboost runtime) in its own virtual environment under ``.tools/``.

MLServer pins its own FastAPI/Starlette/pydantic stack, so it never shares the project's
environment. The environment is built from the compiled, pinned ``requirements-mlserver.txt``
(``mlserver==1.7.1``, ``mlserver-xgboost==1.7.1`` and the project's ``xgboost==3.2.0`` so the
peer loads the very same booster file) and is rebuilt only when that file changes.

``python -m loadtests.peers.mlserver_env`` installs it; ``--compile`` re-resolves the pins.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent
REPO_ROOT = PEERS_DIR.parents[1]
REQUIREMENTS_IN = PEERS_DIR / "requirements-mlserver.in"
REQUIREMENTS_LOCK = PEERS_DIR / "requirements-mlserver.txt"
OVERRIDES = PEERS_DIR / "overrides-mlserver.txt"
VENV_DIR = REPO_ROOT / ".tools" / "mlserver-1.7.1"
_STAMP = VENV_DIR / ".requirements-sha256"


def _uv() -> str:
    found = shutil.which("uv") or str(REPO_ROOT / ".tools" / "uv" / "bin" / "uv")
    if not Path(found).exists():
        raise RuntimeError("uv not found: run `make env` first")
    return found


def mlserver_bin() -> Path:
    """Path of the ``mlserver`` CLI inside the dedicated environment."""
    return VENV_DIR / "bin" / "mlserver"


def compile_requirements() -> None:
    """Re-resolve ``requirements-mlserver.txt`` from the ``.in`` file and the overrides."""
    subprocess.run(
        [
            _uv(),
            "pip",
            "compile",
            "--quiet",
            "--python",
            "3.11",
            "--python-platform",
            "x86_64-manylinux_2_28",
            "--override",
            str(OVERRIDES),
            str(REQUIREMENTS_IN),
            "-o",
            str(REQUIREMENTS_LOCK),
            "--custom-compile-command",
            "python -m loadtests.peers.mlserver_env --compile",
        ],
        check=True,
        cwd=PEERS_DIR,
    )


def ensure_mlserver_env() -> Path:
    """Create or refresh the MLServer environment; return the ``mlserver`` executable."""
    digest = hashlib.sha256(REQUIREMENTS_LOCK.read_bytes()).hexdigest()
    if mlserver_bin().exists() and _STAMP.exists() and _STAMP.read_text().strip() == digest:
        return mlserver_bin()
    uv = _uv()
    if not (VENV_DIR / "bin" / "python").exists():
        subprocess.run(
            [uv, "venv", "--quiet", "--python", sys.executable, str(VENV_DIR)], check=True
        )
    subprocess.run(
        [uv, "pip", "sync", "--python", str(VENV_DIR / "bin" / "python"), str(REQUIREMENTS_LOCK)],
        check=True,
    )
    _STAMP.write_text(digest + "\n")
    return mlserver_bin()


def main() -> None:
    """CLI: install (default) or re-compile (``--compile``) the MLServer environment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="re-resolve the pinned file")
    args = parser.parse_args()
    if args.compile:
        compile_requirements()
        return
    print(ensure_mlserver_env())


if __name__ == "__main__":
    main()
