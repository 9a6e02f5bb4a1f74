"""``fraud-train``: simulate a preset, train, evaluate, save the model to the BentoML store.

Periods (whole days, the label delay between each; never a random split)::

    | burn-in (30 d) | train | delay 7 d | validation 7 d | delay 7 d | test 7 d |

* burn-in: the first 30 days only feed the 30-day windows; no row of them is trained on;
* validation: early stopping, then the decision threshold (expected-cost rule below);
* test: the reported metrics, after the handbook's test cleaning (cards with an already
  known fraud are removed: the processor has blocked them).

Threshold rule (expected cost): every alert costs ``REVIEW_COST`` (an analyst's review), every
missed fraud costs its amount; the threshold minimising the total on validation is kept.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from fraud_contract import MODEL_FEATURES
from fraud_contract.artifact import ModelCard
from training.aggregates import LABEL_DELAY_DAYS
from training.metrics import REVIEW_COST, CostModel, full_metrics
from training.model import MAX_ROUNDS, FittedModel, fit, risk_bands
from training.protocol import Period, clean_test, day_index, select
from training.simulate import simulate_with_aggregates
from training.simulator import PRESETS, SCENARIO_NAMES, SimulatorConfig, preset
from training.store import save as save_to_store

#: The tiny test preset only has to produce a working model quickly.
MAX_ROUNDS_BY_PRESET = {"test": 60}
BURN_IN_DAYS = 30
VALID_DAYS = 7
TEST_DAYS = 7
THRESHOLD_RULE = (
    f"minimise expected cost on the validation week: {REVIEW_COST:g} per alert reviewed + "
    "the amount of every missed fraud"
)


@dataclass(frozen=True)
class Periods:
    """Train, validation and test periods of one run."""

    train: Period
    valid: Period
    test: Period

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {name: getattr(self, name).as_dict() for name in ("train", "valid", "test")}


def default_periods(config: SimulatorConfig, delay_days: int = LABEL_DELAY_DAYS) -> Periods:
    """Lay the periods out backwards from the simulation's last day."""
    start = date.fromisoformat(config.start_date)
    end = start + timedelta(days=config.n_days)
    test = Period(end - timedelta(days=TEST_DAYS), TEST_DAYS)
    valid = Period(test.start - timedelta(days=delay_days + VALID_DAYS), VALID_DAYS)
    train_start = start + timedelta(days=BURN_IN_DAYS)
    train_days = (valid.start - timedelta(days=delay_days) - train_start).days
    if train_days < 7:
        msg = f"simulation of {config.n_days} days is too short to train (train {train_days} d)"
        raise ValueError(msg)
    return Periods(Period(train_start, train_days), valid, test)


def knowledge_start(assessed: Period, delay_days: int = LABEL_DELAY_DAYS) -> Period:
    """The week whose frauds the handbook's cleaning treats as known for ``assessed``."""
    return Period(assessed.start - timedelta(days=delay_days + 7), 7)


def fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's content (row hashes), identifying the training data."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def code_version() -> str:
    """Git revision of the working tree (``+dirty`` when it has uncommitted changes)."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "training", "fraud_contract"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("+dirty" if dirty.strip() else "")


def scenario_recall(frame: pd.DataFrame, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Recall at the threshold for each fraud scenario present in ``frame``."""
    out: dict[str, float] = {}
    scenario = frame["fraud_scenario"].to_numpy()
    for code, name in SCENARIO_NAMES.items():
        mask = scenario == code
        if code and mask.any():
            out[name] = float(np.mean(score[mask] >= threshold))
    return out


@dataclass
class TrainingResult:
    """Everything a training run produced (the saved tag is filled in by :func:`train`)."""

    model: FittedModel
    card: ModelCard
    test: pd.DataFrame
    test_score: np.ndarray
    valid: pd.DataFrame
    valid_score: np.ndarray
    tag: str = ""


def evaluate(
    frame: pd.DataFrame,
    periods: Periods,
    config: SimulatorConfig,
    preset_name: str,
    feature_names: tuple[str, ...] = MODEL_FEATURES,
) -> TrainingResult:
    """Fit on the train period, choose the threshold on validation, measure on test."""
    train_rows = select(frame, periods.train)
    # Cleaning as in the handbook: frauds are "known" from 14 days before the assessed week
    # (the book's training week) on; for the benchmark this is exactly the book's test set.
    valid_rows = clean_test(frame, knowledge_start(periods.valid), periods.valid)
    test_rows = clean_test(frame, knowledge_start(periods.test), periods.test)
    model = fit(
        train_rows,
        valid_rows,
        feature_names,
        max_rounds=MAX_ROUNDS_BY_PRESET.get(preset_name, MAX_ROUNDS),
    )
    cost_model = CostModel()
    valid_score = model.predict(valid_rows)
    threshold, _ = cost_model.best_threshold(
        valid_rows["is_fraud"].to_numpy(), valid_rows["amount"].to_numpy(), valid_score
    )
    test_score = model.predict(test_rows)
    metrics = full_metrics(
        test_rows["is_fraud"].to_numpy(),
        test_score,
        day_index(test_rows),
        test_rows["customer_id"].to_numpy(),
        test_rows["amount"].to_numpy(),
        threshold,
        cost_model,
    )
    metrics["best_iteration"] = float(model.best_iteration)
    card = ModelCard(
        feature_names=list(model.feature_names),
        threshold=threshold,
        threshold_rule=THRESHOLD_RULE,
        risk_bands=risk_bands(threshold),
        metrics=metrics,
        scenario_recall=scenario_recall(test_rows, test_score, threshold),
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        training_data_fingerprint=fingerprint(train_rows),
        code_version=code_version(),
        dataset={
            "preset": preset_name,
            "simulator": config.as_dict(),
            "periods": periods.as_dict(),
            "label_delay_days": LABEL_DELAY_DAYS,
            "train_rows": len(train_rows),
            "train_frauds": int(train_rows["is_fraud"].sum()),
            "test_rows": len(test_rows),
            "test_frauds": int(test_rows["is_fraud"].sum()),
        },
    )
    return TrainingResult(model, card, test_rows, test_score, valid_rows, valid_score)


def train(
    preset_name: str = "demo", seed: int | None = None, progress: bool = True, save: bool = True
) -> TrainingResult:
    """Simulate ``preset_name``, train and evaluate; save to the BentoML store if ``save``."""
    config = preset(preset_name, seed)
    frame = simulate_with_aggregates(config, progress=progress)
    with tqdm(total=1, desc="train", unit="model", disable=not progress) as bar:
        result = evaluate(frame, default_periods(config), config, preset_name)
        bar.update()
    if save:
        result.tag = save_to_store(
            result.model.booster,
            result.card,
            labels={"preset": preset_name, "code_version": result.card.code_version[:63]},
        )
    return result


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="also write the evaluation report (JSON, Markdown, PNG) here",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = train(args.preset, args.seed)
    m = result.card.metrics
    print(
        f"trained in {time.perf_counter() - started:.1f}s: "
        f"AUC {m['auc_roc']:.3f}  AP {m['average_precision']:.3f}  "
        f"CP@100 {m['card_precision_at_100']:.3f}  threshold {result.card.threshold:.3f}"
    )
    if args.report_dir is not None:
        from training.report import write_report  # noqa: PLC0415 (matplotlib only when asked)

        write_report(result, args.report_dir, title=f"Model evaluation ({args.preset} preset)")
        print(f"report -> {args.report_dir}")
    print(result.tag)  # last line: the tag (scripts and tests read it)


if __name__ == "__main__":
    main()
