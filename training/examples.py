"""``python -m training.examples``: regenerate ``fraud_contract/examples.json``.

Picks REAL simulated transactions (demo preset, fixed seed) with every aggregate filled: one
genuine and one per fraud scenario, from late in the simulation so that all windows are full.
Each pick is the first row (in time) matching a readable rule, so the file is reproducible.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from fraud_contract import TRANSACTION_FIELDS, Transaction
from fraud_contract.schema import is_whole_number
from training.simulation_pipeline import simulate_with_aggregates
from training.simulator import preset

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "fraud_contract" / "examples.json"

#: (name, description, rule) per example; the rule is applied to the late part of the data.
_PICKS: tuple[tuple[str, str, str], ...] = (
    (
        "genuine",
        "An ordinary purchase: amount close to the card's 30-day average at a "
        "terminal with no known fraud.",
        "fraud_scenario == 0 and terminal_risk_30d == 0 and customer_nb_tx_30d >= 30 "
        "and 0.8 <= amount / customer_avg_amount_30d <= 1.2",
    ),
    (
        "large_amount",
        "Scenario 1: any amount above 220 is fraud in the simulator.",
        "fraud_scenario == 1",
    ),
    (
        "compromised_terminal",
        "Scenario 2: a terminal compromised more than a week ago; its "
        "delayed fraud ratio and its run of labelled frauds already show it.",
        "fraud_scenario == 2 and terminal_risk_7d >= 0.5",
    ),
    (
        "compromised_card",
        "Scenario 3: a stolen card's details used for an amount about five "
        "times its usual spending.",
        "fraud_scenario == 3 and amount / customer_avg_amount_30d >= 2.5",
    ),
)


def _record(row: pd.Series) -> dict[str, Any]:
    """One contract record from a frame row (JSON types, validated)."""
    out: dict[str, Any] = {}
    for name in TRANSACTION_FIELDS:
        value = row[name]
        if name == "timestamp":
            out[name] = pd.Timestamp(value).isoformat()
        elif isinstance(value, str):
            out[name] = value
        elif is_whole_number(name):
            out[name] = int(value)
        else:
            out[name] = round(float(value), 6)
            if not math.isfinite(out[name]):
                msg = f"{name} is not finite in the simulated row"
                raise ValueError(msg)
    Transaction.model_validate(out)
    return out


def build_examples(seed: int = 7) -> list[dict[str, Any]]:
    """The example list (``name``, ``description``, ``transaction``, plus the simulator label)."""
    frame = simulate_with_aggregates(preset("demo", seed), progress=False)
    late = frame[frame["timestamp"] >= frame["timestamp"].max() - pd.Timedelta(days=30)]
    examples = []
    for name, description, rule in _PICKS:
        row = late.query(rule).iloc[0]
        examples.append(
            {
                "name": name,
                "description": description,
                "is_fraud": int(row["is_fraud"]),
                "fraud_scenario": int(row["fraud_scenario"]),
                "transaction": _record(row),
            }
        )
    return examples


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    examples = build_examples(args.seed)
    args.out.write_text(json.dumps(examples, indent=2) + "\n")
    print(f"{len(examples)} examples -> {args.out}")


if __name__ == "__main__":
    main()
