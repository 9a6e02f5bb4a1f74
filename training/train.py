"""``fraud-train``: train on a simulated preset or a user's file, evaluate, save to the store.

The data is the simulator's (``--preset``, the default) or a labelled transactions file
(``--data PATH``, Parquet or CSV, see :mod:`training.transactions_file`). The model card
records which: the file's path, rows, period and SHA-256, or the simulator's configuration.

Periods (whole days, the label delay between each; never a random split)::

    | burn-in (30 d) | train | delay 7 d | validation 7 d | delay 7 d | test 7 d |

* burn-in: the first 30 days only feed the 30-day windows; no row of them is trained on;
* validation: early stopping, then the decision threshold (expected-cost rule below); a
  :class:`Recipe` can also refit on every labelled day up to the end of the validation week
  and average with a 7-day model (off by default, see :func:`evaluate`);
* test: the reported metrics, after the handbook's test cleaning (cards with an already
  known fraud are removed: the processor has blocked them).

Threshold rule (expected cost): every alert costs ``REVIEW_COST`` (an analyst's review), every
missed fraud costs its amount; the threshold minimising the total on validation is kept.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from tqdm import tqdm

from fraud_contract import MODEL_FEATURES
from fraud_contract.artifact import ModelCard
from training.aggregates import LABEL_DELAY_DAYS
from training.ensemble import average_boosters
from training.evaluation import REVIEW_COST, CostModel, full_metrics
from training.model import MAX_ROUNDS, FittedModel, fit, recency_weights, risk_bands
from training.protocol import Period, clean_test, day_index, select
from training.simulation_pipeline import simulate_with_aggregates
from training.simulator import PRESETS, SCENARIO_NAMES, SimulatorConfig, preset
from training.store import save as save_to_store
from training.transactions_file import (
    EXIT_DATA_ERROR,
    SCENARIO_COLUMN,
    DataError,
    DataSource,
    describe_frame,
    load_transactions,
)

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


def periods_for(start: date, end: date, delay_days: int = LABEL_DELAY_DAYS) -> Periods:
    """Lay the periods out backwards from ``end`` (the first day after the data)."""
    test = Period(end - timedelta(days=TEST_DAYS), TEST_DAYS)
    valid = Period(test.start - timedelta(days=delay_days + VALID_DAYS), VALID_DAYS)
    train_start = start + timedelta(days=BURN_IN_DAYS)
    train_days = (valid.start - timedelta(days=delay_days) - train_start).days
    if train_days < 7:
        needed = BURN_IN_DAYS + 7 + 2 * delay_days + VALID_DAYS + TEST_DAYS
        msg = (
            f"data of {(end - start).days} days ({start} .. {end - timedelta(days=1)}) is too "
            f"short to train: the periods need at least {needed} days"
        )
        raise DataError(msg)
    return Periods(Period(train_start, train_days), valid, test)


def default_periods(config: SimulatorConfig, delay_days: int = LABEL_DELAY_DAYS) -> Periods:
    """Lay the periods out backwards from the simulation's last day."""
    start = date.fromisoformat(config.start_date)
    return periods_for(start, start + timedelta(days=config.n_days), delay_days)


def data_days(frame: pd.DataFrame) -> tuple[date, date]:
    """First day of a transaction frame and the first day after it."""
    first = pd.Timestamp(frame["timestamp"].min()).date()
    last = pd.Timestamp(frame["timestamp"].max()).date()
    return first, last + timedelta(days=1)


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
    """Recall at the threshold for each fraud scenario present in ``frame``.

    Empty when the data has no scenario column (a user's file usually has none).
    """
    out: dict[str, float] = {}
    if SCENARIO_COLUMN not in frame.columns:
        return out
    scenario = frame[SCENARIO_COLUMN].to_numpy()
    for code, name in SCENARIO_NAMES.items():
        mask = scenario == code
        if code and mask.any():
            out[name] = float(np.mean(score[mask] >= threshold))
    return out


