"""Strict JSON request bodies: one transaction, or a batch decoded straight into columns.

The contract (:class:`fraud_contract.schema.Transaction`, pydantic) defines what is valid
and every error message. A batch takes a column path first (:mod:`service.json_columns`:
msgspec into typed rows, then whole-column checks against the contract's own bounds and
rules). That path only *accepts*; the moment a batch is not plainly valid (a bad value, a
padded identifier, a timestamp in another ISO 8601 form, an escape sequence, ...) it steps
aside and pydantic validates the body as always, so errors are pydantic's, field paths and
all (``transactions.3.amount``).

Strict JSON everywhere: a key repeated in one object is a 400 naming it (JSON parsers
otherwise keep the last value silently); no string or boolean is taken for a number (see the
schema). Everything here is synchronous and keeps no state between calls: callers may run
it in worker threads.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from pydantic import ValidationError

from fraud_contract.api import MAX_BATCH_TRANSACTIONS, BatchRequest
from fraud_contract.features import columns_from_records
from fraud_contract.schema import Transaction
from service.errors import ApiError, from_validation_error
from service.json_columns import TransactionColumns, plain_columns

__all__ = ["TransactionColumns", "decode_batch", "decode_transaction", "decode_transactions"]


def decode_transaction(body: bytes) -> Transaction:
    """One transaction from a JSON body.

    Raises:
        ApiError: 400 for a body that is not JSON or repeats a key, 422 naming every field
            that breaks the contract.
    """
    _reject_repeated_keys(body, _flat_object_members(body))
    try:
        return Transaction.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def decode_batch(body: bytes, *, max_rows: int = MAX_BATCH_TRANSACTIONS) -> TransactionColumns:
    """A ``{"transactions": [...]}`` body (1 to ``max_rows`` transactions) as columns.

    Raises:
        ApiError: as :func:`decode_transactions`.
    """
    columns = plain_columns(body, max_rows)
    if columns is not None:
        return columns
    rows = decode_transactions(body, max_rows=max_rows)
    return TransactionColumns(columns_from_records(rows), [t.transaction_id for t in rows])


def decode_transactions(
    body: bytes, *, max_rows: int = MAX_BATCH_TRANSACTIONS
) -> list[Transaction]:
    """A ``{"transactions": [...]}`` body as validated transactions (for callers that need the
    card and terminal ids, which the column form does not keep).

    Raises:
        ApiError: as :func:`decode_transaction`, field paths prefixed by
            ``transactions.<index>``; 422 for an empty list or more than ``max_rows``.
    """
    _reject_repeated_keys(body, None)
    try:
        batch = BatchRequest.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    rows = batch.transactions
    if len(rows) > max_rows:  # only when max_rows is below the contract's own limit
        raise ApiError(
            422,
            "invalid_input",
            "The request has 1 problem; see 'errors'.",
            [
                {
                    "field": "transactions",
                    "reason": f"List should have at most {max_rows} items after validation, "
                    f"not {len(rows)}",
                }
            ],
            reason="batch_size",
        )
    return list(rows)


# ---- repeated keys --------------------------------------------------------------------------


def _flat_object_members(body: bytes) -> bool:
    """Whether ``body`` is one flat object whose every key is there once (cheap check).

    Without escapes, every '"' of the body opens or closes a key or a string value: a key
    given twice leaves two more than the decoded object has.
    """
    if b"\\" in body:
        return False
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if type(document) is not dict:
        return False
    kinds = list(map(type, document.values()))
    if dict in kinds or list in kinds:
        return False
    return body.count(b'"') == 2 * (len(document) + kinds.count(str))


def _reject_repeated_keys(body: bytes, known_unique: bool | None) -> None:
    """400 naming the first key that appears twice in one object."""
    if known_unique:
        return
    try:
        document = json.loads(body, object_pairs_hook=_Pairs.build)
    except (ValueError, RecursionError):
        return  # not JSON (pydantic names the problem)
    found = _first_repeated(document)
    if found is not None:
        path, key = found
        raise ApiError(
            400,
            "duplicate_key",
            f"The request body gives the key {key!r} more than once.",
            [{"field": path, "reason": f"duplicate key {key!r}"}],
            reason="duplicate_key",
        )


class _Pairs(dict[str, Any]):
    """A decoded object that remembers its first repeated key."""

    repeated: str | None = None

    @classmethod
    def build(cls, pairs: list[tuple[str, Any]]) -> _Pairs:
        obj = cls(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            obj.repeated = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        return obj


def _first_repeated(document: Any) -> tuple[str, str] | None:
    """(dotted path of the key, key) of the first repeated key, depth first; else ``None``."""
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Pairs):
            if node.repeated is not None:
                return f"{path}{node.repeated}", node.repeated
            children = [(value, f"{path}{key}.") for key, value in node.items()]
        elif isinstance(node, list):
            children = [(value, f"{path}{i}.") for i, value in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))
    return None
