"""Vectorised, seeded transaction simulator (the handbook's generator, implemented independently).

The logic follows ``/work/shared/reference/fraud-handbook.md`` step by step:

* customers: location ``U(0, 100)^2``, ``mean_amount ~ U(5, 100)``, ``std = mean / 2``,
  ``mean_nb_tx_per_day ~ U(0, 4)``; terminals: location ``U(0, 100)^2``;
* a customer uses every terminal strictly closer than ``radius``; no terminal, no transaction;
* each day each customer makes ``Poisson(mean_nb_tx_per_day)`` transactions at second
  ``round(Normal(43200, 20000))`` (draws outside ``(0, 86400)`` are dropped), amount
  ``Normal(mean, std)`` (negative draws replaced by ``U(0, 2 * mean)``) rounded to cents, at a
  terminal picked uniformly among the customer's;
* fraud scenarios in order, a later one overwriting the label: (1) amount > 220; (2) two
  terminals a day compromised for that day and the next 27; (3) three customers a day
  compromised for that day and the next 13: ``floor(n / 3)`` of their ``n`` transactions in
  that period get their amount multiplied by 5 and become fraud.

Everything except the day loop of scenario 3 (183 small steps) is whole-array numpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Final

import numpy as np
import pandas as pd

SECONDS_PER_DAY: Final = 86_400
#: Scenario codes in the ``fraud_scenario`` column.
GENUINE: Final = 0
SCENARIO_AMOUNT: Final = 1
SCENARIO_TERMINAL: Final = 2
SCENARIO_CUSTOMER: Final = 3
SCENARIO_NAMES: Final[dict[int, str]] = {
    GENUINE: "genuine",
    SCENARIO_AMOUNT: "amount_over_220",
    SCENARIO_TERMINAL: "compromised_terminal",
    SCENARIO_CUSTOMER: "compromised_card",
}

#: Raw columns of a simulated transaction table, in output order.
RAW_COLUMNS: Final[tuple[str, ...]] = (
    "transaction_id",
    "timestamp",
    "customer_id",
    "terminal_id",
    "amount",
    "is_fraud",
    "fraud_scenario",
)


@dataclass(frozen=True)
class SimulatorConfig:
    """Size and randomness of one simulation (the handbook's parameters are the defaults)."""

    n_customers: int = 5_000
    n_terminals: int = 10_000
    n_days: int = 183
    start_date: str = "2018-04-01"
    radius: float = 5.0
    seed: int = 0
    fraud_amount_threshold: float = 220.0
    compromised_terminals_per_day: int = 2
    terminal_compromise_days: int = 28
    compromised_customers_per_day: int = 3
    customer_compromise_days: int = 14
    customer_fraud_amount_factor: float = 5.0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for model cards and reports)."""
        return asdict(self)


#: Named sizes. ``full`` is the handbook's; ``demo`` trains in well under a minute; ``test`` is
#: for unit tests (seconds). The small presets keep the handbook's customer/terminal density
#: (about 80 terminals per customer, 40 customers per terminal) and scale the daily number of
#: compromised terminals/cards down (whole numbers), so their fraud mix stays book-like.
PRESETS: Final[dict[str, SimulatorConfig]] = {
    "full": SimulatorConfig(),
    "demo": SimulatorConfig(
        n_customers=2_000,
        n_terminals=4_000,
        n_days=120,
        radius=5.0 * 1.58,
        compromised_terminals_per_day=1,
        compromised_customers_per_day=1,
    ),
    "test": SimulatorConfig(
        n_customers=300,
        n_terminals=600,
        n_days=75,
        radius=5.0 * 4.08,
        compromised_terminals_per_day=1,
        compromised_customers_per_day=1,
    ),
}


def preset(name: str, seed: int | None = None) -> SimulatorConfig:
    """The configuration of a named preset, optionally with another seed."""
    try:
        config = PRESETS[name]
    except KeyError:
        msg = f"unknown preset {name!r}; choose one of {sorted(PRESETS)}"
        raise ValueError(msg) from None
    if seed is None:
        return config
    return SimulatorConfig(**{**config.as_dict(), "seed": seed})


@dataclass(frozen=True)
class Profiles:
    """Customer and terminal profiles plus each customer's usable terminals (CSR layout)."""

    customer_xy: np.ndarray
    mean_amount: np.ndarray
    std_amount: np.ndarray
    mean_nb_tx_per_day: np.ndarray
    terminal_xy: np.ndarray
    terminal_ptr: np.ndarray  # customer c uses terminal_idx[terminal_ptr[c]:terminal_ptr[c+1]]
    terminal_idx: np.ndarray


