"""The transaction contract: what a caller sends to score one card transaction.

This is the only definition of the request schema. Training (the simulator pipeline writes
records in this shape), the scoring service, the UI and the load tests all import it.

Behavioural aggregates are computed by the caller's (or the simulator pipeline's) history
store, never by the scoring service:

* customer windows of 1, 7 and 30 days *end at and include* the transaction being scored;
* terminal windows are *delayed by 7 days* (fraud labels are only known a week later): the
  window of n days covers ``[t - 7 days - n days, t - 7 days)``;
* the terminal's *fraud run* looks at the same labelled transactions (7 days old or more):
  the frauds after its most recent labelled genuine transaction.

Every aggregate is optional. A missing aggregate is passed to the model as a missing value
(XGBoost routes it down the branch it learned for missing values); it is never imputed here.

Unknown fields are **rejected** (HTTP 422), not ignored: a misspelt optional aggregate would
otherwise be silently dropped and the transaction scored as if the history were unknown.

Types are not coerced: a number must be a JSON number (``"66.29"`` or ``true`` as an amount is
rejected), a count a whole number (``3`` or ``3.0``, not ``3.5``, ``"3"`` or ``true``), and the
timestamp an ISO 8601 string (not a number of seconds).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

#: Largest amount the contract accepts, in currency units. Above it the record is not a
#: plausible card transaction (simulated amounts stay below ~2,000).
MAX_AMOUNT: Final = 1_000_000.0
#: Largest transaction count accepted in any window (a card or terminal doing more than this
#: in 30 days is a data error, not a transaction).
MAX_COUNT: Final = 10_000_000
#: Largest age in days accepted (about 100 years: anything older is a data error).
MAX_DAYS: Final = 36_500.0

Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
# strict: a JSON number (integers included), never a string or a boolean.
Money = Annotated[float, Field(ge=0.0, le=MAX_AMOUNT, allow_inf_nan=False, strict=True)]
Ratio = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)]
Days = Annotated[float, Field(ge=0.0, le=MAX_DAYS, allow_inf_nan=False, strict=True)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class Transaction(BaseModel):
    """One card transaction with its behavioural aggregates, as sent to the scoring API."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    transaction_id: Identifier | None = Field(
        default=None, description="Caller's transaction identifier, echoed back in the result."
    )
    timestamp: datetime = Field(
        description=(
            "When the transaction happened, ISO 8601. The wall-clock time as written is used "
            "(time zone offsets are not converted): it is the time where the card was used."
        ),
        examples=["2018-08-09T14:23:05"],
    )
    customer_id: Identifier = Field(description="Card (customer) identifier. Hashed in logs.")
    terminal_id: Identifier = Field(description="Terminal (merchant device) identifier.")
    amount: Money = Field(description="Transaction amount in currency units (>= 0, finite).")

    customer_nb_tx_1d: Count | None = Field(
        default=None, description="Card's transactions in the last 1 day, including this one."
    )
    customer_nb_tx_7d: Count | None = Field(
        default=None, description="Card's transactions in the last 7 days, including this one."
    )
    customer_nb_tx_30d: Count | None = Field(
        default=None, description="Card's transactions in the last 30 days, including this one."
    )
    customer_avg_amount_1d: Money | None = Field(
        default=None, description="Card's mean amount over the last 1 day, including this one."
    )
    customer_avg_amount_7d: Money | None = Field(
        default=None, description="Card's mean amount over the last 7 days, including this one."
    )
    customer_avg_amount_30d: Money | None = Field(
        default=None, description="Card's mean amount over the last 30 days, including this one."
    )
    customer_std_amount_30d: Money | None = Field(
        default=None,
        description="Card's amount standard deviation over the last 30 days, including this one.",
    )
    customer_avg_amount_ref: Money | None = Field(
        default=None,
        description="Card's reference mean amount, in currency units: the mean over the 30 "
        "days that end 14 days before this transaction (unaffected by a recent compromise); "
        "the 30-day mean including this one for a card with no older history.",
    )
    customer_nb_high_amount_1d: Count | None = Field(
        default=None,
        description="Card's transactions in the last 1 day, including this one, whose amount "
        "exceeded 3x the card's reference mean amount at their time.",
    )
    customer_nb_high_amount_7d: Count | None = Field(
        default=None,
        description="Card's transactions in the last 7 days, including this one, whose amount "
        "exceeded 3x the card's reference mean amount at their time.",
    )
    terminal_nb_tx_1d: Count | None = Field(
        default=None, description="Terminal's transactions in the 1 day before the 7-day delay."
    )
    terminal_nb_tx_7d: Count | None = Field(
        default=None, description="Terminal's transactions in the 7 days before the 7-day delay."
    )
    terminal_nb_tx_30d: Count | None = Field(
        default=None, description="Terminal's transactions in the 30 days before the 7-day delay."
    )
    terminal_risk_1d: Ratio | None = Field(
        default=None,
        description="Fraud ratio of the terminal's transactions in the delayed 1-day window "
        "(0 when the window is empty).",
    )
    terminal_risk_7d: Ratio | None = Field(
        default=None, description="Fraud ratio in the terminal's delayed 7-day window."
    )
    terminal_risk_30d: Ratio | None = Field(
        default=None, description="Fraud ratio in the terminal's delayed 30-day window."
    )
    terminal_fraud_run_nb: Count | None = Field(
        default=None,
        description="Terminal's labelled frauds since its last labelled genuine transaction, "
        "counting only transactions at least 7 days old (labels arrive a week late): 0 when "
        "its most recent labelled transaction was genuine or it has none.",
    )
    terminal_fraud_run_nb_plain: Count | None = Field(
        default=None,
        description="How many frauds of that run had an amount of at most 2x their card's "
        "reference mean amount (ordinary purchases, as at a compromised terminal); 0 without "
        "a run. At most terminal_fraud_run_nb.",
    )
    terminal_fraud_run_days: Days | None = Field(
        default=None,
        description="Age in days (fractional) of that run: from its first fraud to this "
        "transaction, so at least 7 when there is a run; 0 without a run.",
    )

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp_is_not_a_number(cls, value: Any) -> Any:
        """A number of seconds is not taken for a date-time (pydantic's lax mode would)."""
        if isinstance(value, int | float):
            raise PydanticCustomError("datetime_type", "Input should be a valid datetime")
        return value

    @field_validator(
        "customer_nb_tx_1d",
        "customer_nb_tx_7d",
        "customer_nb_tx_30d",
        "customer_nb_high_amount_1d",
        "customer_nb_high_amount_7d",
        "terminal_nb_tx_1d",
        "terminal_nb_tx_7d",
        "terminal_nb_tx_30d",
        "terminal_fraud_run_nb",
        "terminal_fraud_run_nb_plain",
        mode="before",
    )
    @classmethod
    def _count_is_a_number(cls, value: Any) -> Any:
        """Counts: whole JSON numbers (``3.0`` too), never a string or a boolean."""
        if isinstance(value, str | bool):
            raise PydanticCustomError("int_type", "Input should be a valid integer")
        return value


