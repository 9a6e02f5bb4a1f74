"""What an uploaded table must satisfy, read from the contract once.

Shared by the two file-scoring paths (:mod:`service.tables`, the precise per-cell path, and
:mod:`service.arrow_tables`, the Arrow fast path) so that both apply the same rules; the
limits themselves live only in :mod:`fraud_contract.schema`.
"""

from __future__ import annotations

import re
from typing import Any, Final

from fraud_contract.schema import AGGREGATE_FIELDS, Transaction, is_whole_number

#: Identifier columns; ``transaction_id`` is optional (an empty cell is allowed).
ID_FIELDS: Final = ("customer_id", "terminal_id", "transaction_id")
#: Numeric columns, ``amount`` first (it is required; the aggregates are optional).
NUMERIC_FIELDS: Final = ("amount", *AGGREGATE_FIELDS)
#: Count columns that must hold whole numbers (every integer field of the contract).
COUNT_FIELDS: Final = tuple(name for name in AGGREGATE_FIELDS if is_whole_number(name))
#: A trailing time-zone offset: dropped, not converted (the contract uses wall-clock time).
OFFSET_SUFFIX: Final = r"(Z|[+-]\d{2}:?\d{2})$"


def _identifier_constraint(name: str) -> Any:
    """A constraint of the contract's ``Identifier`` type (read on ``customer_id``)."""
    metadata = Transaction.model_fields["customer_id"].metadata
    return next((getattr(m, name) for m in metadata if getattr(m, name, None) is not None), None)


#: The identifier pattern the contract declares (``^[...]+$``).
ID_PATTERN: Final[str] = _identifier_constraint("pattern") or r".+"
#: The longest identifier the contract accepts.
ID_MAX_LENGTH: Final[int] = _identifier_constraint("max_length") or 64


def identifier_bytes() -> frozenset[int] | None:
    """The bytes an identifier may consist of, when the pattern is one repeated class.

    ``^[A-Za-z0-9_.:-]+$`` is "1 or more of these characters": a check of every byte against
    a set (plus the length bounds) is then exactly the pattern. ``None`` for any other pattern
    (the fast path then leaves identifier checks to the precise path's regex).
    """
    shape = re.fullmatch(r"\^(\[[^\]]+\])\+\$", ID_PATTERN)
    if shape is None:
        return None
    character_class = re.compile(shape.group(1))
    return frozenset(byte for byte in range(128) if character_class.fullmatch(chr(byte)))
