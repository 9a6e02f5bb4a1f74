"""Overload and recovery, driven open-loop by a Go client (vegeta's library) on its own core.

Why not the benchmark's Locust client here: at twice the service's capacity one Locust core
is saturated itself, its own latency rises above what a rejection may take and stays disturbed
after the load drops, so neither target could be judged (measured in docs/performance.md,
"Client choices").
``phased-attack`` (``loadtests/phased_attack``, built on vegeta's attack library by
``make system-deps``) paces requests at constant rates (open loop: a slow answer does not
delay the next request), costs far less per request, and keeps its connections through every
phase of the plan, as clients do when load rises. The bench runs the same plan against the
echo with it, so the report shows the client's own floor next to the service's numbers.

Plan: ``low`` (half the capacity) for 5 s, ``high`` (twice it) for 10 s, ``low`` for 10 s;
every request's send time, status, latency and body are kept.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from loadtests.latency_stats import Sample, summarise

#: At most this many requests in flight (vegeta workers): well past one worker's admission
#: limit (64), as 128 users were in the Locust version of this plan.
MAX_IN_FLIGHT: Final = 128
#: A request unanswered after this long counts as an error (status 0).
REQUEST_TIMEOUT_S: Final = 5
#: What an answer must contain to count as a valid 200 (per protocol of the request file).
_ANSWER_MARKER: Final = {"score": b'"fraud_probability"', "echo": b'"transaction_id"'}


@dataclass(frozen=True)
class Phase:
    """One constant-rate piece of the plan."""

    rate: float
    seconds: int


def attack_binary() -> str:
    """Path of ``phased-attack`` (built into ``.tools/bin`` by ``make system-deps``)."""
    tools = Path(__file__).resolve().parents[1] / ".tools" / "bin"
    found = shutil.which("phased-attack") or shutil.which("phased-attack", path=str(tools))
    if not found:
        msg = "phased-attack not found: run `make system-deps` (builds loadtests/phased_attack)"
        raise FileNotFoundError(msg)
    return found


def plan_for(capacity: float) -> list[Phase]:
    """Half the capacity, twice it for 10 s, half again."""
    low, high = max(capacity * 0.5, 50.0), max(capacity * 2.0, 200.0)
    return [Phase(low, 5), Phase(high, 10), Phase(low, 10)]


def write_targets(requests_file: Path, base_url: str, out: Path) -> Path:
    """vegeta's JSON target format (one POST per line) from a bench request file."""
    spec = json.loads(requests_file.read_text())
    url = base_url.rstrip("/") + spec["path"]
    with out.open("w") as handle:
        for item in spec["requests"]:
            target = {
                "method": "POST",
                "url": url,
                "body": base64.b64encode(item["body"].encode()).decode(),
                "header": {"Content-Type": ["application/json"]},
            }
            handle.write(json.dumps(target) + "\n")
    return out


def plan_text(phases: list[Phase]) -> str:
    """The plan as ``rate:seconds,...`` (phased-attack's ``-plan`` and the report)."""
    return ",".join(f"{p.rate:.0f}:{p.seconds}" for p in phases)


def attack(targets: Path, phases: list[Phase], core: int, out: Path) -> Path:
    """Run the whole plan as one client pinned to ``core``; return the CSV results."""
    command = [
        "taskset",
        "-c",
        str(core),
        attack_binary(),
        f"-targets={targets}",
        f"-plan={plan_text(phases)}",
        f"-max-workers={MAX_IN_FLIGHT}",
        f"-timeout={REQUEST_TIMEOUT_S}s",
        f"-output={out}",
    ]
    total = sum(p.seconds for p in phases)
    subprocess.run(command, check=True, timeout=total + 60)
    return out


def parse_results(encoded_csv: str, kind: str) -> list[Sample]:
    """Samples from ``vegeta encode --to csv`` (``at`` = send time, seconds since the epoch).

    A request counts as answered only with a 200 whose body looks like the protocol's answer.
    """
    marker = _ANSWER_MARKER[kind]
    samples = []
    for row in csv.reader(encoded_csv.splitlines()):
        sent_ns, status, latency_ns, body = int(row[0]), int(row[1]), int(row[2]), row[6]
        ok = status == 200 and marker in base64.b64decode(body)
        samples.append(Sample(sent_ns / 1e9, latency_ns / 1e6, status, ok))
    samples.sort(key=lambda s: s.at)
    return samples


def analyse(samples: list[Sample], phases: list[Phase], p99_bound_ms: float) -> dict[str, Any]:
    """Per-second timeline, rejection latency and recovery time after the drop."""
    origin = samples[0].at if samples else 0.0
    seconds = math.ceil(samples[-1].at - origin) if samples else 0
    by_second: list[list[Sample]] = [[] for _ in range(seconds + 1)]
    for sample in samples:
        by_second[int(sample.at - origin)].append(sample)
    timeline = [
        {"second": second, **summarise(chunk, 1.0, 0.0)}
        for second, chunk in enumerate(by_second)
        if chunk
    ]
    overload_start = phases[0].seconds
    drop_at = overload_start + phases[1].seconds
    # Recovered: the first second after the drop from which every second is error-free and
    # within the latency bound.
    recovered_at = None
    for entry in reversed([t for t in timeline if t["second"] >= drop_at]):
        if entry["errors"] or (entry["p99_ms"] or 0.0) > p99_bound_ms:
            break
        recovered_at = entry["second"]
    during = [s for s in samples if overload_start <= s.at - origin < drop_at]
    whole = summarise(samples, 1.0, 0.0)
    return {
        "client": f"phased-attack (Go, vegeta), open loop, at most {MAX_IN_FLIGHT} in flight",
        "plan": plan_text(phases),
        "max_in_flight": MAX_IN_FLIGHT,
        "requests": len(samples),
        "achieved_rps_during_overload": len(during) / phases[1].seconds,
        "overload_p99_ms": summarise(during, 1.0, 0.0)["p99_ms"],
        # What the requests let in during the overload waited: admission's promise.
        "admitted_p99_ms": summarise([s for s in during if s.ok], 1.0, 0.0)["p99_ms"],
        "errors_before_overload": sum(not s.ok for s in samples if s.at - origin < overload_start),
        "rejections": whole["rejections"],
        "other_errors": whole["errors"] - whole["rejections"],
        "rejection_p99_ms": whole["rejection_p99_ms"],
        "recovery_s_after_drop": None if recovered_at is None else recovered_at - drop_at,
        "timeline": timeline,
    }


def measure(  # noqa: PLR0917
    base_url: str,
    requests_file: Path,
    capacity: float,
    core: int,
    work_dir: Path,
    p99_bound_ms: float,
    phases: list[Phase] | None = None,
) -> dict[str, Any]:
    """The whole overload measurement against one running server (``capacity`` in req/s).

    ``phases`` replaces :func:`plan_for`'s plan (three phases: before, overload, after).
    """
    kind = json.loads(requests_file.read_text())["check"]
    targets = write_targets(requests_file, base_url, work_dir / f"targets-{kind}.jsonl")
    phases = phases or plan_for(capacity)
    results = attack(targets, phases, core, work_dir / f"overload-{kind}.csv")
    return analyse(parse_results(results.read_text(), kind), phases, p99_bound_ms)
