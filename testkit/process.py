"""Servers started as subprocesses for tests, always stopped (and their logs kept) on teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testkit.net import wait_for_http


@dataclass
class ServerProcess:
    """A running server: its process, base URL and log file."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def logs(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the whole process group and wait; kill it if it does not exit in time."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode


@contextmanager
def running_server(
    command: Sequence[str],
    *,
    base_url: str,
    ready_path: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready_timeout: float = 120.0,
) -> Iterator[ServerProcess]:
    """Start ``command`` in its own process group, wait for ``base_url + ready_path``, yield.

    The server is stopped in teardown whatever happens; if it never gets ready, its log is
    printed into the error so the failure explains itself.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    server = ServerProcess(process, base_url, log_path)
    try:
        try:
            wait_for_http(base_url + ready_path, timeout=ready_timeout)
        except TimeoutError as exc:
            server.stop()
            tail = server.logs()[-4000:]
            raise RuntimeError(f"{exc}\n--- server log ({log_path}) ---\n{tail}") from exc
        yield server
    finally:
        server.stop()


def python_command(*args: str) -> list[str]:
    """A command running this interpreter (the project's venv) with ``args``."""
    return [sys.executable, *args]
