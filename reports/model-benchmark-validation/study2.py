"""Validation-week study v2 (never the test week): pseudo-test = 2018-07-25..31."""
import json, sys, time
from datetime import date, timedelta
import numpy as np
from scipy.stats import rankdata
from scipy.special import logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from fraud_contract import MODEL_FEATURES
from training.evaluation import ranking_metrics
from training.model import fit
from training.protocol import Period, clean_test, day_index, select
from training.simulation_pipeline import simulate_with_aggregates
from training.simulator import preset

T = date(2018, 7, 25)
def knowledge(p): return Period(p.start - timedelta(days=14), 7)
ptest = Period(T, 7)
valid = Period(T - timedelta(days=14), 7)
train_long = Period(date(2018, 5, 1), (valid.start - timedelta(days=7) - date(2018, 5, 1)).days)
refit_long = Period(date(2018, 5, 1), (valid.end - date(2018, 5, 1)).days)
seeds = [int(s) for s in sys.argv[1:]]
out = {}
for seed in seeds:
    t0 = time.time()
    frame = simulate_with_aggregates(preset("full", seed), progress=False)
    vrows = clean_test(frame, knowledge(valid), valid)
    trows = clean_test(frame, knowledge(ptest), ptest)
    y, d, c = trows["is_fraud"].to_numpy(), day_index(trows), trows["customer_id"].to_numpy()
    res, scores = {}, {}
    def rec(name, s):
        scores[name] = s; res[name] = {**ranking_metrics(y, s, d, c), "brier": float(brier_score_loss(y, s)) if s.max() <= 1 else float("nan")}
    base = fit(select(frame, train_long), vrows)
    rec("A_current", base.predict(trows))
    n = base.best_iteration + 1
    vs = base.predict(vrows)
    platt = LogisticRegression(C=1e6).fit(logit(np.clip(vs, 1e-7, 1 - 1e-7))[:, None], vrows["is_fraud"])
    cal = platt.predict_proba(logit(np.clip(scores["A_current"], 1e-7, 1 - 1e-7))[:, None])[:, 1]
    res["A_current"]["brier_platt"] = float(brier_score_loss(y, cal))
    res["A_current"]["platt"] = [float(platt.coef_[0][0]), float(platt.intercept_[0])]
    res["A_current"]["valid_brier"] = float(brier_score_loss(vrows["is_fraud"], vs))
    m = fit(select(frame, refit_long), vrows, max_rounds=n)  # eval set unused for stopping
    rec("B_refit", m.predict(trows))
    m = fit(select(frame, Period(valid.end - timedelta(days=42), 42)), vrows, max_rounds=n)
    rec("B_refit_42d", m.predict(trows))
    rt = select(frame, refit_long)
    age = (np.datetime64(valid.end) - rt["timestamp"].to_numpy().astype("datetime64[D]")).astype(float)
    for hl in (14, 28):
        m = fit(rt, vrows, max_rounds=n, weight=0.5 ** (age / hl))
        rec(f"W_refit_hl{hl}", m.predict(trows))
    m7 = fit(select(frame, valid), vrows, max_rounds=n)
    rec("C_7d", m7.predict(trows))
    rec("D_rank_B+7d", rankdata(scores["B_refit"]) + rankdata(scores["C_7d"]))
    rec("D_mean_B+7d", (scores["B_refit"] + scores["C_7d"]) / 2)
    res["A_current"]["best_iteration"] = base.best_iteration
    out[seed] = res
    print(seed, round(time.time() - t0), {k: [round(v[m], 3) for m in ("auc_roc","average_precision","card_precision_at_100")] for k, v in res.items()}, {k: round(v["brier"], 5) for k, v in res.items()}, round(res["A_current"]["brier_platt"], 5), flush=True)
    json.dump(out, open(f"/tmp/m16/study2_{'_'.join(map(str,seeds))}.json", "w"), indent=1)
