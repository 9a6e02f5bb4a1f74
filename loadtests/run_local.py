"""``make loadtest``: a short, SLO-gated Locust run against a locally served model.

1. trains the tiny test model into a temporary BentoML home (the tests' helper, so the load
   test scores exactly what the integration tests score);
2. serves the API on a free loopback port, pinned to the first core;
3. runs the locustfile headless on the other core with the ``step`` shape (4 x 10 s up to 20
   users, 10 req/s each, single scores plus batches of 32) and the CI SLO
   (``loadtests/slo/ci.json``);
4. writes the HTML report, the CSV statistics, the SLO verdict and a PNG chart to
   ``reports/loadtest/``, and exits with Locust's exit code (non-zero when an SLO is missed).

Bounded: the whole run takes about a minute; Locust itself is killed after 120 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from loadtests.run_chart import plot_history, read_history
from testkit.api import served_process, tiny_model_tag
from testkit.net import free_port

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
LOCUST_TIMEOUT_S = 120


def pin_to(core: int, command: list[str]) -> list[str]:
    """Run ``command`` on one core when the machine has more than one (and taskset exists)."""
    if (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
        return ["taskset", "-c", str(core), *command]
    return command


def locust_command(host: str, out_dir: Path) -> list[str]:
    """Headless Locust with CSV (full history) and HTML reports under ``out_dir``."""
    return [
        sys.executable, "-m", "locust",
        "-f", str(HERE / "locustfile.py"),
        "--headless", "--host", host,
        "--csv", str(out_dir / "loadtest"), "--csv-full-history",
        "--html", str(out_dir / "report.html"),
        "--only-summary", "--loglevel", "INFO",
    ]  # fmt: skip


@contextlib.contextmanager
def _affinity(cores: set[int] | None) -> Iterator[None]:
    """Temporarily restrict this process (and what it starts meanwhile) to ``cores``."""
    previous = os.sched_getaffinity(0)
    if cores:
        os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def run(out_dir: Path, shape: str, users: int, duration: float, slo: Path) -> int:
    """Serve, load, report; return the exit code (0 only if every SLO held)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "slo.json").unlink(missing_ok=True)  # a stale verdict must not pass this run
    cores = os.cpu_count() or 1
    server_core, client_core = 0, 1 if cores > 1 else 0
    with tempfile.TemporaryDirectory(prefix="loadtest-bentoml-") as home_dir:
        home = Path(home_dir)
        print(f"loadtest: training the tiny model into {home}", flush=True)
        tag = tiny_model_tag(home)
        port = free_port()
        with contextlib.ExitStack() as stack:
            with _affinity({server_core} if cores > 1 else None):  # the server inherits it
                server = stack.enter_context(
                    served_process(home, port, log_name="loadtest-api.log")
                )
            print(f"loadtest: {tag} served at {server.base_url}; {shape} to {users} users "
                  f"for {duration:g}s, SLO {slo.name}", flush=True)  # fmt: skip
            env = {
                **os.environ,
                "FRAUD_LOADTEST_SHAPE": shape,
                "FRAUD_LOADTEST_USERS": str(users),
                "FRAUD_LOADTEST_DURATION": str(duration),
                "FRAUD_LOADTEST_SLO": str(slo),
                "FRAUD_LOADTEST_SLO_RESULT": str(out_dir / "slo.json"),
            }
            code = subprocess.run(
                pin_to(client_core, locust_command(server.base_url, out_dir)),
                env=env,
                cwd=REPO_ROOT,
                timeout=LOCUST_TIMEOUT_S,
                check=False,
            ).returncode
    history = out_dir / "loadtest_stats_history.csv"
    if history.exists():
        plot_history(read_history(history), out_dir / "loadtest.png",
                     title=f"make loadtest: {shape} to {users} users ({tag})")  # fmt: skip
    verdict = out_dir / "slo.json"
    if verdict.exists():
        passed = json.loads(verdict.read_text())["passed"]
        print(f"loadtest: SLO {'met' if passed else 'MISSED'} (see {verdict})", flush=True)
    else:
        code = code or 1  # no verdict means the gate never ran: not a pass
        print("loadtest: no SLO verdict was written", flush=True)
    return code


def main() -> None:
    """CLI (defaults are the CI gate's)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "loadtest")
    parser.add_argument("--shape", default="step", choices=("ramp", "step", "spike", "soak"))
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--slo", type=Path, default=HERE / "slo" / "ci.json")
    args = parser.parse_args()
    sys.exit(run(args.out, args.shape, args.users, args.duration, args.slo))


if __name__ == "__main__":
    main()
