"""Bulk-load past transactions into the history store without scoring them.

The card's per-row flags (amount high / plain for the card's reference at the row's time)
come from the offline aggregates (:mod:`training.aggregates`, the same window definitions),
computed vectorised over the frame; the records are packed with numpy and merged into the
store by a server-side script per card / terminal, many per pipeline. Run it from the source
tree (``python -m service.history.backfill FILE URL``): it needs the training package.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

import numpy as np

from service.history.codec import CARD as _CARD
from service.history.codec import TERMINAL as _TERMINAL
from service.history.codec import transaction_tag
from service.history.model import MAX_SECONDS, BackfillReport, InvalidHistoryRowError
from service.history.store import HistoryStore

if TYPE_CHECKING:
    import pandas as pd

_CARD_DTYPE = np.dtype([("t", "<u4"), ("a", "<f8"), ("b", "<u2")])
_TERMINAL_DTYPE = np.dtype([("t", "<u4"), ("b", "<u2")])


def load_frame(store: HistoryStore, frame: pd.DataFrame, chunk_entities: int) -> BackfillReport:
    """Pack ``frame`` into per-card and per-terminal records and merge them into ``store``."""
    import pandas as pd  # noqa: PLC0415

    from fraud_contract.windows import is_high, is_plain  # noqa: PLC0415
    from training.aggregates import customer_reference_aggregates  # noqa: PLC0415
    from training.simulator import entity_index  # noqa: PLC0415

    started = time.perf_counter()
    n = len(frame)
    if n == 0:
        return BackfillReport(0, 0, 0, 0.0)
    seconds = pd.to_datetime(frame["timestamp"]).to_numpy(dtype="datetime64[s]").astype(np.int64)
    if seconds.min() < 0 or seconds.max() > MAX_SECONDS:
        raise InvalidHistoryRowError("timestamp", "must lie between 1970 and 2106 for the history")
    amount = frame["amount"].to_numpy(dtype=np.float64)
    if not np.isfinite(amount).all() or (amount < 0).any():
        raise InvalidHistoryRowError("amount", "must be finite and >= 0")
    customers = frame["customer_id"].astype(str)
    terminals = frame["terminal_id"].astype(str)
    card_code = entity_index(customers)
    reference = customer_reference_aggregates(card_code, seconds, amount)["customer_avg_amount_ref"]
    if "transaction_id" in frame.columns:
        tags = np.fromiter(
            (transaction_tag(t) if isinstance(t, str) else 0 for t in frame["transaction_id"]),
            dtype=np.uint16,
            count=n,
        )
    else:
        tags = np.zeros(n, dtype=np.uint16)
    plain = is_plain(amount, reference)
    card_bits = is_high(amount, reference).astype(np.uint16) + 2 * plain + 8 * tags
    if "is_fraud" in frame.columns:
        raw = pd.to_numeric(frame["is_fraud"], errors="coerce").to_numpy(dtype=np.float64)
        labelled = ~np.isnan(raw)
        fraud = labelled & (raw == 1)
    else:
        labelled = fraud = np.zeros(n, dtype=bool)
    terminal_bits = labelled.astype(np.uint16) + 2 * fraud + 4 * (fraud & plain) + 8 * tags

    cards = np.zeros(n, dtype=_CARD_DTYPE)
    cards["t"], cards["a"], cards["b"] = seconds, amount, card_bits
    terms = np.zeros(n, dtype=_TERMINAL_DTYPE)
    terms["t"], terms["b"] = seconds, terminal_bits
    n_cards = _load(
        store, _CARD, ids=customers, seconds=seconds, records=cards, chunk=chunk_entities
    )
    n_terminals = _load(
        store, _TERMINAL, ids=terminals, seconds=seconds, records=terms, chunk=chunk_entities
    )
    return BackfillReport(n, n_cards, n_terminals, time.perf_counter() - started)


def _load(
    store: HistoryStore,
    kind: int,
    *,
    ids: pd.Series,
    seconds: np.ndarray,
    records: np.ndarray,
    chunk: int,
) -> int:
    """Sort by (entity, time), cut per entity, merge ``chunk_entities`` entities per pipeline."""
    codes, uniques = ids.factorize(sort=False)
    order = np.lexsort((seconds, codes))  # stable: frame order among equal times
    codes_sorted = codes[order]
    data = records[order].tobytes()
    width = records.dtype.itemsize
    bounds = np.flatnonzero(np.diff(codes_sorted)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(order)]])
    keys_of = store.card_keys if kind == _CARD else store.terminal_keys
    batch: list[tuple[str, int, bytes]] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        entity = str(uniques[codes_sorted[start]])
        batch.append((keys_of(entity)[0], kind, data[start * width : end * width]))
        if len(batch) >= chunk:
            store._merge(batch)
            batch = []
    if batch:
        store._merge(batch)
    return len(starts)


def main(argv: list[str] | None = None) -> None:
    """CLI: load a Parquet/CSV file of transactions (with ``is_fraud`` if known) into a store."""
    import pandas as pd  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "file", help="Parquet or CSV with timestamp, customer_id, terminal_id, amount"
    )
    parser.add_argument("url", help="valkey://host:port/0 (or redis://)")
    parser.add_argument("--cluster", action="store_true", help="the URL is a cluster node")
    parser.add_argument("--namespace", default="fh")
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.file) if args.file.endswith(".csv") else pd.read_parquet(args.file)
    store = HistoryStore.from_url(
        args.url, cluster=args.cluster, namespace=args.namespace, timeout=5.0
    )
    try:
        report = store.backfill(frame)
    finally:
        store.close()
    print(
        f"loaded {report.rows} rows ({report.cards} cards, {report.terminals} terminals) "
        f"in {report.seconds:.2f} s: {report.rows_per_second:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()
