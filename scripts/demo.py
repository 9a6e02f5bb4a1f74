"""`make demo`: train the demo model if the store has none, then run the API and the UI.

Both run as child processes of this script; Ctrl-C (or SIGTERM) stops both cleanly, and if
either dies the other is stopped too, so the demo never leaves a half-running stack behind.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import demo_history

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 120.0


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll ``url`` until it answers 200, the process exits, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local URL)
                if response.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.3)
    return False


def _stop(processes: list[subprocess.Popen[bytes]], grace_s: float = 20.0) -> None:
    """SIGTERM every child, wait up to ``grace_s``, then SIGKILL what is left."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    """Run the demo stack until interrupted; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="demo", help="simulator preset to train on")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-port", type=int, default=3000)
    parser.add_argument("--ui-port", type=int, default=7860)
    args = parser.parse_args()

    subprocess.run(  # trains only when the store has no model (progress is shown)
        [sys.executable, "-m", "training.ensure_model", "--preset", args.preset],
        check=True,
        cwd=REPO_ROOT,
    )
    api_url = f"http://{args.host}:{args.api_port}"
    ui_url = f"http://{args.host}:{args.ui_port}"
    bin_dir = Path(sys.executable).parent
    api_env = dict(os.environ)
    valkey = None
    if not api_env.get("FRAUD_HISTORY_URL"):
        valkey, api_env["FRAUD_HISTORY_URL"] = demo_history.start_valkey(
            REPO_ROOT / ".tools" / "demo" / "valkey"
        )
        print(f"demo: history store (embedded Valkey) at {api_env['FRAUD_HISTORY_URL']}")
    database_dir = None
    if not api_env.get("FRAUD_DATABASE_URL"):
        from service.ledger.embedded import start_embedded  # noqa: PLC0415  (dev dependency)

        database_dir = REPO_ROOT / ".tools" / "demo" / "postgres"
        api_env["FRAUD_DATABASE_URL"] = start_embedded(database_dir)
        api_env.setdefault("FRAUD_LEDGER_SPOOL_DIR", str(REPO_ROOT / ".tools" / "demo" / "spool"))
        print("demo: decision ledger (embedded PostgreSQL) in .tools/demo/postgres")
    if not api_env.get("FRAUD_ID_HASH_KEY"):
        # One machine, one run: a throw-away key for hashing card ids in the logs.
        api_env["FRAUD_ID_HASH_KEY"] = secrets.token_hex(32)
        api_env["FRAUD_ID_HASH_KEY_ID"] = "demo"
        print("demo: card ids in the logs are hashed with a random key made for this run")
    api = subprocess.Popen(
        [bin_dir / "bentoml", "serve", "service.service:FraudScoring",
         "--host", args.host, "--port", str(args.api_port)],
        cwd=REPO_ROOT,
        env=api_env,
    )  # fmt: skip
    ui = subprocess.Popen(
        [bin_dir / "fraud-ui", "--host", args.host, "--port", str(args.ui_port)],
        cwd=REPO_ROOT,
        env={**os.environ, "FRAUD_UI_API_URL": api_url},
    )
    children = [api, ui]
    # Ctrl-C reaches the children too (same process group); SIGTERM is handled like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if not _wait_ready(f"{api_url}/readyz", api, READY_TIMEOUT_S):
            print("the API did not become ready; see its log above", file=sys.stderr)
            return 1
        if valkey is not None:
            loaded, replayed = demo_history.warm(api_env["FRAUD_HISTORY_URL"], api_url)
            print(
                f"demo: history warmed: {loaded:,} simulated transactions loaded, "
                f"{replayed:,} more scored through the API from raw fields"
            )
        if not _wait_ready(f"{ui_url}/healthz", ui, READY_TIMEOUT_S):
            print("the UI did not become ready; see its log above", file=sys.stderr)
            return 1
        print(
            f"\n  Scoring API : {api_url}  (Swagger UI at {api_url}/docs)"
            f"\n  Demo UI     : {ui_url}\n\n  Press Ctrl-C to stop.\n",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("a component stopped unexpectedly; shutting down", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping API and UI ...", flush=True)
        return 0
    finally:
        # A second Ctrl-C (or make forwarding the first one again) must not cut the shutdown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop(children)
        if valkey is not None:
            valkey.stop()
        if database_dir is not None:
            from service.ledger.embedded import stop_embedded  # noqa: PLC0415

            stop_embedded(database_dir)


if __name__ == "__main__":
    sys.exit(main())