@dataclass(frozen=True)
class Recipe:
    """How the served model is built (chosen on validation weeks, never on a test week).

    * ``refit``: after early stopping, fit again with the chosen rounds on every labelled
      day up to the end of the validation week (labels known when the test week starts);
    * ``half_life_days``: training weights halve every that many days of age (None: equal);
    * ``recent_days``: when > 0, average with a model of only the last that many days.

    The default is the single long-history model: refit plus a 7-day average did no better
    on the validation weeks of five worlds and doubles the trees (docs/model.md).
    """

    refit: bool = False
    half_life_days: float | None = None
    recent_days: int = 0


DEFAULT_RECIPE: Final = Recipe()


@dataclass
class TrainingResult:
    """Everything a training run produced (the saved tag is filled in by :func:`train`).

    ``selection`` is the out-of-sample model the rounds and threshold were chosen with
    (``model`` itself when there is no refit).
    """

    model: FittedModel
    card: ModelCard
    test: pd.DataFrame
    test_score: np.ndarray
    valid: pd.DataFrame
    valid_score: np.ndarray
    tag: str = ""
    selection: FittedModel | None = None


def simulated_source(frame: pd.DataFrame, config: SimulatorConfig, preset_name: str) -> DataSource:
    """The description of a simulated frame."""
    return describe_frame(frame, kind="simulator", preset=preset_name, simulator=config.as_dict())


def evaluate(
    frame: pd.DataFrame,
    periods: Periods,
    source: DataSource,
    feature_names: tuple[str, ...] = MODEL_FEATURES,
    *,
    max_rounds: int = MAX_ROUNDS,
    recipe: Recipe = DEFAULT_RECIPE,
) -> TrainingResult:
    """Choose rounds and threshold out of sample, refit on every label known, measure on test.

    1. fit on the train period (recency-weighted), stop early on the validation week, choose
       the threshold on the validation week: both out of sample;
    2. with ``recipe.refit``, fit again with the same rounds on every labelled day up to the
       validation week's end (the labels known when the test week starts) and serve that;
    3. with ``recipe.recent_days``, average with a model of only the latest labelled days.
    """
    train_rows = select(frame, periods.train)
    # Cleaning as in the handbook: frauds are "known" from 14 days before the assessed week
    # (the book's training week) on; for the benchmark this is exactly the book's test set.
    valid_rows = clean_test(frame, knowledge_start(periods.valid), periods.valid)
    test_rows = clean_test(frame, knowledge_start(periods.test), periods.test)
    weights = recency_weights(train_rows, periods.train.end, recipe.half_life_days)
    chosen = fit(train_rows, valid_rows, feature_names, max_rounds=max_rounds, weight=weights)
    rounds = chosen.best_iteration + 1
    selection = _with_recent(chosen, frame, periods.train, recipe, rounds)
    cost_model = CostModel()
    valid_score = selection.predict(valid_rows)
    threshold, _ = cost_model.best_threshold(
        valid_rows["is_fraud"].to_numpy(), valid_rows["amount"].to_numpy(), valid_score
    )
    served, fit_rows, fitted = selection, train_rows, periods.train
    if recipe.refit:
        fitted = Period(periods.train.start, (periods.valid.end - periods.train.start).days)
        fit_rows = select(frame, fitted)
        weights = recency_weights(fit_rows, fitted.end, recipe.half_life_days)
        refit = fit(fit_rows, None, feature_names, max_rounds=rounds, weight=weights)
        served = _with_recent(refit, frame, fitted, recipe, rounds)
    served.history = chosen.history
    test_score = served.predict(test_rows)
    metrics = full_metrics(
        test_rows["is_fraud"].to_numpy(),
        test_score,
        day_index(test_rows),
        test_rows["customer_id"].to_numpy(),
        test_rows["amount"].to_numpy(),
        threshold,
        cost_model,
    )
    metrics["best_iteration"] = float(chosen.best_iteration)
    card = ModelCard(
        feature_names=list(served.feature_names),
        threshold=threshold,
        threshold_rule=THRESHOLD_RULE,
        risk_bands=risk_bands(threshold),
        metrics=metrics,
        scenario_recall=scenario_recall(test_rows, test_score, threshold),
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        training_data_fingerprint=fingerprint(fit_rows),
        code_version=code_version(),
        dataset={
            # "preset" and "simulator" stay top-level keys for simulated data (older cards).
            **({"preset": source.preset} if source.preset else {}),
            **({"simulator": source.simulator} if source.simulator else {}),
            "source": source.as_dict(),
            "periods": periods.as_dict(),
            "fitted_period": fitted.as_dict(),
            # The store's metadata takes no None: an unset option is left out.
            "recipe": {k: v for k, v in asdict(recipe).items() if v is not None},
            "label_delay_days": LABEL_DELAY_DAYS,
            "train_rows": len(fit_rows),
            "train_frauds": int(fit_rows["is_fraud"].sum()),
            "test_rows": len(test_rows),
            "test_frauds": int(test_rows["is_fraud"].sum()),
        },
    )
    result = TrainingResult(served, card, test_rows, test_score, valid_rows, valid_score)
    result.selection = selection
    return result


