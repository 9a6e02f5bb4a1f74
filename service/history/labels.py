"""Fraud labels (chargebacks) and confirmed genuines into the terminals' histories.

A label finds its record by terminal, event time and (when it has a transaction id) the
record's 13-bit tag, and its bits are set to the label (labelled, fraud, plain): setting
them again is a no-op, so a label applied twice changes nothing, and the script runs
atomically on the terminal's key, so it never loses a concurrent update. A fraud's "plain
amount" flag (its amount was ordinary for its card, what ``terminal_fraud_run_nb_plain``
counts) comes with the label (``Label.plain``) or is read from the card's record first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from valkey.crc import key_slot

from service.history import scripts
from service.history.codec import LABEL_OP, Keys, transaction_tag
from service.history.model import Label, LabelReport, event_seconds

if TYPE_CHECKING:
    from service.history.scripts import Script

#: Runs one script once per (keys, args) in one round trip (bulk connection).
Run = Callable[["Script", Sequence[tuple[Sequence[Any], Sequence[Any]]]], list[Any]]


def _op(item: Label, flags: int) -> bytes:
    return LABEL_OP.pack(event_seconds(item.timestamp), transaction_tag(item.transaction_id), flags)


def record_labels(run: Run, keys: Keys, items: Sequence[Label], *, cluster: bool) -> LabelReport:
    """Mark each label's terminal record (see :meth:`HistoryStore.record_labels`)."""
    plain = plain_flags(run, keys, items, cluster=cluster)
    calls: dict[int | None, tuple[list[str], list[bytes]]] = {}
    order: list[tuple[int | None, int]] = []
    for item, is_plain in zip(items, plain, strict=True):
        key = keys.terminal(item.terminal_id)[0]
        slot = key_slot(key.encode()) if cluster else None
        slot_keys, ops = calls.setdefault(slot, ([], []))
        order.append((slot, len(slot_keys)))
        slot_keys.append(key)
        flags = (
            (1 if item.transaction_id else 0)
            + 2 * bool(item.fraud)
            + 4 * (bool(item.fraud) and is_plain)
        )
        ops.append(_op(item, flags))
    slots = list(calls)
    replies = run(scripts.LABEL, [(calls[s][0], [b"".join(calls[s][1])]) for s in slots])
    by_slot = dict(zip(slots, replies, strict=True))
    found = tuple(int(by_slot[slot][j]) for slot, j in order)
    return LabelReport(labels=len(items), matched=sum(1 for n in found if n > 0), found=found)


def plain_flags(run: Run, keys: Keys, items: Sequence[Label], *, cluster: bool) -> list[bool]:
    """Each fraud label's "ordinary amount for its card" flag: given, or read from the card.

    Only labels without ``plain`` that name their card cost the card round trip.
    """
    flags = [bool(item.plain) for item in items]
    wanted = [
        i
        for i, item in enumerate(items)
        if item.fraud and item.plain is None and item.customer_id is not None
    ]
    if not wanted:
        return flags
    calls: dict[int | None, tuple[list[str], list[bytes], list[int]]] = {}
    for i in wanted:
        item = items[i]
        key = keys.card(item.customer_id or "")[0]
        slot = key_slot(key.encode()) if cluster else None
        slot_keys, ops, index = calls.setdefault(slot, ([], [], []))
        slot_keys.append(key)
        index.append(i)
        ops.append(_op(item, 1 if item.transaction_id else 0))
    slots = list(calls)
    replies = run(scripts.PLAIN, [(calls[s][0], [b"".join(calls[s][1])]) for s in slots])
    for slot, reply in zip(slots, replies, strict=True):
        for i, found in zip(calls[slot][2], reply, strict=True):
            flags[i] = int(found) == 1
    return flags
