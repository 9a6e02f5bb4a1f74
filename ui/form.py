"""The scoring form: which fields it has, their defaults, and validation against the contract.

Fields, descriptions and limits all come from :class:`fraud_contract.Transaction`; this module
only decides how they are laid out and turns validation errors into sentences.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from fraud_contract import AGGREGATE_FIELDS, TRANSACTION_FIELDS, Transaction
from fraud_contract.schema import example_transaction

#: The identity fields shown first, in this order (every other field is an aggregate).
IDENTITY_FIELDS: Final[tuple[str, ...]] = tuple(
    name for name in TRANSACTION_FIELDS if name not in AGGREGATE_FIELDS
)
#: Form order: identity fields then aggregates, exactly the contract's fields.
FORM_FIELDS: Final[tuple[str, ...]] = (*IDENTITY_FIELDS, *AGGREGATE_FIELDS)
TEXT_FIELDS: Final[frozenset[str]] = frozenset(
    {"transaction_id", "timestamp", "customer_id", "terminal_id"}
)


@dataclass(frozen=True)
class Example:
    """A one-click example from the simulator."""

    name: str
    description: str
    transaction: dict[str, Any]


def load_examples(path: Path | None = None) -> list[Example]:
    """Examples from ``path``, by default the simulator's ``fraud_contract/examples.json``.

    Empty when the file is absent or unreadable (the form still works without examples).
    """
    try:
        if path is None:
            text = resources.files("fraud_contract").joinpath("examples.json").read_text()
        else:
            text = path.read_text()
        raw = json.loads(text)
    except (OSError, json.JSONDecodeError):
        return []
    examples = []
    for item in raw if isinstance(raw, list) else []:
        try:
            transaction = Transaction.model_validate(item["transaction"])
        except (KeyError, TypeError, ValidationError):
            continue  # a broken example is left out rather than offered and failing
        examples.append(
            Example(
                name=str(item.get("name", "example")),
                description=str(item.get("description", "")),
                transaction=transaction.model_dump(mode="json", exclude_none=True),
            )
        )
    return examples


def default_transaction(examples: Sequence[Example]) -> dict[str, Any]:
    """What the form shows first: the raw fields of the genuine example (else a minimal one).

    The history fields start blank: the service computes them from its history store, and a
    value typed in the expert section overrides the stored one.
    """
    chosen = example_transaction()
    for example in examples:
        if "genuine" in example.name.lower() or "legit" in example.name.lower():
            chosen = example.transaction
            break
    return {name: value for name, value in chosen.items() if name not in AGGREGATE_FIELDS}


_WINDOWED = re.compile(r"^(customer|terminal)_(nb_tx|avg_amount|std_amount|risk)_(\d+)d$")
_WHAT = {
    "nb_tx": "transactions",
    "avg_amount": "mean amount",
    "std_amount": "amount std. dev.",
    "risk": "fraud ratio",
}


def field_label(name: str) -> str:
    """Short human label for a contract field, e.g. 'Card mean amount, 7 d'."""
    match = _WINDOWED.match(name)
    if match is None:
        return name.replace("_", " ").capitalize().replace(" id", " ID")
    owner, what, days = match.groups()
    who = "Card" if owner == "customer" else "Terminal"
    delayed = " (delayed)" if owner == "terminal" else ""
    return f"{who} {_WHAT[what]}, {days} d{delayed}"


def field_help(name: str) -> str:
    """The contract's description of a field."""
    return Transaction.model_fields[name].description or ""


def form_values(transaction: dict[str, Any]) -> list[Any]:
    """Form component values for a transaction, in :data:`FORM_FIELDS` order (None = blank)."""
    return [transaction.get(name) for name in FORM_FIELDS]


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _plain_reason(message: str) -> str:
    """Pydantic's message in lower case, without its 'Value error, ' prefix."""
    message = message.removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def validation_sentence(error: ValidationError) -> str:
    """'Invalid field amount: input should be greater than or equal to 0.' (one per field)."""
    parts = []
    for item in error.errors()[:5]:
        name = ".".join(str(part) for part in item["loc"]) or "input"
        parts.append(f"invalid field {name}: {_plain_reason(item['msg'])}")
    sentence = "; ".join(parts)
    return sentence[:1].upper() + sentence[1:] + "."


def build_transaction(values: Sequence[Any]) -> dict[str, Any]:
    """Validate the form's values against the contract; return the JSON body to send.

    Blank optional fields are left out (the API treats a missing aggregate as unknown).
    Raises ``ValueError`` with a sentence naming the invalid fields.
    """
    raw: dict[str, Any] = {}
    for name, value in zip(FORM_FIELDS, values, strict=True):
        if _blank(value):
            continue
        if name in TEXT_FIELDS:
            raw[name] = str(value).strip()
            continue
        # Expert overrides are typed in text boxes; gr.Number hands over floats.
        number = _number(value.strip()) if isinstance(value, str) else value
        if (
            isinstance(number, float)
            and number.is_integer()
            and name.startswith(("customer_nb", "terminal_nb"))
        ):
            raw[name] = int(number)  # counts must be integers
        else:
            raw[name] = number
    try:
        transaction = Transaction.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(validation_sentence(exc)) from exc
    return transaction.model_dump(mode="json", exclude_none=True)


def _number(text: str) -> float | str:
    """A typed number as a float; anything else unchanged, so validation names the field."""
    try:
        return float(text)
    except ValueError:
        return text