#: The raw fields of the contract, in declaration order.
TRANSACTION_FIELDS: Final[tuple[str, ...]] = tuple(Transaction.model_fields)
#: Fields every record must carry.
REQUIRED_FIELDS: Final[tuple[str, ...]] = tuple(
    name for name, field in Transaction.model_fields.items() if field.is_required()
)
#: Optional numeric aggregates (may be absent; absent means "unknown" to the model).
AGGREGATE_FIELDS: Final[tuple[str, ...]] = tuple(
    name
    for name in TRANSACTION_FIELDS
    if name.startswith(("customer_nb", "customer_avg", "customer_std", "terminal_"))
    and name != "terminal_id"
)


def numeric_bounds(field_name: str) -> tuple[float | None, float | None]:
    """Return the ``(ge, le)`` bounds the contract declares for a numeric field.

    Vectorised validators (file scoring) read the bounds from here so that the limits exist
    only once, in the annotated types above (``Count``, ``Money``, ``Ratio``).
    """
    field = Transaction.model_fields[field_name]
    constraints: list[Any] = list(field.metadata)
    for member in get_args(field.annotation) or (field.annotation,):
        constraints.extend(get_args(member)[1:])  # Annotated[T, FieldInfo(...)] metadata
    lower: float | None = None
    upper: float | None = None
    for item in constraints:
        for meta in getattr(item, "metadata", [item]):
            lower = getattr(meta, "ge", None) if getattr(meta, "ge", None) is not None else lower
            upper = getattr(meta, "le", None) if getattr(meta, "le", None) is not None else upper
    return lower, upper


def is_whole_number(field_name: str) -> bool:
    """Whether the contract declares ``field_name`` as an integer (a count)."""
    annotation = Transaction.model_fields[field_name].annotation
    for member in get_args(annotation) or (annotation,):
        base = get_args(member)[0] if get_args(member) else member
        if base is int:
            return True
    return False


def example_transaction(**overrides: Any) -> dict[str, Any]:
    """A minimal valid request body (for docs and tests); real examples live in examples.json."""
    body: dict[str, Any] = {
        "transaction_id": "tx-1",
        "timestamp": "2018-08-09T14:23:05",
        "customer_id": "C00042",
        "terminal_id": "T001337",
        "amount": 57.16,
    }
    body.update(overrides)
    return body
