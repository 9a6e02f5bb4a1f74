"""File scoring's one engine: what a cell may hold, the 422 cell report, the two writers.

The contract for files is in :mod:`service.table_rules` (and docs/api.md): these tests pin
each decision with the cell that shows it.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraud_contract.features import columns_from_records, compute_features
from fraud_contract.schema import Transaction, example_transaction
from service.csv_tables import read_csv
from service.errors import ApiError
from service.scoring import Scorer
from service.table_limits import FileLimits
from service.tables import ScoredTable, model_columns, output_filename, score_table
from testkit.api import load_tiny_model

HEADER = "transaction_id,timestamp,customer_id,terminal_id,amount"
ROW = "t1,2018-04-01T10:00:00,C1,T1,12.5"
SCORED = ["fraud_probability", "is_fraud", "risk_band"]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    return Scorer(load_tiny_model(tmp_path_factory.mktemp("bentoml")), threshold=None, top_k=0)


def _csv(*lines: str, newline: str = "\n") -> bytes:
    return (newline.join(lines) + newline).encode()


def _columns(content: bytes) -> dict[str, np.ndarray]:
    return model_columns(read_csv(content, FileLimits()).table, max_rows=10_000)


def _error(content: bytes, filename: str = "x.csv", max_rows: int = 1000, **kw: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        score_table(
            content,
            filename=filename,
            content_type=None,
            scorer=kw.pop("scorer"),
            max_rows=max_rows,
            **kw,
        )
    return caught.value


def _cell_errors(content: bytes) -> list[tuple[str, str]]:
    with pytest.raises(ApiError) as caught:
        _columns(content)
    assert caught.value.status == 422
    return [(e["field"], e["reason"]) for e in caught.value.errors]


def _parquet(table: pa.Table, **options: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def _table(rows: int = 12, **columns: Any) -> pa.Table:
    data: dict[str, Any] = {
        "transaction_id": [f"tx-{i}" for i in range(rows)],
        "timestamp": [
            f"2018-04-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:05" for i in range(rows)
        ],
        "customer_id": [f"C{i % 5}" for i in range(rows)],
        "terminal_id": [f"T{i % 3}" for i in range(rows)],
        "amount": [round(10.0 + 7.3 * i, 2) for i in range(rows)],
        "customer_nb_tx_1d": [1 + i % 4 for i in range(rows)],
        "terminal_risk_7d": [round((i % 10) / 10, 2) for i in range(rows)],
        "label": [i % 2 for i in range(rows)],
    }
    data.update(columns)
    return pa.table({k: v for k, v in data.items() if v is not None})


# ---- what a cell may hold ------------------------------------------------------------------

NUMBERS = {
    "12.5": 12.5, "0": 0.0, "-0": 0.0, "+5": 5.0, "5.": 5.0, ".5": 0.5, "1e3": 1000.0,
    "1E+3": 1000.0, "007": 7.0, " 5": 5.0, "5 ": 5.0, "\t5": 5.0, '"7"': 7.0,
    "0.99999999999999999": 1.0,
}  # fmt: skip
NOT_NUMBERS = {
    "nan": "not a number", "NaN": "not a number", "0x10": "not a number",
    "1_000": "not a number", "abc": "not a number", "1,5": "not a number",
    "inf": "must be finite", "-Infinity": "must be finite", "1e400": "must be finite",
    "-1": "must be >= 0.0", "1000000.5": "must be <= 1000000.0",
}  # fmt: skip


@pytest.mark.parametrize(("cell", "value"), list(NUMBERS.items()))
def test_numbers_the_contract_reads(cell: str, value: float) -> None:
    content = _csv(HEADER, ROW, f"t2,2018-04-01T10:00:00,C1,T1,{cell}")
    assert _columns(content)["amount"][1] == value


@pytest.mark.parametrize(("cell", "reason"), list(NOT_NUMBERS.items()))
def test_cells_that_are_not_valid_numbers(cell: str, reason: str) -> None:
    content = _csv(HEADER, ROW, f'"t2",2018-04-01T10:00:00,C1,T1,"{cell}"')
    assert _cell_errors(content) == [("rows.1.amount", reason)]


def test_empty_cells_are_missing_values() -> None:
    content = _csv(f"{HEADER},customer_nb_tx_1d", f"{ROW},3", f"{ROW}, ", f"{ROW},")
    np.testing.assert_array_equal(_columns(content)["customer_nb_tx_1d"], [3, np.nan, np.nan])
    assert _cell_errors(_csv(HEADER, "t1,2018-04-01T10:00:00,C1,T1,")) == [
        ("rows.0.amount", "required value missing")
    ]


def test_counts_must_be_whole() -> None:
    content = _csv(f"{HEADER},customer_nb_high_amount_7d", f"{ROW},2.0", f"{ROW},0.5")
    assert _cell_errors(content) == [
        ("rows.1.customer_nb_high_amount_7d", "must be a whole number")
    ]


TIMESTAMPS = {
    "2018-04-01T10:00:00": "2018-04-01T10:00:00",
    "2018-04-01 10:00:00": "2018-04-01T10:00:00",
    "2018-04-01T10:00:00Z": "2018-04-01T10:00:00",
    "2018-04-01T10:00:00+05:00": "2018-04-01T10:00:00",  # dropped, not converted
    "2018-04-01T10:00:00-0530": "2018-04-01T10:00:00",
    "2018-04-01T10:00:00.5": "2018-04-01T10:00:00.500000",
    "2018-04-01T10:00:00.123456789": "2018-04-01T10:00:00.123456",
    "2018-04-01": "2018-04-01T00:00:00",
    "2018-04-01T10:00": "2018-04-01T10:00:00",
    "2016-02-29T00:00:00": "2016-02-29T00:00:00",
    " 2018-04-01T10:00:00 ": "2018-04-01T10:00:00",
    "0001-01-01T00:00:00": "0001-01-01T00:00:00",
    "9999-12-31T23:59:59": "9999-12-31T23:59:59",
}
BAD_TIMESTAMPS = [
    "2018-02-29T00:00:00", "2018-13-01T00:00:00", "2018-01-01T24:00:00", "2018-01-01T23:59:60",
    "2018-01-01T10:60:00", "0000-01-01T00:00:00", "", "nope", "2018-04-01T10:00:00+25:00",
    "2018-04-01t10:00:00", "2018-04-01T10:00:00.", "20180401T100000",
    "2018-04-01T10:00:00.1234567891",
    "2018-04-01T10:00:00Z+02:00", "2018-04-01T10:00:00+02", "\uff11\uff18-04-01T10:00:00",
    "2018-04-01Z",
]  # fmt: skip


@pytest.mark.parametrize(("cell", "value"), list(TIMESTAMPS.items()))
def test_timestamps_the_contract_reads(cell: str, value: str) -> None:
    content = _csv(HEADER, ROW, f"t2,{cell},C2,T2,3")
    assert str(_columns(content)["timestamp"][1]).startswith(value)


@pytest.mark.parametrize("cell", BAD_TIMESTAMPS)
def test_cells_that_are_not_timestamps(cell: str) -> None:
    content = _csv(HEADER, ROW, f"t2,{cell},C2,T2,3")
    assert _cell_errors(content) == [("rows.1.timestamp", "missing or not an ISO 8601 date-time")]


def test_every_timestamp_of_a_long_file_is_checked() -> None:
    rows = [f"t{i},2018-04-01T10:00:05,C1,T1,1" for i in range(9000)]
    rows[8500] = "t8500,2018-04-01T10:00:0x,C1,T1,1"
    assert _cell_errors(_csv(HEADER, *rows)) == [
        ("rows.8500.timestamp", "missing or not an ISO 8601 date-time")
    ]


ID_REASON = "missing or not an identifier (1-64 of A-Z a-z 0-9 _ . : -)"


@pytest.mark.parametrize("cell", ["C1", "c.1:x-y_z", " C1", "C1 ", "x" * 64, '"C1"', "0"])
def test_identifiers_the_contract_reads(cell: str) -> None:
    _columns(_csv(HEADER, f"t2,2018-04-01T10:00:00,{cell},T2,3"))


@pytest.mark.parametrize("cell", ["", '""', "C 1", "Cé", "x" * 65, "C\t1", "C1;x", '"C,1"'])
def test_cells_that_are_not_identifiers(cell: str) -> None:
    content = _csv(HEADER, f"t2,2018-04-01T10:00:00,{cell},T2,3")
    assert _cell_errors(content) == [("rows.0.customer_id", ID_REASON)]


def test_transaction_id_may_be_empty() -> None:
    _columns(_csv(HEADER, ",2018-04-01T10:00:00,C1,T2,3"))


def test_the_report_lists_the_first_20_bad_cells_column_by_column() -> None:
    error = _error(_csv(HEADER, *["t,nope,C1,T1,abc"] * 30), scorer=None)
    assert error.status == 422
    assert error.message == "60 invalid cells; the first are listed in 'errors'."
    assert len(error.errors) == 20
    assert error.errors[0] == {"field": "rows.0.timestamp", "reason": TIMESTAMP}


TIMESTAMP = "missing or not an ISO 8601 date-time"


# ---- structure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        _csv(HEADER, ROW, ROW, newline="\r\n"),
        b"\xef\xbb\xbf" + _csv(HEADER, ROW),
        _csv(HEADER, ROW).rstrip(b"\n"),
        _csv(HEADER, "", ROW, "", ROW, "", ""),
        _csv('"transaction_id","timestamp","customer_id","terminal_id","amount"', ROW),
        _csv(f"{HEADER},note", f'{ROW},"two\nlines"', f'{ROW},"a\rb"'),
        _csv(f"label,{HEADER},note", f"1,{ROW},hello", f"0,{ROW},"),
        _csv(f"{HEADER},note", f"{ROW},café"),
        _csv("transaction_id, timestamp ,customer_id,terminal_id,amount", ROW),
        _csv(f"{HEADER},note,note,", f"{ROW},a,b,"),
        _csv(f"{HEADER},fraud_probability", f"{ROW},0.5"),
    ],
    ids=["crlf", "bom", "no-final-newline", "blank-lines", "quoted", "multi-line", "extra",
         "utf-8", "padded-names", "repeated-unknown", "already-scored"],
)  # fmt: skip
def test_csv_forms_that_are_scored(scorer: Scorer, content: bytes) -> None:
    scored = score_table(content, filename="x.csv", content_type=None, scorer=scorer, max_rows=9)
    rows = list(csv.reader(io.StringIO(scored.content.decode(), newline="")))
    assert rows[0][-3:] == SCORED
    assert rows[0].count("fraud_probability") == 1
    assert len(rows) - 1 == scored.rows


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (_csv(HEADER), 422, "empty_file"),
        (_csv("timestamp,amount", "2018-01-01T00:00:00,1.0"), 422, "missing_columns"),
        (_csv(f"{HEADER},amount", f"{ROW},3"), 422, "duplicate_columns"),
        (_csv(HEADER, f"{ROW},x"), 400, "unreadable_file"),
        (_csv(HEADER, "t1,2018-04-01T10:00:00,C1,T1"), 400, "unreadable_file"),
        (_csv(f"{HEADER},n", f"{ROW},café").replace(b"\xc3\xa9", b"\xe9"), 400, "unreadable_file"),
        (_csv(HEADER, 't1,2018-04-01T10:00:00,"C1,T1,12.5'), 400, "unreadable_file"),
        (bytes(range(256)), 400, "unreadable_file"),
        (_csv(HEADER, *[ROW] * 6), 413, "too_many_rows"),
    ],
    ids=["empty", "header-only", "missing-column", "repeated-contract-column", "more-fields",
         "fewer-fields", "latin-1", "unterminated-quote", "binary", "too-many-rows"],
)  # fmt: skip
def test_csv_forms_that_are_refused(scorer: Scorer, content: bytes, status: int, code: str) -> None:
    error = _error(content, max_rows=5, scorer=scorer)
    assert (error.status, error.code) == (status, code)


def test_error_bodies_keep_their_shape() -> None:
    missing = _error(_csv("timestamp,amount", "2018-01-01T00:00:00,1.0"), scorer=None)
    assert missing.body() == (
        b'{"error":"missing_columns","message":"The file lacks required columns.","errors":'
        b'[{"field":"customer_id","reason":"required column missing"},'
        b'{"field":"terminal_id","reason":"required column missing"}]}'
    )
    rows = _error(_csv(HEADER, *[ROW] * 6), max_rows=5, scorer=None)
    assert rows.body() == (
        b'{"error":"too_many_rows","message":"The file has more than 5 rows.","errors":'
        b'[{"field":"file","reason":"6 rows > 5"}]}'
    )


def test_output_filename() -> None:
    assert output_filename("../../etc/pass wd.csv", "csv") == ".._.._etc_pass_wd.scored.csv"
    assert output_filename(None, "parquet") == "transactions.scored.parquet"


# ---- the CSV writer -------------------------------------------------------------------------


def _scored_rows(
    scorer: Scorer, content: bytes, **options: Any
) -> tuple[list[list[str]], ScoredTable]:
    scored = score_table(
        content, filename="x.csv", content_type=None, scorer=scorer, max_rows=99, **options
    )
    return list(csv.reader(io.StringIO(scored.content.decode(), newline=""))), scored


def test_scores_are_the_models_on_the_right_rows(scorer: Scorer) -> None:
    records = [example_transaction(transaction_id=f"t{i}", amount=10.0 * i) for i in range(1, 8)]
    lines = [",".join(HEADER.split(",")) + ",label"]
    lines += [
        f"{r['transaction_id']},{r['timestamp']},{r['customer_id']},{r['terminal_id']},{r['amount']},{i}"
        for i, r in enumerate(records)
    ]
    rows, _ = _scored_rows(scorer, _csv(*lines))
    matrix = compute_features(
        columns_from_records([Transaction.model_validate(r) for r in records]), scorer.feature_names
    )
    expected = scorer.model.predict(matrix, explain=False).probabilities
    assert rows[0] == [*HEADER.split(","), "label", *SCORED]
    assert [float(r[-3]) for r in rows[1:]] == expected.tolist()
    assert [r[0] for r in rows[1:]] == [r["transaction_id"] for r in records]
    assert {r[-2] for r in rows[1:]} <= {"True", "False"}


def test_formula_cells_are_neutralised_numbers_are_not(scorer: Scorer) -> None:
    content = _csv(
        f"{HEADER},note,=cmd",
        f'{ROW},"=HYPERLINK(""http://x"")",-5',
        f"{ROW},+1.5e3,@SUM(A1)",
        f"{ROW},-2+3,\tx",
        f'{ROW},"\rx",ok',
    )
    rows, _ = _scored_rows(scorer, content)
    assert rows[0][5:7] == ["note", "'=cmd"]
    assert [r[5:7] for r in rows[1:]] == [
        ['\'=HYPERLINK("http://x")', "-5"],
        ["+1.5e3", "'@SUM(A1)"],
        ["'-2+3", "'\tx"],
        ["'\rx", "ok"],
    ]
    plain, _ = _scored_rows(scorer, content, neutralise_formulas=False)
    assert plain[1][5] == '=HYPERLINK("http://x")'


def test_a_quoted_carriage_return_stays_in_its_cell(scorer: Scorer) -> None:
    for newline in ("\n", "\r\n"):
        content = _csv(
            f"{HEADER},note",
            f'{ROW},"a\rb"',
            f'{ROW},"c\r\nd"',
            "t9,2018-04-01T10:00:00,C1,T1,3,e",
            newline=newline,
        )
        rows, scored = _scored_rows(scorer, content, neutralise_formulas=False)
        assert [r[5] for r in rows[1:]] == ["a\rb", "c\r\nd", "e"]
        assert [r[0] for r in rows[1:]] == ["t1", "t1", "t9"]
        assert scored.content.endswith(newline.encode())


# ---- Parquet -------------------------------------------------------------------------------


def _paris() -> pa.Array:
    utc = pa.array([datetime(2018, 4, 1, 8)] * 12, pa.timestamp("us"))
    return utc.cast(pa.timestamp("us", tz="Europe/Paris"))


PARQUET_ACCEPTED = {
    "plain": _table(),
    "typed timestamps": _table(
        timestamp=pa.array(
            np.datetime64("2018-04-01T10:00:00") + np.arange(12).astype("timedelta64[s]")
        )
    ),
    "utc": _table(
        timestamp=pa.array(np.repeat(np.datetime64("2018-04-01T10:00:00", "us"), 12)).cast(
            pa.timestamp("us", tz="UTC")
        )
    ),
    "dates": _table(timestamp=pa.array(np.repeat(np.datetime64("2018-04-01", "D"), 12))),
    "missing aggregate": _table(terminal_risk_7d=[None if i % 3 == 0 else 0.5 for i in range(12)]),
    "nan aggregate": _table(terminal_risk_7d=[np.nan if i % 3 == 0 else 0.5 for i in range(12)]),
    "nullable ints": _table(
        customer_nb_tx_1d=pa.array([None if i % 4 == 0 else i for i in range(12)], pa.int64())
    ),
    "float32": _table(amount=pa.array(np.arange(12, dtype=np.float32) + 0.5)),
    "text numbers": _table(amount=[str(10.5 + i) for i in range(12)]),
    "integer ids": _table(customer_id=list(range(12))),
    "categorical ids": _table(
        customer_id=pa.array([f"C{i % 2}" for i in range(12)]).dictionary_encode()
    ),
    "empty id": _table(transaction_id=["", *[f"t{i}" for i in range(11)]]),
    "no ids": _table(transaction_id=pa.nulls(12, pa.string())),
    "all-null aggregate": _table(customer_nb_tx_7d=pa.nulls(12, pa.float64())),
    "already scored": _table(fraud_probability=[0.5] * 12),
    "large strings": _table().cast(
        pa.schema(
            [
                pa.field(f.name, pa.large_string()) if pa.types.is_string(f.type) else f
                for f in _table().schema
            ]
        )
    ),
}


@pytest.mark.parametrize("name", list(PARQUET_ACCEPTED))
def test_parquet_forms_that_are_scored(scorer: Scorer, name: str) -> None:
    table = PARQUET_ACCEPTED[name]
    scored = score_table(
        _parquet(table), filename="x.parquet", content_type=None, scorer=scorer, max_rows=99
    )
    out = pq.read_table(io.BytesIO(scored.content))
    kept = [n for n in table.column_names if n not in SCORED]
    assert out.column_names == [*kept, *SCORED]
    stored = pq.read_schema(io.BytesIO(_parquet(table)))  # Parquet keeps seconds as ms
    for column in kept:
        assert out.schema.field(column).type == stored.field(column).type, column
    assert out.schema.field("is_fraud").type == pa.bool_()
    assert out.num_rows == 12


def test_zoned_timestamps_are_read_as_the_wall_clock_of_their_zone(scorer: Scorer) -> None:
    from service.parquet_tables import read_parquet  # noqa: PLC0415

    table = read_parquet(_parquet(_table(timestamp=_paris())), FileLimits(), 99)
    stamps = model_columns(table, max_rows=99)["timestamp"]
    assert str(stamps[0]) == "2018-04-01T10:00:00.000000"  # 08:00 UTC is 10:00 in Paris


PARQUET_REFUSED = {
    "missing timestamp": (
        _table(timestamp=[None, *["2018-04-01T10:00:00"] * 11]),
        422,
        "rows.0.timestamp",
    ),
    "missing amount": (_table(amount=[None, *[1.0] * 11]), 422, "rows.0.amount"),
    "empty text amount": (_table(amount=["", *["1"] * 11]), 422, "rows.0.amount"),
    "bool aggregate": (_table(terminal_risk_7d=[True] * 12), 422, "rows.0.terminal_risk_7d"),
    "infinite": (
        _table(customer_avg_amount_30d=[np.inf] * 12),
        422,
        "rows.0.customer_avg_amount_30d",
    ),
    "out of bounds": (_table(terminal_risk_7d=[2.0] * 12), 422, "rows.0.terminal_risk_7d"),
    "fractional count": (_table(customer_nb_tx_1d=[1.5] * 12), 422, "rows.0.customer_nb_tx_1d"),
    "float ids": (_table(customer_id=[1.5] * 12), 422, "rows.0.customer_id"),
    "nested column": (_table().append_column("tags", pa.array([["a"]] * 12)), 422, "tags"),
    "no rows": (_table(0), 422, "file"),
    "missing column": (_table(terminal_id=None), 422, "terminal_id"),
}


@pytest.mark.parametrize("name", list(PARQUET_REFUSED))
def test_parquet_forms_that_are_refused(scorer: Scorer, name: str) -> None:
    table, status, field = PARQUET_REFUSED[name]
    error = _error(_parquet(table), filename="x.parquet", scorer=scorer)
    assert error.status == status
    assert error.errors[0]["field"] == field


@pytest.mark.parametrize("content", [b"PAR1garbage", _parquet(_table())[:-40]])
def test_unreadable_parquet_is_a_400(scorer: Scorer, content: bytes) -> None:
    assert _error(content, filename="x.parquet", scorer=scorer).code == "unreadable_file"


@pytest.mark.parametrize("table_format", ["csv", "parquet"])
def test_corrupted_files_are_4xx_never_a_crash(scorer: Scorer, table_format: str) -> None:
    good = _csv(HEADER, *[ROW] * 12) if table_format == "csv" else _parquet(_table())
    rng = np.random.default_rng(7)
    for _ in range(60):
        corrupted = bytearray(good)
        for position in rng.integers(0, len(corrupted), 3):
            corrupted[position] = int(rng.integers(0, 256))
        try:
            score_table(
                bytes(corrupted),
                filename=f"x.{table_format}",
                content_type=None,
                scorer=scorer,
                max_rows=99,
            )
        except ApiError as exc:
            assert 400 <= exc.status < 500
