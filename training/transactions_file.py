"""A labelled transactions table brought by the user (Parquet or CSV), checked and aggregated.

``fraud-train --data`` and ``fraud-benchmark --data`` read it instead of simulating. The file
needs the contract's raw columns and a label:

* ``timestamp`` (date and time; an offset is dropped, the wall-clock time is kept, as the
  scoring contract does), ``customer_id`` and ``terminal_id`` (identifiers), ``amount``
  (finite, >= 0) and ``is_fraud`` (0 or 1);
* optional: ``transaction_id``; ``fraud_scenario`` (the simulator's scenario codes): when it
  is present the reports add recall per scenario, when it is absent they do not.

Any other column (for instance aggregates a history store already filled) is ignored: the
aggregates are always recomputed from the raw columns by :func:`training.aggregates.add_aggregates`,
so a model is trained on exactly the windows the project defines. Every problem is a
:class:`DataError` whose one-line message names the file and the column.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from training.aggregates import add_aggregates
from training.simulator import SCENARIO_NAMES

REQUIRED_COLUMNS: Final[tuple[str, ...]] = (
    "timestamp",
    "customer_id",
    "terminal_id",
    "amount",
    "is_fraud",
)
OPTIONAL_COLUMNS: Final[tuple[str, ...]] = ("transaction_id", "fraud_scenario")
SCENARIO_COLUMN: Final = "fraud_scenario"
#: Exit status of the command-line tools for bad input data (``EX_DATAERR`` of sysexits.h).
EXIT_DATA_ERROR: Final = 65
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_CSV_SUFFIXES: Final = (".csv", ".csv.gz")


class DataError(ValueError):
    """The transactions file cannot be used; the message is one line naming the column."""


@dataclass(frozen=True)
class DataSource:
    """What a run was trained or measured on (recorded in the model card and the reports)."""

    kind: str  # "file" or "simulator"
    rows: int
    frauds: int
    first_timestamp: str
    last_timestamp: str
    has_scenarios: bool
    path: str | None = None
    sha256: str | None = None
    simulator: dict[str, Any] | None = None
    preset: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (absent fields left out)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "rows": self.rows,
            "frauds": self.frauds,
            "period": {"first": self.first_timestamp, "last": self.last_timestamp},
            "has_fraud_scenario": self.has_scenarios,
        }
        extra = {
            "path": self.path,
            "sha256": self.sha256,
            "preset": self.preset,
            "simulator": self.simulator,
        }
        out.update({k: v for k, v in extra.items() if v is not None})
        return out


def describe_frame(frame: pd.DataFrame, **fields: Any) -> DataSource:
    """A :class:`DataSource` for an in-memory frame (rows, frauds, period, scenario column)."""
    return DataSource(
        rows=len(frame),
        frauds=int(frame["is_fraud"].sum()),
        first_timestamp=pd.Timestamp(frame["timestamp"].min()).isoformat(),
        last_timestamp=pd.Timestamp(frame["timestamp"].max()).isoformat(),
        has_scenarios=SCENARIO_COLUMN in frame.columns,
        **fields,
    )


def file_sha256(path: Path) -> str:
    """SHA-256 of the file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_table(path: Path) -> pd.DataFrame:
    """Read a Parquet or CSV file as it is (no checks yet)."""
    name = path.name.lower()
    if not path.is_file():
        msg = f"{path}: no such file"
        raise DataError(msg)
    try:
        if name.endswith(_PARQUET_SUFFIXES):
            return pd.read_parquet(path)
        if name.endswith(_CSV_SUFFIXES):
            # Identifiers stay text (C00042 and 00042 are different cards).
            return pd.read_csv(path, dtype={"customer_id": str, "terminal_id": str})
    except (OSError, ValueError) as exc:  # pyarrow and the CSV parser raise ValueError kinds
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"{path}: cannot read the file: {first_line}"
        raise DataError(msg) from exc
    msg = f"{path}: unknown file type; use .parquet, .pq, .csv or .csv.gz"
    raise DataError(msg)


