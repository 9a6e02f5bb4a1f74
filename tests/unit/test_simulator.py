"""The simulator follows the handbook (determinism, scenario rules, book statistics) and the
aggregate pipeline matches a plain time-indexed rolling-window reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud_contract import AGGREGATE_FIELDS, Transaction
from training.aggregates import PLAIN_AMOUNT_FACTOR, add_aggregates, terminal_fraud_run
from training.simulator import (
    PRESETS,
    RAW_COLUMNS,
    SCENARIO_AMOUNT,
    SCENARIO_CUSTOMER,
    SCENARIO_TERMINAL,
    make_profiles,
    preset,
    simulate,
)


@pytest.fixture(scope="module")
def tiny() -> pd.DataFrame:
    return simulate(preset("test"))


@pytest.fixture(scope="module")
def full() -> pd.DataFrame:
    """The book-size simulation (about 1.8M rows, seconds)."""
    return simulate(preset("full"))


def test_same_seed_same_table_other_seed_other_table(tiny: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(tiny, simulate(preset("test")))
    other = simulate(preset("test", seed=1))
    assert len(other) != len(tiny) or not np.array_equal(other["amount"], tiny["amount"])


def test_columns_identifiers_and_order(tiny: pd.DataFrame) -> None:
    assert tuple(tiny.columns) == RAW_COLUMNS
    assert tiny["transaction_id"].is_unique
    assert tiny["customer_id"].str.fullmatch(r"C\d{5}").all()
    assert tiny["terminal_id"].str.fullmatch(r"T\d{6}").all()
    assert tiny["timestamp"].is_monotonic_increasing
    second = (tiny["timestamp"] - tiny["timestamp"].dt.normalize()).dt.total_seconds()
    assert second.gt(0).all()  # draws outside (0, 86400) are dropped
    assert (tiny["amount"] >= 0).all()
    assert np.allclose(tiny["amount"], tiny["amount"].round(2))


def test_label_and_scenario_rules(tiny: pd.DataFrame) -> None:
    assert ((tiny["is_fraud"] == 1) == (tiny["fraud_scenario"] > 0)).all()
    # Scenario 1 is applied first: every amount above 220 is fraud unless a later
    # scenario relabelled it (scenario 3 multiplies amounts, so it also produces > 220).
    big = tiny[tiny["amount"] > 220]
    assert (big["is_fraud"] == 1).all()
    assert (tiny.loc[tiny["fraud_scenario"] == SCENARIO_AMOUNT, "amount"] > 220).all()
    # Scenario 2: on a compromised terminal, every transaction of that day is fraud.
    day = tiny["timestamp"].dt.floor("D")
    sc2 = tiny[tiny["fraud_scenario"] == SCENARIO_TERMINAL]
    keys = set(zip(sc2["terminal_id"], day[sc2.index], strict=True))
    same = tiny[[k in keys for k in zip(tiny["terminal_id"], day, strict=True)]]
    assert (same["is_fraud"] == 1).all()
    assert (tiny["fraud_scenario"] == SCENARIO_CUSTOMER).sum() > 0


def test_customers_use_only_terminals_within_the_radius() -> None:
    config = preset("test")
    profiles = make_profiles(config, np.random.default_rng(config.seed))
    for c in range(0, config.n_customers, 37):
        used = profiles.terminal_idx[profiles.terminal_ptr[c] : profiles.terminal_ptr[c + 1]]
        dist = np.linalg.norm(profiles.terminal_xy - profiles.customer_xy[c], axis=1)
        assert set(used.tolist()) == set(np.nonzero(dist < config.radius)[0].tolist())


def test_book_size_statistics_match_the_handbook(full: pd.DataFrame) -> None:
    config = PRESETS["full"]
    # Book: 1,754,155 transactions (expected 5,000 x 2/day x 183 x P(second in range) = 1.77M;
    # the spread of the mean Poisson rate over 5,000 cards is about 1%).
    assert abs(len(full) / 1_754_155 - 1) < 0.04
    assert 0.0070 < full["is_fraud"].mean() < 0.0100  # book: 0.84%
    assert full["timestamp"].min() >= pd.Timestamp(config.start_date)
    days = full["timestamp"].dt.floor("D")
    assert days.nunique() == config.n_days
    per_day = full.groupby(days).size()
    assert 9_000 < per_day.mean() < 10_300  # book: about 10,000 a day
    frauds = full[full["is_fraud"] == 1]
    by_day = frauds.groupby(frauds["timestamp"].dt.floor("D"))
    assert 60 < by_day.size().mean() < 100  # book: about 85 frauds a day
    assert 55 < by_day["customer_id"].nunique().mean() < 95  # book: about 80 cards a day
    first_month = by_day.size()[:30].mean()
    assert first_month < by_day.size()[60:].mean()  # fewer frauds in the first month
    assert set(full["fraud_scenario"].unique()) == {0, 1, 2, 3}


def _reference_customer(frame: pd.DataFrame, days: int) -> pd.DataFrame:
    """Time-indexed rolling windows per card, the textbook way (slow, for checking)."""
    out = []
    for _, group in frame.groupby("customer_id", sort=False):
        rolled = group.set_index("timestamp")["amount"].rolling(f"{days}D")
        out.append(
            pd.DataFrame(
                {
                    "count": rolled.count().to_numpy(),
                    "mean": rolled.mean().to_numpy(),
                    "std": rolled.std(ddof=0).to_numpy(),
                },
                index=group.index,
            )
        )
    return pd.concat(out).loc[frame.index]


def _reference_terminal(frame: pd.DataFrame, days: int, delay: int = 7) -> pd.DataFrame:
    out = []
    for _, group in frame.groupby("terminal_id", sort=False):
        labels = group.set_index("timestamp")["is_fraud"].astype(float)
        recent = labels.rolling(f"{delay}D")
        longer = labels.rolling(f"{delay + days}D")
        count = longer.count().to_numpy() - recent.count().to_numpy()
        frauds = longer.sum().to_numpy() - recent.sum().to_numpy()
        risk = np.where(count > 0, frauds / np.maximum(count, 1), 0.0)
        out.append(pd.DataFrame({"count": count, "risk": risk}, index=group.index))
    return pd.concat(out).loc[frame.index]


def test_aggregates_match_a_rolling_window_reference(tiny: pd.DataFrame) -> None:
    agg = add_aggregates(tiny)
    # Windows depend only on the entity's own rows: check a sample of cards and terminals.
    cards = agg[
        agg["customer_id"].isin(agg["customer_id"].drop_duplicates().sample(40, random_state=1))
    ]
    terminals = agg[
        agg["terminal_id"].isin(agg["terminal_id"].drop_duplicates().sample(60, random_state=1))
    ]
    for days in (1, 7, 30):
        ref = _reference_customer(cards, days)
        np.testing.assert_array_equal(cards[f"customer_nb_tx_{days}d"], ref["count"])
        np.testing.assert_allclose(cards[f"customer_avg_amount_{days}d"], ref["mean"], rtol=1e-9)
        term = _reference_terminal(terminals, days)
        np.testing.assert_array_equal(terminals[f"terminal_nb_tx_{days}d"], term["count"])
        np.testing.assert_allclose(terminals[f"terminal_risk_{days}d"], term["risk"], atol=1e-12)
    ref = _reference_customer(cards, 30)
    np.testing.assert_allclose(cards["customer_std_amount_30d"], ref["std"], rtol=1e-6, atol=1e-6)


def test_aggregated_rows_are_valid_contract_records(tiny: pd.DataFrame) -> None:
    agg = add_aggregates(tiny)
    assert agg[list(AGGREGATE_FIELDS)].notna().all().all()
    for row in agg.sample(50, random_state=0).to_dict("records"):
        body = {k: v for k, v in row.items() if k not in ("is_fraud", "fraud_scenario")}
        body["timestamp"] = body["timestamp"].isoformat()
        Transaction.model_validate(body)


def test_reference_amount_and_high_amount_counts_match_a_brute_force_reference(
    tiny: pd.DataFrame,
) -> None:
    agg = add_aggregates(tiny)
    sample = agg["customer_id"].drop_duplicates().sample(30, random_state=2)
    day = np.timedelta64(1, "D")
    for card in sample:
        rows = agg[agg["customer_id"] == card].sort_values("timestamp", kind="stable")
        times = rows["timestamp"].to_numpy()
        amounts = rows["amount"].to_numpy()
        expected_ref = np.empty(len(rows))
        for i, t in enumerate(times):
            lagged = amounts[(times > t - 44 * day) & (times <= t - 14 * day)]
            last30 = amounts[: i + 1][times[: i + 1] > t - 30 * day]
            expected_ref[i] = lagged.mean() if lagged.size else last30.mean()
        np.testing.assert_allclose(rows["customer_avg_amount_ref"], expected_ref, rtol=1e-9)
        high = amounts > 3.0 * expected_ref
        for days in (1, 7):
            expected = [
                int(high[: i + 1][times[: i + 1] > t - days * day].sum())
                for i, t in enumerate(times)
            ]
            np.testing.assert_array_equal(rows[f"customer_nb_high_amount_{days}d"], expected)


def test_terminal_fraud_run_matches_a_brute_force_reference(tiny: pd.DataFrame) -> None:
    agg = add_aggregates(tiny)
    # Compromised terminals (long runs) plus random ones (isolated frauds, no run at all).
    compromised = agg.loc[agg["fraud_scenario"] == SCENARIO_TERMINAL, "terminal_id"].unique()
    others = agg["terminal_id"].drop_duplicates().sample(40, random_state=3)
    delay = np.timedelta64(7, "D")
    day_s = 86_400.0
    checked = {"run": 0, "not_plain": 0}
    for terminal in {*compromised[:15], *others}:
        rows = agg[agg["terminal_id"] == terminal].sort_values("timestamp", kind="stable")
        times = rows["timestamp"].to_numpy()
        fraud = rows["is_fraud"].to_numpy() == 1
        plain = fraud & (
            rows["amount"].to_numpy()
            <= PLAIN_AMOUNT_FACTOR * rows["customer_avg_amount_ref"].to_numpy()
        )
        expected = np.zeros((len(rows), 3))
        for i, t in enumerate(times):
            labelled = np.nonzero(times <= t - delay)[0]
            j = len(labelled) - 1
            while j >= 0 and fraud[labelled[j]]:  # walk back over the trailing frauds
                j -= 1
            run = labelled[j + 1 :]
            if run.size:
                age = (t - times[run[0]]) / np.timedelta64(1, "s") / day_s
                expected[i] = (run.size, plain[run].sum(), age)
                checked["run"] += 1
                checked["not_plain"] += int(plain[run].sum() < run.size)
        np.testing.assert_array_equal(rows["terminal_fraud_run_nb"], expected[:, 0])
        np.testing.assert_array_equal(rows["terminal_fraud_run_nb_plain"], expected[:, 1])
        np.testing.assert_allclose(rows["terminal_fraud_run_days"], expected[:, 2], rtol=1e-12)
    assert checked["run"] > 100 and checked["not_plain"] > 0  # both branches were exercised


def test_terminal_fraud_run_on_hand_made_rows() -> None:
    day = 86_400
    # Terminal 0 ends on a fraud. Terminal 1's history starts with two frauds (its run must
    # not reach back into terminal 0), then a genuine row, then a fraud of an unusual amount.
    terminal = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    seconds = np.array([0, 1, 2, 3, 10, 11, 20, 30]) * day
    is_fraud = np.array([0, 1, 1, 1, 0, 1, 0, 0])
    plain = np.array([0, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    run = terminal_fraud_run(terminal, seconds, is_fraud, plain)
    # Row at day 10 sees days <= 3: the two frauds; day 11 sees the same; day 20 sees the
    # genuine row of day 10 and the fraud of day 11 (not plain); day 30 ends on a genuine.
    assert run["terminal_fraud_run_nb"].tolist() == [0, 0, 0, 0, 2, 2, 1, 0]
    assert run["terminal_fraud_run_nb_plain"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    assert run["terminal_fraud_run_days"].tolist() == [0, 0, 0, 0, 8, 9, 9, 0]
