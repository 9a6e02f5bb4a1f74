"""``make soak``: 10 minutes at 70% of measured capacity; zero errors, RSS growth < 5%.

Capacity is the service's max sustained throughput from the latest ``reports/bench.json``
(``make bench``), or ``--capacity``. The service runs in its production configuration pinned to
one core, the benchmark client (same payloads, answers checked against the in-process model)
on the other. Resident memory of the whole server process tree is sampled every 5 s; growth is
measured from the end of the first minute (allocator and caches warmed) to the end.

Writes ``reports/soak.json`` and exits non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loadtests.bench import (
    REPORTS,
    WORK_DIR,
    load_model,
    make_targets,
    pinned,
    resolve_model_tag,
    serve,
    write_request_files,
)
from loadtests.process_memory import tree_rss_bytes
from testkit.net import free_port

MAX_RSS_GROWTH = 0.05
WARM_UP_S = 60.0


def capacity_from_bench(path: Path) -> float | None:
    """The service's max sustained req/s from a bench report, if there is one."""
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    value = doc.get("targets", {}).get("service", {}).get("max_sustained_rps")
    return float(value) if value else None


def rss_growth(samples: list[tuple[float, int]], warm_up_s: float) -> float:
    """Relative RSS growth from the first sample after ``warm_up_s`` to the last sample."""
    after = [rss for t, rss in samples if t >= warm_up_s]
    if len(after) < 2 or after[0] == 0:
        raise ValueError("not enough memory samples after the warm-up")
    return (after[-1] - after[0]) / after[0]


def main() -> None:
    """CLI: run the soak and enforce its targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--share", type=float, default=0.7, help="fraction of capacity")
    parser.add_argument("--capacity", type=float, default=None, help="req/s (default: bench)")
    parser.add_argument("--out", type=Path, default=REPORTS / "soak.json")
    args = parser.parse_args()
    capacity = args.capacity or capacity_from_bench(REPORTS / "bench.json")
    if not capacity:
        sys.exit("soak: no capacity known: run `make bench` first or pass --capacity")
    rate, seconds = capacity * args.share, args.minutes * 60
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    tag = resolve_model_tag()
    booster, card = load_model(tag)
    files = write_request_files(booster, card, WORK_DIR)
    port = free_port()
    (target,) = make_targets(tag, WORK_DIR, port, ["service"])
    samples: list[tuple[float, int]] = []
    with serve(target, port, core=0) as server:
        client_out = WORK_DIR / "soak-client.json"
        command = [sys.executable, "-m", "loadtests.bench_client", "--host", server.base_url,
                   "--requests", str(files["score"]), "--out", str(client_out),
                   "--plan", "phases", "--phases", f"{rate:.0f}:{seconds:.0f}"]  # fmt: skip
        client = subprocess.Popen(pinned(1, command))
        start = time.monotonic()
        while client.poll() is None:
            samples.append((time.monotonic() - start, tree_rss_bytes(server.process.pid)))
            time.sleep(5)
        if client.returncode != 0:
            sys.exit(f"soak: the load client failed ({client.returncode})")
    timeline = json.loads(client_out.read_text())["timeline"]
    errors = sum(t["errors"] for t in timeline)
    growth = rss_growth(samples, WARM_UP_S)
    served = sum(t["requests"] for t in timeline) / max(len(timeline), 1)
    report: dict[str, Any] = {
        "model_tag": tag,
        "capacity_rps": capacity,
        "offered_rps": rate,
        "served_rps": served,
        "seconds": seconds,
        "errors": errors,
        "worst_second_p99_ms": max((t["p99_ms"] or 0) for t in timeline),
        "rss_mb": [(round(t), rss / 2**20) for t, rss in samples],
        "rss_growth": growth,
        "passed": errors == 0 and growth < MAX_RSS_GROWTH,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"soak: {served:.0f} req/s for {seconds:.0f}s, {errors} errors, "
          f"RSS growth {growth:.1%} -> {'PASS' if report['passed'] else 'FAIL'}")  # fmt: skip
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