def _first_bad(column: pd.Series, bad: np.ndarray) -> str:
    """``N values ... (first at row i: value)`` for an error message."""
    rows = np.flatnonzero(bad)
    return f"{rows.size} value(s), first at row {int(rows[0])}: {column.iloc[rows[0]]!r}"


def _timestamps(path: Path, column: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column):
        parsed = column
    else:
        parsed = pd.to_datetime(column, errors="coerce", format="ISO8601", utc=False)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)  # wall-clock time as written (the contract's rule)
    bad = parsed.isna().to_numpy()
    if bad.any():
        msg = f"{path}: column 'timestamp' is not a date and time in {_first_bad(column, bad)}"
        raise DataError(msg)
    return parsed.astype("datetime64[us]")


def _identifiers(path: Path, name: str, column: pd.Series) -> pd.Series:
    text = column.astype("string")
    bad = (text.isna() | (text.str.strip() == "")).to_numpy(dtype=bool)
    if bad.any():
        msg = f"{path}: column '{name}' has empty identifiers in {_first_bad(column, bad)}"
        raise DataError(msg)
    return text.str.strip().astype("string[pyarrow]")


def _amounts(path: Path, column: pd.Series) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce").astype(np.float64)
    bad = ~np.isfinite(values.to_numpy()) | (values.to_numpy() < 0)
    if bad.any():
        msg = f"{path}: column 'amount' must be a finite number >= 0; {_first_bad(column, bad)}"
        raise DataError(msg)
    return values


def _codes(path: Path, name: str, column: pd.Series, allowed: set[int]) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isin(numbers, sorted(allowed))
    if bad.any():
        msg = f"{path}: column '{name}' must be one of {sorted(allowed)}; {_first_bad(column, bad)}"
        raise DataError(msg)
    return pd.Series(numbers.astype(np.int8), index=column.index)


def validate(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The checked raw table, sorted by time: the required columns, then the optional ones."""
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        msg = (
            f"{path}: missing column '{missing[0]}' (needs {', '.join(REQUIRED_COLUMNS)}; "
            f"optional {', '.join(OPTIONAL_COLUMNS)})"
        )
        raise DataError(msg)
    if frame.empty:
        msg = f"{path}: the table has no rows"
        raise DataError(msg)
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(
        {
            "transaction_id": (
                _identifiers(path, "transaction_id", frame["transaction_id"])
                if "transaction_id" in frame.columns
                else pd.Series(np.arange(len(frame))).astype(str).astype("string[pyarrow]")
            ),
            "timestamp": _timestamps(path, frame["timestamp"]),
            "customer_id": _identifiers(path, "customer_id", frame["customer_id"]),
            "terminal_id": _identifiers(path, "terminal_id", frame["terminal_id"]),
            "amount": _amounts(path, frame["amount"]),
            "is_fraud": _codes(path, "is_fraud", frame["is_fraud"], {0, 1}),
        }
    )
    if SCENARIO_COLUMN in frame.columns:
        out[SCENARIO_COLUMN] = _codes(
            path, SCENARIO_COLUMN, frame[SCENARIO_COLUMN], set(SCENARIO_NAMES)
        )
        if bool(((out[SCENARIO_COLUMN] > 0) != (out["is_fraud"] == 1)).any()):
            msg = f"{path}: column '{SCENARIO_COLUMN}' must be 0 exactly where is_fraud is 0"
            raise DataError(msg)
    if int(out["is_fraud"].sum()) == 0:
        msg = f"{path}: column 'is_fraud' has no fraud (1) at all: nothing to learn or measure"
        raise DataError(msg)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


def load_transactions(path: Path) -> tuple[pd.DataFrame, DataSource]:
    """Read, check and aggregate a transactions file; return the frame and its description."""
    raw = validate(read_table(path), path)
    frame = add_aggregates(raw)
    source = describe_frame(raw, kind="file", path=str(path), sha256=file_sha256(path))
    return frame, source
