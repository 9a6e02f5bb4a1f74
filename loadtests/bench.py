"""``make bench``: this service against its peers, side by side, in one run on pinned cores.

Systems under test (each alone on the server core, driven from the client core by the same
Locust client with the same 16 users, pacing and pre-encoded payloads):

(a) ``service``: this project's API (``service.service:FraudScoring``) in its production
    configuration (the shipped defaults, one worker);
(a') ``service-stateful``: the same service keeping the history in an embedded Valkey on
    loopback (pinned to the server core too), backfilled first and driven with the same rows
    as raw fields only (:mod:`loadtests.bench_stateful`);
(a'') ``service-stateful-ledger``: (a') with every decision recorded in an embedded
    PostgreSQL pinned to the server core too (:mod:`loadtests.bench_ledger`);
(b) ``stock-bentoml``: the same model behind a plain ``@bentoml.api`` (``loadtests/peers``);
(c) ``mlserver``: MLServer 1.7.1's xgboost runtime with adaptive batching, from its own
    environment under ``.tools/`` (V2 protocol, the same rows as feature vectors);
(d) ``starlette-echo``: a bare Starlette JSON echo, the ceiling of Python HTTP on one core.

For each: offered load rises step by step; the *max sustained throughput* is the highest rate
served with zero errors and p99 <= 15 ms (16 users: past saturation the client is closed-loop,
so the served rate is the capacity at that concurrency, as in the issue's reference). Every answer
is checked against the in-process model's probability for that very row. Then, for the
service only: overload (2x capacity) and recovery, bulk scoring (``/v1/score/batch`` with
1,000-row batches and ``/v1/score/file``, as rows/s on the server core and as a share of the
in-process model on the same rows; :mod:`loadtests.bulk_throughput`) and a py-spy profile at 70%
load.

Outputs ``reports/bench.json``, ``reports/bench.md`` and ``reports/bench.png``; the docs quote
and link them (nothing else is rewritten). ``--bulk-only`` measures bulk scoring alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fraud_contract.api import MODEL_PATH, READY_PATH, SCORE_PATH
from fraud_contract.artifact import MODEL_NAME, load_card
from fraud_contract.features import columns_from_records, compute_features
from loadtests import bench_ledger, bench_stateful, bulk_throughput
from loadtests.bench_report import write_reports
from loadtests.overload import measure
from loadtests.peers.mlserver_env import ensure_mlserver_env
from loadtests.peers.mlserver_model import MLSERVER_MODEL_NAME, write_repository
from loadtests.process_memory import tree_rss_bytes
from testkit.net import free_port
from testkit.process import ServerProcess, running_server

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORTS = REPO_ROOT / "reports"
WORK_DIR = REPORTS / "tmp" / "bench"
P99_BOUND_MS = 15.0
#: How long the batch endpoint is driven (new batches are started until this has passed).
BULK_BATCH_SECONDS = 10.0
#: The load tests' transaction pool (read directly: importing the locustfile would gevent-patch).
PAYLOADS = Path(__file__).resolve().parent / "payloads.json"
RATES = "125,250,500,750,1000,1500,2000,2500,3000,3500,4000,5000,6000,7000,8000,10000,12000"
#: The stateful target's name (the service with the history store on).
STATEFUL = "service-stateful"
#: The stateful target with the decision ledger on.
STATEFUL_LEDGER = "service-stateful-ledger"


@dataclass(frozen=True)
class Target:
    """A system under test: how to start it and how to talk to it."""

    name: str
    label: str
    command: list[str]
    ready_path: str
    protocol: str  # request file to use: score | echo | v2
    env: dict[str, str]


# ---- model and payloads -------------------------------------------------------------------


def resolve_model_tag() -> str:
    """The model to benchmark: the project's demo model (trained now if the store has none).

    ``FRAUD_MODEL_TAG`` pins a tag; otherwise ``python -m training.ensure_model`` (what
    ``make serve`` runs) makes sure the store holds a trained model and the latest is used.
    """
    import bentoml  # noqa: PLC0415

    pinned_tag = os.environ.get("FRAUD_MODEL_TAG")
    if pinned_tag:
        return str(bentoml.models.get(pinned_tag).tag)
    if (REPO_ROOT / "training" / "ensure_model.py").exists():
        subprocess.run(
            [sys.executable, "-m", "training.ensure_model", "--preset", "demo"],
            check=True,
            cwd=REPO_ROOT,
        )
    return str(bentoml.models.get(f"{MODEL_NAME}:latest").tag)


def load_pool() -> list[dict[str, Any]]:
    """The committed simulator transactions (see ``loadtests/make_payloads.py``)."""
    return list(json.loads(PAYLOADS.read_text())["transactions"])


def load_model(tag: str) -> tuple[Any, Any]:
    """Booster (one thread, as a worker runs it) and model card from the BentoML store."""
    import bentoml  # noqa: PLC0415

    model = bentoml.models.get(tag)
    booster = bentoml.xgboost.load_model(model)
    booster.set_param({"nthread": 1})
    return booster, load_card(model.info.metadata)


def write_request_files(
    booster: Any, card: Any, out: Path, stateful_passes: int = 0
) -> dict[str, Path]:
    """Pre-encode the pool for each protocol, with the in-process probability of every row.

    With ``stateful_passes``, also the raw-field requests of the stateful target.
    """
    pool = load_pool()
    features = compute_features(columns_from_records(pool), card.feature_names)
    probabilities = booster.inplace_predict(features)
    score, v2 = [], []
    for index, (tx, row, probability) in enumerate(zip(pool, features, probabilities, strict=True)):
        body = {**tx, "transaction_id": f"bench-{index}"}
        item = {"id": body["transaction_id"], "probability": float(probability)}
        score.append({**item, "body": json.dumps(body)})
        if not np.isnan(row).any():  # JSON has no NaN; V2 rows must be complete
            tensor = {
                "name": "input-0",
                "shape": [1, len(row)],
                "datatype": "FP32",
                "data": [float(v) for v in row],
            }
            v2.append({**item, "body": json.dumps({"inputs": [tensor]})})
    out.mkdir(parents=True, exist_ok=True)
    specs = {
        "score": {"path": SCORE_PATH, "check": "score", "requests": score},
        "echo": {"path": SCORE_PATH, "check": "echo", "requests": score},
        "v2": {"path": f"/v2/models/{MLSERVER_MODEL_NAME}/infer", "check": "v2", "requests": v2},
    }
    files = {}
    for name, spec in specs.items():
        files[name] = out / f"requests-{name}.json"
        files[name].write_text(json.dumps(spec))
    if stateful_passes:
        files["stateful"] = bench_stateful.write_request_file(pool, out, stateful_passes)
    return files


# ---- servers and client -------------------------------------------------------------------


def pinned(core: int, command: list[str]) -> list[str]:
    """``command`` restricted to one CPU core."""
    return ["taskset", "-c", str(core), *command]


def make_targets(tag: str, mlserver_repo: Path, port: int, names: list[str]) -> list[Target]:
    """The systems under test, in the order they run."""
    py = sys.executable
    bento_env = {"BENTOML_DO_NOT_TRACK": "true", "PYTHONUNBUFFERED": "1"}
    mlserver_bin = str(ensure_mlserver_env()) if "mlserver" in names else "mlserver"
    service_command = [
        py,
        "-m",
        "bentoml",
        "serve",
        "service.service:FraudScoring",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    # Production mode needs a secret key for hashing ids in logs: a fresh one per run.
    service_env = {**bento_env, "FRAUD_MODEL_TAG": tag, "FRAUD_ID_HASH_KEY": secrets.token_hex(32)}
    all_targets = {
        "service": Target(
            "service",
            "this service (production config)",
            service_command,
            READY_PATH,
            "score",
            service_env,
        ),
        # FRAUD_HISTORY_URL is added once the store runs (run_stateful).
        STATEFUL: Target(
            STATEFUL,
            "this service, history in Valkey (raw fields)",
            service_command,
            READY_PATH,
            "stateful",
            service_env,
        ),
        # FRAUD_DATABASE_URL too (run with bench_ledger.LedgerRun).
        STATEFUL_LEDGER: Target(
            STATEFUL_LEDGER,
            "this service, history in Valkey, decisions in PostgreSQL",
            service_command,
            READY_PATH,
            "stateful",
            service_env,
        ),
        "stock-bentoml": Target(
            "stock-bentoml",
            "stock BentoML @bentoml.api",
            [
                py,
                "-m",
                "bentoml",
                "serve",
                "loadtests.peers.stock_bento:StockFraudScoring",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            "/readyz",
            "score",
            {**bento_env, "FRAUD_PEER_MODEL": tag},
        ),
        "mlserver": Target(
            "mlserver",
            "MLServer 1.7.1 xgboost, adaptive batching",
            [mlserver_bin, "start", str(mlserver_repo)],
            f"/v2/models/{MLSERVER_MODEL_NAME}/ready",
            "v2",
            {},
        ),
        "starlette-echo": Target(
            "starlette-echo",
            "bare Starlette JSON echo (ceiling)",
            [
                py,
                "-m",
                "uvicorn",
                "loadtests.peers.echo:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            "/readyz",
            "echo",
            {},
        ),
    }
    return [all_targets[name] for name in names]


@contextlib.contextmanager
def serve(target: Target, port: int, core: int) -> Iterator[ServerProcess]:
    """Start ``target`` pinned to ``core`` and wait until it is ready."""
    with running_server(
        pinned(core, target.command),
        base_url=f"http://127.0.0.1:{port}",
        ready_path=target.ready_path,
        log_path=WORK_DIR / f"{target.name}.log",
        env=target.env,
        cwd=REPO_ROOT,
        ready_timeout=240,
    ) as server:
        yield server


def drive(base_url: str, requests_file: Path, core: int, out: Path, *extra: str) -> dict[str, Any]:
    """Run the Locust client (pinned to ``core``) and return its result document."""
    command = pinned(
        core,
        [
            sys.executable,
            "-m",
            "loadtests.bench_client",
            "--host",
            base_url,
            "--requests",
            str(requests_file),
            "--out",
            str(out),
            *extra,
        ],
    )
    subprocess.run(command, check=True, cwd=REPO_ROOT, timeout=1800)
    return dict(json.loads(out.read_text()))


def max_sustained(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The passing step with the highest achieved throughput."""
    passing = [s for s in steps if s.get("passed")]
    return max(passing, key=lambda s: s["achieved_rps"]) if passing else None


