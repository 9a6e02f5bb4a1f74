"""File scoring's Arrow fast path checked against the precise pandas path it stands in for.

The fast path may decline any file (the precise path then decides). What it must never do:
accept a file the precise path rejects, read a value differently, or change an error body.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraud_contract.schema import example_transaction
from service import arrow_tables
from service.errors import ApiError
from service.model import LoadedModel
from service.scoring import Scorer
from service.tables import _score_precise, read_table, score_table, validate_table
from tests.support.api import load_tiny_model

HEADER = "transaction_id,timestamp,customer_id,terminal_id,amount"
ROW = "t1,2018-04-01T10:00:00,C1,T1,12.5"


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    model: LoadedModel = load_tiny_model(tmp_path_factory.mktemp("bentoml"))
    return Scorer(model, threshold=None, top_k=0)


def _frame(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        [
            example_transaction(
                transaction_id=f"tx-{i}",
                timestamp=f"2018-04-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:05",
                amount=round(float(rng.gamma(2, 60)), 2),
                customer_nb_tx_1d=int(rng.integers(1, 9)),
                customer_avg_amount_30d=round(float(rng.gamma(2, 30)), 4),
                customer_std_amount_30d=round(float(rng.gamma(2, 10)), 4),
                terminal_nb_tx_7d=int(rng.integers(0, 90)),
                terminal_risk_7d=round(float(rng.random()), 6),
            )
            for i in range(rows)
        ]
    )
    frame["label"] = np.arange(rows) % 2
    return frame


def _csv(*lines: str, newline: str = "\n") -> bytes:
    return (newline.join(lines) + newline).encode()


def _parquet(frame: pd.DataFrame | pa.Table, **options: object) -> bytes:
    buffer = io.BytesIO()
    if isinstance(frame, pa.Table):
        pq.write_table(frame, buffer)
    else:
        frame.to_parquet(buffer, **options)  # type: ignore[arg-type]
    return buffer.getvalue()


def _agrees(content: bytes, table_format: str) -> bool:
    """Assert the fast path agrees with the precise one; return whether it took the file."""
    prepared = arrow_tables.prepare(content, table_format, max_rows=100_000)
    try:
        precise = validate_table(read_table(content, table_format), max_rows=100_000)  # type: ignore[arg-type]
    except Exception as exc:  # ApiError, or a crash (mixed offsets: a 500 either way)
        assert prepared is None, f"the fast path accepted a file the precise path rejects: {exc}"
        return False
    if prepared is None:
        return False
    assert prepared.rows == len(precise["amount"])
    assert set(prepared.columns) == set(precise)
    for name, values in precise.items():
        assert prepared.columns[name].dtype == values.dtype, name
        np.testing.assert_array_equal(prepared.columns[name], values, err_msg=name)
    return True


# ---- the fast path reads values exactly as the precise path, or declines -------------------

NUMBER_CELLS = [
    "12.5", "0", "-0", "+5", "5.", ".5", "1e3", "1E+3", "007", "", '""', '"7"', "nan", "NaN",
    "inf", "-inf", "Infinity", "1e400", "1e-400", " 5", "5 ", "\t5", "0x10", "1_000", "abc",
    "2.5", "3.0", "-1", "-0.0001", "1", "1.0000001", "1000000", "1000000.5", "1e7", "10000001",
    "0.99999999999999999",
]  # fmt: skip


@pytest.mark.parametrize(
    "column", ["amount", "customer_nb_tx_1d", "terminal_risk_1d", "customer_avg_amount_7d"]
)
@pytest.mark.parametrize("cell", NUMBER_CELLS)
def test_csv_numbers(column: str, cell: str) -> None:
    if column == "amount":
        content = _csv(HEADER, ROW, f"t2,2018-04-01T10:00:00,C1,T1,{cell}")
    else:
        content = _csv(f"{HEADER},{column}", f"{ROW},1", f"{ROW},{cell}")
    _agrees(content, "csv")


def test_plain_numbers_take_the_fast_path() -> None:
    assert _agrees(_csv(f"{HEADER},customer_nb_tx_1d", f"{ROW},3", f"{ROW},"), "csv")


TIMESTAMP_CELLS = [
    "2018-04-01T10:00:00", "2018-04-01 10:00:00", "2018-04-01T10:00:00Z",
    "2018-04-01T10:00:00+02:00", "2018-04-01T10:00:00-0530", "2018-04-01T10:00:00.5",
    "2018-04-01T10:00:00.123456789", "2018-04-01T10:00:00.1234567891", "2018-04-01",
    "2018-04-01T10:00", "2018-02-29T00:00:00", "2016-02-29T00:00:00", "2018-13-01T00:00:00",
    "2018-01-01T24:00:00", "2018-01-01T23:59:60", "2018-01-01T10:60:00", "1677-09-21T00:12:43",
    "1677-09-22T00:00:00", "2262-04-11T23:47:16", "2262-04-12T00:00:00", "0001-01-01T00:00:00",
    "9999-12-31T23:59:59", "", "nope", "2018-04-01T10:00:00+25:00", "2018-04-01T10:00:00 ",
    " 2018-04-01T10:00:00", "2018-04-01t10:00:00", "2018-04-01T10:00:00.", "20180401T100000",
    "2018-04-01T10:00:00Z+02:00", "2018-04-01T10:00:00+02", "\uff11\uff18-04-01T10:00:00",
]  # fmt: skip


@pytest.mark.parametrize("cell", TIMESTAMP_CELLS)
def test_csv_timestamps(cell: str) -> None:
    _agrees(_csv(HEADER, ROW, f"t2,{cell},C2,T2,3"), "csv")


@pytest.mark.parametrize(
    ("cell", "fast"), [("2018-04-01T10:00:0x", False), ("2018-04-01 10:00:05", True)]
)
def test_every_timestamp_of_a_long_file_is_checked(cell: str, fast: bool) -> None:
    rows = [f"t{i},2018-04-01T10:00:05,C1,T1,1" for i in range(9000)]
    rows[8500] = f"t8500,{cell},C1,T1,1"  # in the third block of 4,096 cells
    assert _agrees(_csv(HEADER, *rows), "csv") is fast


def test_offsets_are_dropped_not_converted() -> None:
    content = _csv(HEADER, ROW, "t2,2018-04-01T10:00:00+05:00,C2,T2,3")
    assert _agrees(content, "csv")
    prepared = arrow_tables.prepare(content, "csv", max_rows=10)
    assert prepared is not None
    assert str(prepared.columns["timestamp"][1]).startswith("2018-04-01T10:00:00")


ID_CELLS = [
    "C1", "c.1:x-y_z", "", '""', "C 1", " C1", "C1 ", "Cé", "x" * 64, "x" * 65, '"C1"', "C\t1",
    "0", "C1;x", '"C,1"',
]  # fmt: skip


@pytest.mark.parametrize("column", ["customer_id", "transaction_id"])
@pytest.mark.parametrize("cell", ID_CELLS)
def test_csv_identifiers(column: str, cell: str) -> None:
    row = {"transaction_id": "t2", "customer_id": "C2"} | {column: cell}
    content = _csv(
        HEADER, ROW, f"{row['transaction_id']},2018-04-01T10:00:00,{row['customer_id']},T2,3"
    )
    _agrees(content, "csv")


STRUCTURES = {
    "crlf": _csv(HEADER, ROW, ROW, newline="\r\n"),
    "bom": b"\xef\xbb\xbf" + _csv(HEADER, ROW),
    "no final newline": _csv(HEADER, ROW).rstrip(b"\n"),
    "blank lines": _csv(HEADER, "", ROW, "", ROW, "", ""),
    "quoted": _csv('"transaction_id","timestamp","customer_id","terminal_id","amount"', ROW),
    "multi-line cell": _csv(f"{HEADER},note", f'{ROW},"two\nlines"'),
    "extra columns": _csv(f"label,{HEADER},note", f"1,{ROW},hello", f"0,{ROW},"),
    "utf-8 note": _csv(f"{HEADER},note", f"{ROW},café"),
    "latin-1 note": _csv(f"{HEADER},note", f"{ROW},café").replace(b"\xc3\xa9", b"\xe9"),
    "padded header": _csv("transaction_id, timestamp,customer_id,terminal_id,amount", ROW),
    "duplicate header": _csv(f"{HEADER},amount", f"{ROW},3"),
    "blank header name": _csv(f"{HEADER},", f"{ROW},"),
    "already scored": _csv(f"{HEADER},fraud_probability", f"{ROW},0.5"),
    "more fields": _csv(HEADER, f"{ROW},x"),
    "fewer fields": _csv(HEADER, "t1,2018-04-01T10:00:00,C1,T1"),
    "bare cr": _csv(HEADER, ROW, newline="\r"),
    "mixed endings": _csv(HEADER, ROW).replace(b"\n", b"\r\n", 1),
    "leading blank line": b"\n" + _csv(HEADER, ROW),
    "header only": _csv(HEADER),
    "empty": b"",
    "missing column": _csv("timestamp,amount", "2018-01-01T00:00:00,1.0"),
    "unterminated quote": _csv(HEADER, 't1,2018-04-01T10:00:00,"C1,T1,12.5'),
}


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_csv_structures(name: str) -> None:
    _agrees(STRUCTURES[name], "csv")


def test_common_csv_forms_take_the_fast_path() -> None:
    for name in ("crlf", "bom", "no final newline", "blank lines", "quoted", "extra columns"):
        assert _agrees(STRUCTURES[name], "csv"), name


def _parquet_variants() -> dict[str, bytes]:
    frame = _frame(12)
    stamps = pd.to_datetime(frame["timestamp"])
    nullable = pd.array([None if i % 4 == 0 else i for i in range(12)], dtype="Int64")
    return {
        "plain": _parquet(frame, index=False),
        "range index": _parquet(frame),
        "stored index": _parquet(frame.set_index("transaction_id")),
        "typed timestamps": _parquet(frame.assign(timestamp=stamps), index=False),
        "microseconds": _parquet(frame.assign(timestamp=stamps.astype("datetime64[us]"))),
        "utc": _parquet(frame.assign(timestamp=stamps.dt.tz_localize("UTC")), index=False),
        "paris": _parquet(frame.assign(timestamp=stamps.dt.tz_localize("Europe/Paris"))),
        "missing timestamp": _parquet(frame.assign(timestamp=stamps.where(frame.index != 3))),
        "missing amount": _parquet(frame.assign(amount=frame["amount"].where(frame.index != 2))),
        "missing aggregate": _parquet(
            frame.assign(terminal_risk_7d=frame["terminal_risk_7d"].where(frame.index % 3 > 0))
        ),
        "nullable ints": _parquet(frame.assign(customer_nb_tx_1d=nullable)),
        "pyarrow nulls": _parquet(
            pa.Table.from_pandas(frame.assign(customer_nb_tx_1d=nullable)).replace_schema_metadata()
        ),
        "float32": _parquet(frame.assign(amount=frame["amount"].astype("float32"))),
        "text numbers": _parquet(frame.assign(amount=frame["amount"].astype(str))),
        "empty text number": _parquet(frame.assign(amount=["", *frame["amount"][1:].astype(str)])),
        "integer ids": _parquet(frame.assign(customer_id=range(12))),
        "categorical ids": _parquet(
            frame.assign(customer_id=frame["customer_id"].astype("category"))
        ),
        "bool aggregate": _parquet(frame.assign(terminal_risk_7d=frame.index % 2 == 0)),
        "infinite": _parquet(frame.assign(customer_avg_amount_30d=np.inf)),
        "out of bounds": _parquet(frame.assign(terminal_risk_7d=2.0)),
        "fractional count": _parquet(frame.assign(customer_nb_tx_1d=1.5)),
        "empty id": _parquet(frame.assign(transaction_id=["", *frame["transaction_id"][1:]])),
        "no ids": _parquet(frame.assign(transaction_id=None)),
        "all-null aggregate": _parquet(frame.assign(customer_nb_tx_7d=None)),
        "already scored": _parquet(frame.assign(fraud_probability=0.5)),
        "nested column": _parquet(
            pa.Table.from_pandas(frame, preserve_index=False).append_column(
                "tags", pa.array([["a"]] * 12)
            )
        ),
        "large strings": _parquet(
            pa.Table.from_pandas(frame, preserve_index=False).cast(
                pa.schema(
                    [
                        pa.field(f.name, pa.large_string()) if pa.types.is_string(f.type) else f
                        for f in pa.Table.from_pandas(frame, preserve_index=False).schema
                    ]
                )
            )
        ),
        "truncated": _parquet(frame, index=False)[:-40],
        "bad pandas metadata": _parquet(
            pa.Table.from_pandas(frame).replace_schema_metadata({b"pandas": b"[not json"})
        ),
        "no rows": _parquet(frame.iloc[:0], index=False),
        "missing column": _parquet(frame.drop(columns="terminal_id"), index=False),
        "not parquet": b"PAR1garbage",
    }


PARQUET = _parquet_variants()


@pytest.mark.parametrize("name", list(PARQUET))
def test_parquet_variants(name: str) -> None:
    _agrees(PARQUET[name], "parquet")


def test_common_parquet_forms_take_the_fast_path() -> None:
    forms = ("plain", "range index", "typed timestamps", "utc", "float32", "pyarrow nulls")
    for name in forms:
        assert _agrees(PARQUET[name], "parquet"), name


@pytest.mark.parametrize("table_format", ["csv", "parquet"])
def test_corrupted_files(table_format: str) -> None:
    frame = _frame(12)
    good = frame.to_csv(index=False).encode() if table_format == "csv" else PARQUET["plain"]
    rng = np.random.default_rng(7)
    for _ in range(40):
        corrupted = bytearray(good)
        for position in rng.integers(0, len(corrupted), 3):
            corrupted[position] = int(rng.integers(0, 256))
        _agrees(bytes(corrupted), table_format)


# ---- errors and outputs ---------------------------------------------------------------------

BAD_FILES = {
    "missing columns": (_csv("timestamp,amount", "2018-01-01T00:00:00,1.0"), "x.csv"),
    "garbage cells": (_csv(HEADER, ROW, "t2,not-a-date,C2,T2,abc"), "x.csv"),
    "non-finite": (_csv(f"{HEADER},customer_avg_amount_1d", f"{ROW},inf", f"{ROW},NaN"), "x.csv"),
    "out of bounds": (
        _csv(f"{HEADER},terminal_risk_1d", f"{ROW},1.5", "t2,2018-04-01,C,T,-5,0"), "x.csv"
    ),
    "fractional count": (_csv(f"{HEADER},customer_nb_tx_1d", f"{ROW},2.5"), "x.csv"),
    "fractional high-amount count": (
        _csv(f"{HEADER},customer_nb_high_amount_7d", f"{ROW},0.5"), "x.csv"
    ),
    "hour-only and doubled offsets mixed with plain times": (
        _csv(HEADER, ROW, "t2,2018-04-01T10:00:00+02,C,T,1", "t3,2018-04-01T10:00:00Z+02:00,C,T,1"),
        "x.csv",
    ),
    "bad timestamp": (_csv(HEADER, "t1,2018-02-30T10:00:00,C1,T1,1"), "x.csv"),
    "empty file": (b"", "x.csv"),
    "header only": (_csv(HEADER), "x.csv"),
    "too many rows": (_csv(HEADER, *[ROW] * 6), "x.csv"),
    "unreadable csv": (bytes(range(256)), "x.csv"),
    "unreadable parquet": (b"PAR1garbage", "x.parquet"),
    "many bad cells": (_csv(HEADER, *["t,nope,C1,T1,abc"] * 30), "x.csv"),
    "parquet bad cells": (PARQUET["out of bounds"], "x.parquet"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_errors_are_the_precise_path_errors(scorer: Scorer, name: str) -> None:
    content, filename = BAD_FILES[name]
    table_format = "parquet" if filename.endswith(".parquet") else "csv"
    with pytest.raises(ApiError) as precise:
        _score_precise(content, table_format, scorer, 5)
    with pytest.raises(ApiError) as served:
        score_table(content, filename=filename, content_type=None, scorer=scorer, max_rows=5)
    assert (served.value.status, served.value.body()) == (
        precise.value.status,
        precise.value.body(),
    )


def test_offsets_the_contract_refuses_are_bad_cells_not_a_crash(scorer: Scorer) -> None:
    content, _ = BAD_FILES["hour-only and doubled offsets mixed with plain times"]
    with pytest.raises(ApiError) as error:
        score_table(content, filename="x.csv", content_type=None, scorer=scorer, max_rows=5)
    assert error.value.status == 422
    assert [e["field"] for e in error.value.errors] == ["rows.1.timestamp", "rows.2.timestamp"]


def test_csv_output_is_what_pandas_writes_for_a_plain_file(scorer: Scorer) -> None:
    content = _frame().to_csv(index=False).encode()
    assert arrow_tables.prepare(content, "csv", max_rows=100) is not None
    fast = score_table(content, filename="x.csv", content_type=None, scorer=scorer, max_rows=100)
    assert fast.content == _score_precise(content, "csv", scorer, 100).content


def test_csv_output_keeps_each_line_as_sent(scorer: Scorer) -> None:
    lines = ['"transaction_id","timestamp","customer_id","terminal_id","amount","note"',
             '"t1","2018-04-01T10:00:00","C1","T1","12.5","a, b"', f"{ROW},x"]  # fmt: skip
    content = _csv(*lines, newline="\r\n")
    scored = score_table(content, filename="x.csv", content_type=None, scorer=scorer, max_rows=9)
    out = scored.content.decode().split("\r\n")
    assert out[0] == lines[0] + ",fraud_probability,is_fraud,risk_band"
    for line, original, probability in zip(out[1:], lines[1:], scored.probabilities, strict=False):
        assert line.startswith(f"{original},{float(probability)!r},")
    assert out[-1] == ""


def test_probabilities_are_formatted_as_pandas_formats_them() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.random(2000, dtype=np.float32).astype(np.float64),
            (rng.random(2000) ** 12).astype(np.float32).astype(np.float64),
            [0.0, 1.0, 1e-4, 9.999999e-5, 0.5, 1.1754944e-38, 5e-324],
        ]
    )
    expected = pd.Series(values).to_csv(index=False, header=False).splitlines()
    assert arrow_tables._csv_probabilities(values).to_pylist() == expected


def test_parquet_output_keeps_the_input_schema(scorer: Scorer, tmp_path: Path) -> None:
    content = PARQUET["nullable ints"]
    scored = score_table(
        content, filename="x.parquet", content_type=None, scorer=scorer, max_rows=99
    )
    source = pq.read_schema(io.BytesIO(content))
    out = pq.read_table(io.BytesIO(scored.content))
    assert out.schema.names == [*source.names, "fraud_probability", "is_fraud", "risk_band"]
    assert out.schema.field("customer_nb_tx_1d").type == pa.int64()
    assert out.schema.field("is_fraud").type == pa.bool_()
    precise = pd.read_parquet(io.BytesIO(_score_precise(content, "parquet", scorer, 99).content))
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(scored.content)), precise)