def _with_recent(
    model: FittedModel, frame: pd.DataFrame, fitted: Period, recipe: Recipe, rounds: int
) -> FittedModel:
    """``model`` averaged with a model of the last ``recipe.recent_days`` of ``fitted``."""
    if not recipe.recent_days:
        return model
    recent = Period(fitted.end - timedelta(days=recipe.recent_days), recipe.recent_days)
    short = fit(select(frame, recent), None, model.feature_names, max_rounds=rounds)
    booster = average_boosters([model.booster, short.booster])
    return FittedModel(booster, model.feature_names, model.best_iteration, dict(model.history))


def train(
    preset_name: str = "demo",
    seed: int | None = None,
    progress: bool = True,
    save: bool = True,
    data: Path | None = None,
) -> TrainingResult:
    """Train and evaluate on ``data`` (a file) or on the simulated ``preset_name``.

    Saves to the BentoML store if ``save``. Raises :class:`DataError` for a bad file and
    ValueError when the data is too short for the periods.
    """
    if data is not None:
        frame, source = load_transactions(data)
        periods = periods_for(*data_days(frame))
        labels = {"data": "file", "data_sha256": (source.sha256 or "")[:63]}
        max_rounds = MAX_ROUNDS
    else:
        config = preset(preset_name, seed)
        frame = simulate_with_aggregates(config, progress=progress)
        source = simulated_source(frame, config, preset_name)
        periods = default_periods(config)
        labels = {"preset": preset_name}
        max_rounds = MAX_ROUNDS_BY_PRESET.get(preset_name, MAX_ROUNDS)
    with tqdm(total=1, desc="train", unit="model", disable=not progress) as bar:
        result = evaluate(frame, periods, source, max_rounds=max_rounds)
        bar.update()
    if save:
        result.tag = save_to_store(
            result.model.booster,
            result.card,
            labels={**labels, "code_version": result.card.code_version[:63]},
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
        "--data",
        type=Path,
        default=None,
        help="train on this labelled transactions file (Parquet or CSV) instead of simulating",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="also write the evaluation report (JSON, Markdown, PNG) here",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        result = train(args.preset, args.seed, data=args.data)
    except DataError as exc:
        print(f"fraud-train: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_DATA_ERROR) from None
    m = result.card.metrics
    print(
        f"trained in {time.perf_counter() - started:.1f}s: "
        f"AUC {m['auc_roc']:.3f}  AP {m['average_precision']:.3f}  "
        f"CP@100 {m['card_precision_at_100']:.3f}  threshold {result.card.threshold:.3f}"
    )
    if args.report_dir is not None:
        from training.report import write_report  # noqa: PLC0415 (matplotlib only when asked)

        what = f"{args.data.name}" if args.data is not None else f"{args.preset} preset"
        write_report(result, args.report_dir, title=f"Model evaluation ({what})")
        print(f"report -> {args.report_dir}")
    print(result.tag)  # last line: the tag (scripts and tests read it)


if __name__ == "__main__":
    main()
