"""Validation weeks only: the three recipes through the real ``training.train.evaluate``.

Pseudo-test weeks 2018-07-11..17 and 2018-07-25..31 (before the benchmark's test week), each
with the periods the benchmark would use for it. Usage: study3.py SEED [SEED ...].
"""

import json
import sys
from datetime import date

from training.benchmark import benchmark_periods
from training.simulation_pipeline import simulate_with_aggregates
from training.simulator import preset
from training.train import Recipe, evaluate, simulated_source

RECIPES = {
    "previous_single_model": Recipe(refit=False, recent_days=0),
    "average_with_7d_no_refit": Recipe(refit=False, recent_days=7),
    "served_refit_and_7d": Recipe(),
}
WEEKS = (date(2018, 7, 11), date(2018, 7, 25))
out: dict = {}
for seed in map(int, sys.argv[1:]):
    config = preset("full", seed)
    frame = simulate_with_aggregates(config, progress=False)
    source = simulated_source(frame, config, "full")
    for week in WEEKS:
        periods = benchmark_periods(date(2018, 4, 1), week).project
        for name, recipe in RECIPES.items():
            m = evaluate(frame, periods, source, recipe=recipe).card.metrics
            row = [round(m[k], 4) for k in ("auc_roc", "average_precision", "card_precision_at_100")]
            out.setdefault(str(seed), {}).setdefault(week.isoformat(), {})[name] = row
            print(seed, week, name, row, flush=True)
    json.dump(out, open("reports/model-benchmark-validation/study3.json", "w"), indent=1)