def make_profiles(config: SimulatorConfig, rng: np.random.Generator) -> Profiles:
    """Draw customer and terminal profiles and the customer -> terminals neighbourhoods."""
    customer_xy = rng.uniform(0.0, 100.0, size=(config.n_customers, 2))
    mean_amount = rng.uniform(5.0, 100.0, size=config.n_customers)
    std_amount = mean_amount / 2.0
    mean_nb_tx_per_day = rng.uniform(0.0, 4.0, size=config.n_customers)
    terminal_xy = rng.uniform(0.0, 100.0, size=(config.n_terminals, 2))

    # Customer-by-terminal distances in blocks, so the full 5,000 x 10,000 matrix never
    # exists at once (400 MB as float64).
    counts = np.zeros(config.n_customers, dtype=np.int64)
    chunks: list[np.ndarray] = []
    block = max(1, 2_000_000 // max(config.n_terminals, 1))
    r2 = config.radius**2
    for start in range(0, config.n_customers, block):
        diff = customer_xy[start : start + block, None, :] - terminal_xy[None, :, :]
        near = np.einsum("ijk,ijk->ij", diff, diff) < r2
        _, cols = np.nonzero(near)  # row-major: grouped by customer, terminals ascending
        counts[start : start + block] = near.sum(axis=1)
        chunks.append(cols.astype(np.int32))
    terminal_ptr = np.concatenate([[0], np.cumsum(counts)])
    terminal_idx = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int32)
    return Profiles(
        customer_xy,
        mean_amount,
        std_amount,
        mean_nb_tx_per_day,
        terminal_xy,
        terminal_ptr,
        terminal_idx,
    )


