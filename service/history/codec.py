"""Packing a batch into the update script's ops, and unpacking its binary replies.

The layouts are the ones :mod:`service.history.scripts` documents; this module is the
Python half of them (no I/O).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any, Final

from valkey.crc import key_slot

from fraud_contract.windows import SECONDS_PER_DAY
from service.history import scripts
from service.history.model import (
    Aggregates,
    InvalidHistoryRowError,
    RawTransaction,
    event_seconds,
)

OP: Final = struct.Struct(scripts.OP_FORMAT)
CARD_RESULT: Final = struct.Struct(scripts.CARD_RESULT_FORMAT)
TERMINAL_RESULT: Final = struct.Struct(scripts.TERMINAL_RESULT_FORMAT)
LABEL_OP: Final = struct.Struct(scripts.LABEL_OP_FORMAT)
TAG_MASK: Final = (1 << scripts.TAG_BITS) - 1
#: Entity kinds, as the scripts number them.
CARD: Final = 1
TERMINAL: Final = 2
#: First byte of an update result: the transaction id was seen before.
REPLAYED: Final = 1
#: First byte of a refused op: its entity's newest row is more than ``max_lateness`` ahead
#: (LATE), or the row was refused for its other entity or, all or nothing, for another row.
LATE: Final = 3
NOT_WRITTEN: Final = 4


def transaction_tag(transaction_id: str | None) -> int:
    """The 13-bit tag that lets a label find its record among rows of the same second."""
    return zlib.crc32(transaction_id.encode()) & TAG_MASK if transaction_id else 0


class Group:
    """The keys and ops of one script call (one slot in cluster mode)."""

    __slots__ = ("ids", "key_index", "keys", "ops", "targets")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.key_index: dict[str, int] = {}
        self.ops: list[bytes] = []
        self.ids: list[str] = []
        self.targets: list[tuple[int, int]] = []  # (row, kind) of each op

    def entity(self, history_key: str, ids_key: str) -> int:
        """The 1-based index in KEYS of an entity's history key (added on first use)."""
        index = self.key_index.get(history_key)
        if index is None:
            index = len(self.keys) + 1  # Lua's KEYS is 1-based
            self.key_index[history_key] = index
            self.keys += (history_key, ids_key)
        return index


class Keys:
    """Key names of one namespace: hash-tagged so an entity's keys share one cluster slot."""

    __slots__ = ("_card_prefix", "_terminal_prefix")

    def __init__(self, namespace: str) -> None:
        self._card_prefix = f"{namespace}:{{c:"
        self._terminal_prefix = f"{namespace}:{{t:"

    def card(self, customer_id: str) -> tuple[str, str]:
        """The card's history key and remembered-ids key."""
        base = f"{self._card_prefix}{customer_id}}}"
        return f"{base}:h", f"{base}:i"

    def terminal(self, terminal_id: str) -> tuple[str, str]:
        """The terminal's history key and remembered-ids key."""
        base = f"{self._terminal_prefix}{terminal_id}}}"
        return f"{base}:h", f"{base}:i"


def update_groups(
    keys: Keys, rows: Sequence[RawTransaction], seconds: Sequence[int], *, cluster: bool
) -> list[Group]:
    """The update script's calls for a batch: one group, or one per slot in cluster mode.

    Each row gives a card op then a terminal op, in row order (a later row of the same card
    sees the earlier one). Raises :class:`InvalidHistoryRowError` for a bad amount.
    """
    by_slot: dict[int, Group] = {}
    single = Group()
    pack = OP.pack
    for i, row in enumerate(rows):
        amount = float(row.amount)
        if not amount >= 0.0 or amount == float("inf"):
            raise InvalidHistoryRowError("amount", "must be finite and >= 0")
        txid = row.transaction_id or ""
        tag = transaction_tag(txid)
        t = seconds[i]
        for kind, entity_keys in (
            (CARD, keys.card(row.customer_id)),
            (TERMINAL, keys.terminal(row.terminal_id)),
        ):
            if cluster:
                slot = key_slot(entity_keys[0].encode())
                group = by_slot.get(slot)
                if group is None:
                    group = by_slot[slot] = Group()
            else:
                group = single
            index = group.entity(*entity_keys)
            group.ops.append(pack(kind, index, t, amount, tag))
            group.ids.append(txid)
            group.targets.append((i, kind))
    return list(by_slot.values()) if cluster else [single]


def decode_update(
    replies: Sequence[bytes], groups: Sequence[Group], seconds: Sequence[int]
) -> tuple[list[Aggregates | None], dict[int, str]]:
    """Turn the update script's binary replies into one :class:`Aggregates` per row.

    Also returns the refused rows: row -> ``"card"`` or ``"terminal"`` (that entity's newest
    row is too far ahead) or ``"batch"`` (not written because another row was refused); a
    refused row's aggregates are ``None``.
    """
    n = len(seconds)
    card: list[tuple[Any, ...]] = [()] * n
    terminal: list[tuple[Any, ...]] = [()] * n
    unpack_card, unpack_terminal = CARD_RESULT.unpack_from, TERMINAL_RESULT.unpack_from
    card_size, terminal_size = CARD_RESULT.size, TERMINAL_RESULT.size
    for reply, group in zip(replies, groups, strict=True):
        offset = 0
        for row, kind in group.targets:
            if kind == CARD:
                card[row] = unpack_card(reply, offset)
                offset += card_size
            else:
                terminal[row] = unpack_terminal(reply, offset)
                offset += terminal_size
    out: list[Aggregates | None] = []
    refused: dict[int, str] = {}
    append = out.append
    for row in range(n):
        cs, c1, c7, c30, m1, m7, m30, std, ref, h1, h7 = card[row]
        ts, n1, n7, n30, f1, f7, f30, rn, rp, rf = terminal[row]
        if cs >= LATE or ts >= LATE:
            refused[row] = "card" if cs == LATE else "terminal" if ts == LATE else "batch"
            append(None)
            continue
        append(
            Aggregates(
                c1,
                c7,
                c30,
                m1,
                m7,
                m30,
                std,
                ref,
                h1,
                h7,
                n1,
                n7,
                n30,
                f1 / n1 if n1 else 0.0,
                f7 / n7 if n7 else 0.0,
                f30 / n30 if n30 else 0.0,
                rn,
                rp,
                (seconds[row] - rf) / SECONDS_PER_DAY if rn else 0.0,
                cs == REPLAYED,
            )
        )
    return out, refused


def check_row(row: RawTransaction) -> None:
    """Raise :class:`InvalidHistoryRowError` when the store cannot hold a row (early checks)."""
    event_seconds(row.timestamp)
    amount = float(row.amount)
    if not 0.0 <= amount < float("inf"):
        raise InvalidHistoryRowError("amount", "must be finite and >= 0")
