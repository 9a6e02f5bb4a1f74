"""``fraud-simulate``: write a simulated transaction table (and its aggregates) as Parquet."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from training.aggregates import add_aggregates
from training.simulator import PRESETS, RAW_COLUMNS, SimulatorConfig, preset, simulate


def simulate_with_aggregates(config: SimulatorConfig, progress: bool = True) -> pd.DataFrame:
    """Simulate ``config`` and fill every contract aggregate (the training input)."""
    with tqdm(total=2, desc="simulate", unit="step", disable=not progress) as bar:
        bar.set_postfix_str(f"{config.n_customers} cards, {config.n_days} days")
        raw = simulate(config)
        bar.update()
        bar.set_postfix_str(f"{len(raw):,} transactions: aggregates")
        frame = add_aggregates(raw)
        bar.update()
    return frame


def write_dataset(frame: pd.DataFrame, config: SimulatorConfig, out_dir: Path) -> dict[str, str]:
    """Write ``transactions.parquet`` (raw columns), ``transactions_with_aggregates.parquet``
    (the records as the scoring API takes them, plus labels) and ``simulation.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "raw": out_dir / "transactions.parquet",
        "with_aggregates": out_dir / "transactions_with_aggregates.parquet",
        "summary": out_dir / "simulation.json",
    }
    frame.loc[:, list(RAW_COLUMNS)].to_parquet(paths["raw"], index=False)
    frame.to_parquet(paths["with_aggregates"], index=False)
    summary = {
        "config": config.as_dict(),
        "transactions": len(frame),
        "frauds": int(frame["is_fraud"].sum()),
        "fraud_rate": float(frame["is_fraud"].mean()),
        "by_scenario": {str(k): int(v) for k, v in frame["fraud_scenario"].value_counts().items()},
        "first": str(frame["timestamp"].min()),
        "last": str(frame["timestamp"].max()),
    }
    paths["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    return {key: str(path) for key, path in paths.items()}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    parser.add_argument("--out", type=Path, default=None, help="directory (default data/PRESET)")
    args = parser.parse_args(argv)
    config = preset(args.preset, args.seed)
    started = time.perf_counter()
    frame = simulate_with_aggregates(config)
    paths = write_dataset(frame, config, args.out or Path("data") / args.preset)
    print(
        f"{len(frame):,} transactions, {int(frame['is_fraud'].sum()):,} frauds "
        f"({frame['is_fraud'].mean():.2%}) in {time.perf_counter() - started:.1f}s -> "
        f"{paths['with_aggregates']}"
    )


if __name__ == "__main__":
    main()
