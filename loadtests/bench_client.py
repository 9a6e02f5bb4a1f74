"""The benchmark's load generator: Locust (FastHttpUser) as a library, paced open-loop.

One process drives one target through a plan of offered rates and records every request
(time, latency, status, validation), so percentiles are exact per step rather than Locust's
rounded, windowed ones. The same client, user count and pre-encoded payloads are used for
every system under test; only the protocol (path, body, answer check) differs.

Plans: ``ladder`` (rising offered rates; stops after two consecutive steps that miss the
latency/error bound) and ``phases`` (a continuous timeline of ``rate:seconds`` pieces, for
overload and recovery).

Run by :mod:`loadtests.bench` pinned to its own core; not meant to be run by hand.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, task
from locust.env import Environment

from loadtests.latency_stats import Sample, summarise

#: Transaction ids and probabilities are compared with this tolerance (float32 model output).
PROBABILITY_TOLERANCE = 1e-4


@dataclass
class Pacing:
    """Offered load shared by every user: ``rate`` requests/s spread over ``users``."""

    rate: float = 1.0
    users: int = 1


PACING = Pacing()
REQUESTS: list[dict[str, Any]] = []
PATH = "/"
CHECK = "score"
#: ``shared``: all users send the requests in the file's order, one sequence between them
#: (a stateful service must see each card's transactions in time order); ``per-user``: each
#: user walks the file from its own random phase.
ORDER = "per-user"
#: Next request of the shared sequence (users are greenlets of one process: no lock needed).
NEXT_SHARED = 0


def check_answer(kind: str, body: Any, expected: dict[str, Any]) -> str | None:
    """Why ``body`` is not the right answer to ``expected`` (None when it is)."""
    try:
        if kind == "echo":
            ok = body.get("transaction_id") == expected["id"]
            return None if ok else "echo body differs"
        if kind == "v2":
            value = float(body["outputs"][0]["data"][0])
        else:
            if body.get("transaction_id") != expected["id"]:
                return "wrong transaction_id"
            value = float(body["fraud_probability"])
            if body.get("is_fraud") != (value >= float(body.get("threshold", math.inf))):
                return "is_fraud inconsistent"
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        return f"malformed answer: {exc!r}"
    if abs(value - expected["probability"]) > PROBABILITY_TOLERANCE:
        return f"probability {value} != in-process {expected['probability']}"
    return None


class BenchUser(FastHttpUser):
    """Posts pre-encoded bodies at its share of the offered rate (open-loop pacing)."""

    host = "http://127.0.0.1"

    def on_start(self) -> None:
        """Start at a random phase so users do not fire in lock-step."""
        self._rng = random.Random(id(self))  # noqa: S311  (jitter, not secrets)
        self._due = time.monotonic() + self._rng.uniform(0, self._interval())
        self._index = self._rng.randrange(len(REQUESTS))

    def _next_index(self) -> int:
        global NEXT_SHARED  # one sequence shared by the users, see ORDER
        if ORDER == "shared":
            index, NEXT_SHARED = NEXT_SHARED, (NEXT_SHARED + 1) % len(REQUESTS)
            return index
        self._index = (self._index + 1) % len(REQUESTS)
        return self._index

    def _interval(self) -> float:
        return PACING.users / max(PACING.rate, 1e-6)

    def wait_time(self) -> float:
        """Seconds until this user's next slot; a late user may catch up one slot, no more."""
        interval = self._interval()
        now = time.monotonic()
        self._due = max(self._due + interval, now - interval)
        return max(0.0, self._due - now)

    @task
    def post(self) -> None:
        """One request, judged on status and body."""
        item = REQUESTS[self._next_index()]
        with self.client.post(
            PATH,
            data=item["body"],
            headers={"Content-Type": "application/json"},
            name=CHECK,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            try:
                body = json.loads(response.content)
            except ValueError:
                response.failure("not JSON")
                return
            problem = check_answer(CHECK, body, item)
            if problem:
                response.failure(problem)


def step_passes(step: dict[str, Any], p99_bound_ms: float) -> bool:
    """Sustained: no errors and p99 within bound; the step's throughput is what was served.

    With a fixed number of users the client is closed-loop once the target saturates (at
    most one request outstanding per user), so a step offered more than the target can take
    measures the target's capacity at that concurrency: the issue's reference method
    ("16 users", throughput at p99 <= 15 ms). Whether it kept up with the offered rate is
    reported beside it, not required.
    """
    return step["errors"] == 0 and step["p99_ms"] is not None and step["p99_ms"] <= p99_bound_ms


def saturated(step: dict[str, Any]) -> bool:
    """The target no longer keeps up: < 90% of the offered rate served, or > 1% errors."""
    return step["achieved_rps"] < 0.9 * step["offered_rps"] or step["errors"] > 0.01 * max(
        step["requests"], 1
    )


class Recorder:
    """Collects a :class:`Sample` per request from Locust's request event."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def __call__(
        self, response_time: float, exception: Any, response: Any = None, **_: Any
    ) -> None:
        status = getattr(response, "status_code", 0) or 0
        self.samples.append(
            Sample(time.monotonic(), float(response_time), int(status), exception is None)
        )

    def since(self, start: float) -> list[Sample]:
        """Samples completed at or after ``start`` (monotonic seconds)."""
        return [s for s in self.samples if s.at >= start]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Drive the target through the plan; return the per-step (or per-second) results."""
    env = Environment(user_classes=[BenchUser], host=args.host)
    recorder = Recorder()
    env.events.request.add_listener(recorder)
    runner = env.create_local_runner()
    PACING.users = args.users
    PACING.rate = args.warmup_rate
    runner.start(args.users, spawn_rate=args.users)
    gevent.sleep(args.warmup)
    # The client keeps every sample; the cyclic collector's full passes over them stall every
    # user (docs/performance.md, "Client choices"). Nothing here builds reference cycles that
    # need it, so it is off while the plan runs.
    gc.collect()
    gc.freeze()
    gc.disable()
    result: dict[str, Any] = {"users": args.users, "steps": []}
    try:
        if args.plan == "ladder":
            misses = 0
            for rate in (float(r) for r in args.rates.split(",")):
                PACING.rate = rate
                gevent.sleep(args.settle)
                start = time.monotonic()
                gevent.sleep(args.step_seconds)
                step = summarise(recorder.since(start), time.monotonic() - start, rate)
                step["passed"] = step_passes(step, args.p99_ms)
                result["steps"].append(step)
                recorder.samples.clear()
                # Keep climbing while the target keeps up (even above the p99 bound: the peak
                # is reported too); stop after two saturated steps.
                misses = 0 if not saturated(step) else misses + 1
                if misses >= 2:
                    break
        else:
            origin = time.monotonic()
            for piece in args.phases.split(","):
                rate, seconds = (float(x) for x in piece.split(":"))
                PACING.rate = rate
                gevent.sleep(seconds)
            end = time.monotonic()
            result["timeline"] = [
                {
                    "second": second,
                    "phase_rate": None,
                    **summarise(
                        [
                            s
                            for s in recorder.samples
                            if origin + second <= s.at < origin + second + 1
                        ],
                        1.0,
                        0.0,
                    ),
                }
                for second in range(int(end - origin))
            ]
            result["all"] = [
                asdict(s) | {"at": s.at - origin} for s in recorder.samples if not s.ok
            ]
    finally:
        runner.quit()
        gc.enable()
    return result


def main() -> None:
    """CLI used by :mod:`loadtests.bench`."""
    global REQUESTS, PATH, CHECK, ORDER  # noqa: PLW0603  (set once from the request file)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--requests", type=Path, required=True, help="pre-encoded request file")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--plan", choices=("ladder", "phases"), default="ladder")
    parser.add_argument("--rates", default="250,500,1000")
    parser.add_argument("--phases", default="")
    parser.add_argument("--step-seconds", type=float, default=8.0)
    parser.add_argument("--settle", type=float, default=1.5)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--warmup-rate", type=float, default=200.0)
    parser.add_argument("--p99-ms", type=float, default=15.0)
    args = parser.parse_args()
    spec = json.loads(args.requests.read_text())
    REQUESTS, PATH, CHECK = spec["requests"], spec["path"], spec["check"]
    ORDER = spec.get("order", "per-user")
    args.out.write_text(json.dumps(run(args), indent=1) + "\n")


if __name__ == "__main__":
    main()
