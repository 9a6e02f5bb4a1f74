"""Validation-week study (never the test week): pseudo-test = 2018-07-25..31."""
import json, sys, time
from datetime import date, timedelta
import numpy as np, xgboost as xgb
from scipy.stats import rankdata
from fraud_contract import MODEL_FEATURES
from training.evaluation import ranking_metrics
from training.model import fit, feature_matrix, XGB_PARAMS
from training.protocol import Period, clean_test, day_index, select
from training.simulation_pipeline import simulate_with_aggregates
from training.simulator import preset

T = date(2018, 7, 25)
def knowledge(p): return Period(p.start - timedelta(days=14), 7)
ptest = Period(T, 7)
valid = Period(T - timedelta(days=14), 7)
train_long = Period(date(2018, 5, 1), (valid.start - timedelta(days=7) - date(2018, 5, 1)).days)
refit_long = Period(date(2018, 5, 1), (valid.end - date(2018, 5, 1)).days)
seeds = [int(s) for s in sys.argv[1:]] or list(range(10))
out = {}
def rounds_fit(rows, n, params=None):
    return fit(rows, rows, MODEL_FEATURES, params=params, max_rounds=n)
for seed in seeds:
    t0 = time.time()
    frame = simulate_with_aggregates(preset("full", seed), progress=False)
    vrows = clean_test(frame, knowledge(valid), valid)
    trows = clean_test(frame, knowledge(ptest), ptest)
    y, d, c = trows["is_fraud"].to_numpy(), day_index(trows), trows["customer_id"].to_numpy()
    tr = select(frame, train_long)
    res, scores = {}, {}
    def rec(name, s):
        scores[name] = s; res[name] = ranking_metrics(y, s, d, c)
    base = fit(tr, vrows)
    rec("A_current", base.predict(trows))
    n = base.best_iteration + 1
    for name, per in [("B_refit", refit_long), ("B_refit_60d", Period(valid.end - timedelta(days=60), 60)),
                      ("B_refit_30d", Period(valid.end - timedelta(days=30), 30))]:
        m = rounds_fit(select(frame, per), n)
        rec(name, m.predict(trows))
    m7 = rounds_fit(select(frame, valid), n)  # strict: the 7 days before the delay
    rec("C_7d", m7.predict(trows))
    for a in ("A_current", "B_refit"):
        rec(f"D_rank_{a}+7d", rankdata(scores[a]) + rankdata(scores["C_7d"]))
    for tag, params in [("E_depth4", {"max_depth": 4}), ("E_depth7", {"max_depth": 7}),
                        ("E_mcw5", {"min_child_weight": 5.0})]:
        m = fit(tr, vrows, params=params)
        rec(tag, m.predict(trows))
        res[tag]["best_iteration"] = m.best_iteration
    res["A_current"]["best_iteration"] = base.best_iteration
    out[seed] = res
    print(seed, round(time.time() - t0), {k: [round(v[m], 3) for m in ("auc_roc","average_precision","card_precision_at_100")] for k, v in res.items()}, flush=True)
json.dump(out, open(f"/tmp/m16/study_{'_'.join(map(str,seeds))}.json", "w"), indent=1)
