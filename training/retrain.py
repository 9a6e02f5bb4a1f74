"""``make retrain``: a challenger trained on what the service served, kept only if it is better.

1. export the decision ledger with its labels (:mod:`training.ledger_data`) to
   ``OUT/transactions.parquet``;
2. train a challenger on it with the project's protocol (``fraud-train --data``: periods laid out
   back from the data's last day, label delay respected; its test week is the latest labelled
   week of the ledger);
3. score the same test rows with the serving model (``FRAUD_MODEL_TAG``, else the store's latest
   ``fraud-model``): the champion;
4. save the challenger to the model store only if its average precision on that week is higher
   (average precision ranks the rare frauds, the quantity an alert queue lives on; AUC and CP@100
   are reported beside it); ``OUT/retrain.json`` and ``OUT/retrain.md`` say which and why.

The serving model is never changed in place: a saved challenger is the store's new latest
version, served after a restart or a rollout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.ledger_data import database_url, export_ledger
from training.transactions_file import EXIT_DATA_ERROR, DataError

#: Exit status when the database cannot be reached (``EX_UNAVAILABLE`` of sysexits.h).
EXIT_UNAVAILABLE = 69
#: The metric that decides; the others are reported.
DECIDING_METRIC = "average_precision"


@dataclass
class RetrainReport:
    """What a retraining run compared and decided."""

    decision: str  # "saved" or "kept"
    reason: str
    challenger_tag: str | None
    champion_tag: str | None
    test_period: dict[str, Any]
    test_rows: int
    test_frauds: int
    challenger: dict[str, float]
    champion: dict[str, float] | None
    ledger: dict[str, Any]


def serving_tag() -> str | None:
    """The model the service serves: ``FRAUD_MODEL_TAG``, else the newest in the store."""
    from training.store import latest_model  # noqa: PLC0415 (imports BentoML)

    return os.environ.get("FRAUD_MODEL_TAG") or latest_model()


def champion_scores(tag: str, test: Any) -> np.ndarray:
    """The stored model ``tag``'s probabilities for the test rows (its own feature list)."""
    import bentoml  # noqa: PLC0415

    from fraud_contract.artifact import load_card  # noqa: PLC0415
    from training.model import FittedModel  # noqa: PLC0415

    stored = bentoml.models.get(tag)
    card = load_card(stored.info.metadata)
    booster = bentoml.xgboost.load_model(stored)
    return FittedModel(booster, tuple(card.feature_names), 0).predict(test)


def decide(challenger: dict[str, float], champion: dict[str, float] | None) -> tuple[bool, str]:
    """Whether to save the challenger, and the sentence saying why."""
    new = challenger[DECIDING_METRIC]
    if champion is None:
        return True, "no serving model to compare with: the challenger is the first model"
    old = champion[DECIDING_METRIC]
    if new > old:
        return True, f"challenger's {DECIDING_METRIC} {new:.4f} > serving model's {old:.4f}"
    return False, f"challenger's {DECIDING_METRIC} {new:.4f} <= serving model's {old:.4f}"


def retrain(url: str, out_dir: Path) -> RetrainReport:
    """Export, train, compare and (if better) save; write the report into ``out_dir``."""
    from training.evaluation import ranking_metrics  # noqa: PLC0415
    from training.protocol import day_index  # noqa: PLC0415
    from training.store import save as save_to_store  # noqa: PLC0415
    from training.train import train  # noqa: PLC0415

    exported = export_ledger(url, out_dir / "transactions.parquet")
    champion_tag = serving_tag()
    result = train(data=exported.path, save=False, progress=False)
    test = result.test
    labels, days, cards = (
        test["is_fraud"].to_numpy(),
        day_index(test),
        test["customer_id"].to_numpy(),
    )
    challenger = ranking_metrics(labels, result.test_score, days, cards)
    champion = None
    if champion_tag is not None:
        champion = ranking_metrics(labels, champion_scores(champion_tag, test), days, cards)
    better, reason = decide(challenger, champion)
    saved = None
    if better:
        saved = save_to_store(
            result.model.booster,
            result.card,
            labels={"data": "ledger", "code_version": result.card.code_version[:63]},
        )
    report = RetrainReport(
        decision="saved" if better else "kept",
        reason=reason,
        challenger_tag=saved,
        champion_tag=champion_tag,
        test_period=result.card.dataset["periods"]["test"],
        test_rows=len(test),
        test_frauds=int(labels.sum()),
        challenger=challenger,
        champion=champion,
        ledger={
            "rows": exported.rows,
            "frauds": exported.frauds,
            "labelled": exported.labelled,
            "cutoff": exported.cutoff.isoformat() if exported.cutoff else None,
        },
    )
    write_report(report, out_dir)
    return report


def write_report(report: RetrainReport, out_dir: Path) -> None:
    """``retrain.json`` and a short ``retrain.md`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "retrain.json").write_text(json.dumps(asdict(report), indent=1) + "\n")
    rows = [
        f"| {name} | {report.challenger[name]:.4f} | "
        + (f"{report.champion[name]:.4f}" if report.champion else "-")
        + " |"
        for name in report.challenger
    ]
    period = report.test_period
    lines = [
        "# Retraining from the decision ledger",
        "",
        f"**{report.decision}**: {report.reason}.",
        "",
        f"Ledger: {report.ledger['rows']} transactions up to {report.ledger['cutoff']} "
        f"({report.ledger['frauds']} fraud, {report.ledger['labelled']} labelled). "
        f"Test week {period}: {report.test_rows} transactions, {report.test_frauds} fraud.",
        "",
        f"| metric | challenger ({report.challenger_tag or 'not saved'}) | "
        f"serving ({report.champion_tag or 'none'}) |",
        "|---|---:|---:|",
        *rows,
        "",
    ]
    (out_dir / "retrain.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out-dir", type=Path, default=Path("data/ledger"))
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL URI (default: FRAUD_DATABASE_URL)"
    )
    args = parser.parse_args(argv)
    import psycopg  # noqa: PLC0415

    try:
        report = retrain(database_url(args.database_url), args.out_dir)
    except DataError as exc:
        print(f"retrain: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_DATA_ERROR) from None
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"retrain: cannot read the ledger: {first}", file=sys.stderr)
        raise SystemExit(EXIT_UNAVAILABLE) from None
    print(f"retrain: {report.decision}: {report.reason} (report in {args.out_dir}/retrain.md)")
    print(report.challenger_tag or report.champion_tag or "")


if __name__ == "__main__":
    main()