def peak(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The error-free step with the highest achieved throughput, whatever its latency."""
    clean = [s for s in steps if s["errors"] == 0]
    return max(clean, key=lambda s: s["achieved_rps"]) if clean else None


# ---- overload, bulk, profile --------------------------------------------------------------


def overload(base_url: str, requests_file: Path, capacity: float, core: int) -> dict[str, Any]:
    """Half capacity, then 2x capacity for 10 s, then half again: rejections and recovery.

    Driven open loop by the Go client (see :mod:`loadtests.overload` for why not Locust).
    """
    return measure(base_url, requests_file, capacity, core, WORK_DIR, P99_BOUND_MS)


def bulk(base_url: str, booster: Any, card: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Transactions/s on one server core through the batch and file endpoints vs in-process."""
    return bulk_throughput.measure(
        base_url,
        booster,
        card,
        pool=load_pool(),
        rows=args.bulk_rows,
        server_core=args.server_core,
        client_core=args.client_core,
        batch_seconds=args.bulk_seconds,
    )


def profile(
    server: ServerProcess, files: dict[str, Path], rate: float, core: int
) -> dict[str, Any]:
    """py-spy the whole server tree for 12 s under ``rate`` req/s; top self/total costs."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    raw = REPORTS / "profile" / "service-py-spy.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    client = subprocess.Popen(
        pinned(
            core,
            [
                sys.executable,
                "-m",
                "loadtests.bench_client",
                "--host",
                server.base_url,
                "--requests",
                str(files["score"]),
                "--out",
                str(WORK_DIR / "profile.json"),
                "--plan",
                "phases",
                "--phases",
                f"{rate:.0f}:20",
                "--warmup",
                "2",
            ],
        ),
        cwd=REPO_ROOT,
    )
    try:
        time.sleep(5)
        subprocess.run(
            [
                py_spy,
                "record",
                "--pid",
                str(server.process.pid),
                "--subprocesses",
                "--duration",
                "12",
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(raw),
                "--nonblocking",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    finally:
        client.wait(timeout=120)
    return {
        "rate_rps": rate,
        "raw_file": str(raw.relative_to(REPO_ROOT)),
        **top_frames(raw.read_text()),
    }


def top_frames(collapsed: str, limit: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_counts: dict[str, int] = {}
    total_counts: dict[str, int] = {}
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
            if " (" in f
            else f
            for f in stack.split(";")
        ]
        samples += count
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for frame in set(frames):
            total_counts[frame] = total_counts.get(frame, 0) + count

    def top(counts: dict[str, int]) -> list[dict[str, Any]]:
        # Frames on (almost) every stack are the process/event-loop scaffolding: no signal.
        useful = {k: n for k, n in counts.items() if n < 0.95 * samples and k[:8] != "process "}
        ranked = sorted(useful.items(), key=lambda kv: -kv[1])[:limit]
        return [{"function": name, "share": n / samples} for name, n in ranked]

    return {"samples": samples, "top_self": top(self_counts), "top_total": top(total_counts)}


# ---- main ---------------------------------------------------------------------------------


def main() -> None:
    """CLI: run the benchmark and write the reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--targets",
        default=f"service,{STATEFUL},{STATEFUL_LEDGER},stock-bentoml,mlserver,starlette-echo",
    )
    parser.add_argument(
        "--stateful-passes",
        type=int,
        default=bench_stateful.DEFAULT_PASSES,
        help="copies of the pool (fresh ids) in the stateful target's requests",
    )
    parser.add_argument("--rates", default=RATES)
    parser.add_argument("--step-seconds", type=float, default=6.0)
    # 16 users as in the reference measurements; with more, the one-core client's own
    # scheduling shows in p99 (docs/performance.md, "Method").
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--bulk-rows", type=int, default=20_000)
    parser.add_argument("--bulk-seconds", type=float, default=BULK_BATCH_SECONDS)
    parser.add_argument(
        "--bulk-only",
        action="store_true",
        help="serve the service, measure bulk scoring only and print it (no reports written)",
    )
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args()

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    tag = resolve_model_tag()
    booster, card = load_model(tag)
    if args.bulk_only:
        print(json.dumps(bulk_only(tag, booster, card, args), indent=1))
        return
    names = args.targets.split(",")
    passes = args.stateful_passes if {STATEFUL, STATEFUL_LEDGER} & set(names) else 0
    files = write_request_files(booster, card, WORK_DIR, stateful_passes=passes)
    doc: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(),
        },
        "method": {
            "server_core": args.server_core,
            "client_core": args.client_core,
            "client": f"Locust FastHttpUser, {args.users} users, open-loop pacing",
            "step_seconds": args.step_seconds,
            "p99_bound_ms": P99_BOUND_MS,
            "sustained": "zero errors and p99 <= bound (served rate; 16 users, closed-loop "
            "once saturated)",
        },
        "model_tag": tag,
        "targets": {},
    }
    with tempfile.TemporaryDirectory(prefix="mlserver-repo-") as repo_dir:
        port = free_port()
        repo = write_repository(
            booster, Path(repo_dir), http_port=port, grpc_port=free_port(), metrics_port=free_port()
        )
        for planned in make_targets(tag, repo, port, names):
            print(f"== {planned.name}", flush=True)
            with contextlib.ExitStack() as stack:
                target, stateful, ledger = planned, None, None
                if planned.name in {STATEFUL, STATEFUL_LEDGER}:
                    stateful = stack.enter_context(
                        bench_stateful.StatefulRun.started(
                            args.server_core, WORK_DIR / "valkey", args.stateful_passes
                        )
                    )
                    target = replace(target, env={**target.env, **stateful.service_env})
                if planned.name == STATEFUL_LEDGER:
                    ledger = stack.enter_context(
                        bench_ledger.LedgerRun.started(
                            args.server_core, WORK_DIR / "postgres", WORK_DIR / "spool"
                        )
                    )
                    target = replace(target, env={**target.env, **ledger.service_env})
                server = stack.enter_context(serve(target, port, args.server_core))
                if stateful is not None:
                    stateful.before_load(server.base_url)
                if ledger is not None:
                    ledger.before_load(server.base_url)
                rss_start = tree_rss_bytes(server.process.pid)
                ladder = drive(
                    server.base_url,
                    files[target.protocol],
                    args.client_core,
                    WORK_DIR / f"ladder-{target.name}.json",
                    "--users",
                    str(args.users),
                    "--rates",
                    args.rates,
                    "--step-seconds",
                    str(args.step_seconds),
                )
                best = max_sustained(ladder["steps"])
                result: dict[str, Any] = {
                    "label": target.label,
                    "steps": ladder["steps"],
                    "max_sustained_rps": best["achieved_rps"] if best else 0.0,
                    "at_max": best,
                    "peak_rps": (peak(ladder["steps"]) or {}).get("achieved_rps", 0.0),
                    "at_peak": peak(ladder["steps"]),
                    "rss_mb": {
                        "start": rss_start / 2**20,
                        "end": tree_rss_bytes(server.process.pid) / 2**20,
                    },
                }
                if target.name == "service":
                    capacity = result["max_sustained_rps"] or result["peak_rps"] or 200.0
                    result["overload_capacity"] = capacity
                    result["overload"] = overload(
                        server.base_url, files["score"], capacity, args.client_core
                    )
                    result["bulk"] = bulk(server.base_url, booster, card, args)
                    if not args.no_profile:
                        result["profile"] = profile(server, files, capacity * 0.7, args.client_core)
                    card_answer = _get_json(server.base_url + MODEL_PATH)
                    result["model_card_tag"] = card_answer.get("tag")
                if stateful is not None:
                    result["stateful"] = stateful.after_load(server.base_url, args.client_core)
                if ledger is not None:
                    result["ledger"] = ledger.after_load(server.base_url)
                service_capacity = doc["targets"].get("service", {}).get("overload_capacity")
                if target.name == "starlette-echo" and service_capacity:
                    # The client's own latency under the service's overload plan: the floor
                    # that any rejection latency measured with this client sits on.
                    result["overload_floor"] = overload(
                        server.base_url, files["echo"], service_capacity, args.client_core
                    )
                doc["targets"][target.name] = result
            print(f"   max sustained {result['max_sustained_rps']:.0f} req/s", flush=True)
    doc["machine"]["load_average_at_end"] = os.getloadavg()
    write_reports(doc, args.out)
    print((args.out / "bench.md").read_text())


def bulk_only(tag: str, booster: Any, card: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The bulk measurement alone against the service (a quick check of that path)."""
    port = free_port()
    (target,) = make_targets(tag, WORK_DIR, port, ["service"])
    with serve(target, port, args.server_core) as server:
        return bulk(server.base_url, booster, card, args)


def _get_json(url: str) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    answer = httpx.get(url, timeout=10)
    return dict(answer.json()) if answer.status_code == 200 else {}


if __name__ == "__main__":
    main()