def _genuine_transactions(
    config: SimulatorConfig, profiles: Profiles, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Daily Poisson transactions of every customer with at least one terminal."""
    n_available = np.diff(profiles.terminal_ptr)
    rate = np.where(n_available > 0, profiles.mean_nb_tx_per_day, 0.0)
    per_day = rng.poisson(rate[None, :], size=(config.n_days, config.n_customers))
    day = np.repeat(np.arange(config.n_days), per_day.sum(axis=1))
    customer = np.nonzero(per_day)[1].repeat(per_day[per_day > 0])
    n = customer.shape[0]

    second = np.rint(rng.normal(43_200.0, 20_000.0, size=n)).astype(np.int64)
    mean = profiles.mean_amount[customer]
    amount = rng.normal(mean, profiles.std_amount[customer])
    negative = amount < 0
    amount[negative] = rng.uniform(0.0, 2.0 * mean[negative])
    amount = np.round(amount, 2)
    pick = np.floor(rng.random(n) * n_available[customer]).astype(np.int64)
    terminal = profiles.terminal_idx[profiles.terminal_ptr[customer] + pick]

    keep = (second > 0) & (second < SECONDS_PER_DAY)
    return {
        "day": day[keep],
        "second": second[keep],
        "customer": customer[keep],
        "terminal": terminal[keep].astype(np.int64),
        "amount": amount[keep],
    }


def _apply_frauds(
    config: SimulatorConfig, tx: dict[str, np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Label the three scenarios in order; scenario 3 also multiplies amounts (in place)."""
    n = tx["amount"].shape[0]
    scenario = np.zeros(n, dtype=np.int8)
    scenario[tx["amount"] > config.fraud_amount_threshold] = SCENARIO_AMOUNT

    # Scenario 2: a (day, terminal) grid of "compromised on this day or in the 27 before".
    started = np.zeros((config.n_days, config.n_terminals), dtype=np.int32)
    for d in range(config.n_days):
        chosen = rng.choice(
            config.n_terminals, size=config.compromised_terminals_per_day, replace=False
        )
        started[d, chosen] = 1
    cumulative = np.cumsum(started, axis=0)
    lagged = np.zeros_like(cumulative)
    span = config.terminal_compromise_days
    lagged[span:] = cumulative[:-span]
    active = (cumulative - lagged) > 0
    scenario[active[tx["day"], tx["terminal"]]] = SCENARIO_TERMINAL

    # Scenario 3: transactions are grouped by customer (then time) so that one customer's
    # transactions in a day range are one slice found by binary search.
    order = np.lexsort((tx["second"], tx["day"], tx["customer"]))
    cust_sorted = tx["customer"][order]
    day_sorted = tx["day"][order]
    bounds = np.searchsorted(cust_sorted, np.arange(config.n_customers + 1))
    for d in range(config.n_days):
        chosen = rng.choice(
            config.n_customers, size=config.compromised_customers_per_day, replace=False
        )
        candidates: list[np.ndarray] = []
        for c in chosen:
            lo, hi = bounds[c], bounds[c + 1]
            days = day_sorted[lo:hi]
            first = lo + np.searchsorted(days, d, side="left")
            last = lo + np.searchsorted(days, d + config.customer_compromise_days, side="left")
            candidates.append(order[first:last])
        pool = np.concatenate(candidates)
        k = pool.shape[0] // 3
        if k == 0:
            continue
        hit = rng.choice(pool, size=k, replace=False)
        tx["amount"][hit] = np.round(tx["amount"][hit] * config.customer_fraud_amount_factor, 2)
        scenario[hit] = SCENARIO_CUSTOMER
    return (scenario > 0).astype(np.int8), scenario


def simulate(config: SimulatorConfig) -> pd.DataFrame:
    """Simulate a transaction table, sorted by time, with the :data:`RAW_COLUMNS`.

    Deterministic for a given ``config`` (including its seed).
    """
    rng = np.random.default_rng(config.seed)
    profiles = make_profiles(config, rng)
    tx = _genuine_transactions(config, profiles, rng)
    is_fraud, scenario = _apply_frauds(config, tx, rng)

    seconds = tx["day"] * SECONDS_PER_DAY + tx["second"]
    order = np.lexsort((tx["customer"], seconds))
    start = np.datetime64(date.fromisoformat(config.start_date), "s")
    n = order.shape[0]
    frame = pd.DataFrame(
        {
            "transaction_id": _labels("TX", np.arange(n), 9),
            "timestamp": (start + seconds[order].astype("timedelta64[s]")).astype("datetime64[us]"),
            "customer_id": _labels("C", tx["customer"][order], 5),
            "terminal_id": _labels("T", tx["terminal"][order], 6),
            "amount": tx["amount"][order],
            "is_fraud": is_fraud[order],
            "fraud_scenario": scenario[order],
        }
    )
    return frame


def _labels(prefix: str, numbers: np.ndarray, width: int) -> pd.Series:
    """Zero-padded string identifiers (``C00042``) built without a Python loop per row."""
    as_text = pd.Series(numbers.astype(np.int64)).astype(str).str.zfill(width)
    return (prefix + as_text).astype("string[pyarrow]")


def entity_index(ids: pd.Series) -> np.ndarray:
    """Integer codes of string identifiers (``C00042`` -> 42-like dense codes), for grouping."""
    codes, _ = pd.factorize(ids, sort=True)
    return codes.astype(np.int64)
