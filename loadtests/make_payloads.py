"""Generate ``loadtests/payloads.json``: the load tests' pool of real simulator transactions.

The pool is a stratified sample of a seeded simulation (``training.simulator``) with every
behavioural aggregate filled by the offline history store (``training.aggregates``), each
record validated against the transaction contract. Fraud is over-represented (10% instead of
the simulator's <1%) so the fraud code paths (high scores, reasons) get real traffic too; the
three fraud scenarios are sampled evenly. The file stays well below a Kubernetes ConfigMap's
1 MiB so the locustfile and its data can be mounted together.

``python -m loadtests.make_payloads`` rewrites the committed file (deterministic).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from fraud_contract.schema import TRANSACTION_FIELDS, Transaction

OUT_PATH: Final = Path(__file__).resolve().parent / "payloads.json"
#: Days at the start of a simulation whose 30-day (delayed) windows are still filling up.
WARM_UP_DAYS: Final = 37


def record_to_transaction(row: dict[str, Any]) -> dict[str, Any]:
    """One simulated row as a contract request body (missing aggregates omitted)."""
    body: dict[str, Any] = {}
    for name in TRANSACTION_FIELDS:
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, pd.Timestamp):
            value = value.isoformat()
        elif isinstance(value, np.integer):
            value = int(value)
        elif isinstance(value, float | np.floating):
            value = round(float(value), 4)  # a history store's precision; keeps the file small
        body[name] = value
    Transaction.model_validate(body)  # fail here, not in the load test
    return body


def build_pool(size: int, fraud_share: float, seed: int, preset_name: str) -> dict[str, Any]:
    """Simulate, aggregate and sample ``size`` transactions (``fraud_share`` of them fraud)."""
    from training.aggregates import add_aggregates  # noqa: PLC0415  (training-only deps)
    from training.simulator import SCENARIO_NAMES, preset, simulate  # noqa: PLC0415

    config = preset(preset_name, seed=seed)
    frame = add_aggregates(simulate(config))
    start = frame["timestamp"].min() + pd.Timedelta(days=WARM_UP_DAYS)
    frame = frame[frame["timestamp"] >= start]
    rng = np.random.default_rng(seed)
    n_fraud = round(size * fraud_share)
    picked: list[pd.DataFrame] = []
    frauds = frame[frame["is_fraud"] == 1]
    scenarios = sorted(set(frauds["fraud_scenario"]))
    for i, scenario in enumerate(scenarios):
        rows = frauds[frauds["fraud_scenario"] == scenario]
        want = n_fraud // len(scenarios) + (1 if i < n_fraud % len(scenarios) else 0)
        picked.append(rows.sample(n=min(want, len(rows)), random_state=rng))
    genuine = frame[frame["is_fraud"] == 0]
    picked.append(genuine.sample(n=size - sum(len(p) for p in picked), random_state=rng))
    sample = pd.concat(picked).sample(frac=1.0, random_state=rng)
    counts = sample["fraud_scenario"].map(SCENARIO_NAMES).value_counts().to_dict()
    transactions = [
        record_to_transaction({str(k): v for k, v in row.items()})
        for row in sample.to_dict(orient="records")
    ]
    return {
        "source": {
            "generator": "python -m loadtests.make_payloads",
            "simulator_preset": preset_name,
            "seed": seed,
            "scenarios": {str(k): int(v) for k, v in sorted(counts.items())},
        },
        "transactions": transactions,
    }


def main() -> None:
    """CLI: write the pool file."""
    parser = argparse.ArgumentParser(description="Write the load-test transaction pool.")
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--fraud-share", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--preset", default="test")
    parser.add_argument("--out", type=Path, default=OUT_PATH)
    args = parser.parse_args()
    pool = build_pool(args.size, args.fraud_share, args.seed, args.preset)
    args.out.write_text(json.dumps(pool, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {len(pool['transactions'])} transactions to {args.out}: {pool['source']}")


if __name__ == "__main__":
    main()
