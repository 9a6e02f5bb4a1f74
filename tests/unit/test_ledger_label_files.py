"""Label files: CSV and Parquet in, 4xx naming the row/column for anything wrong."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.errors import ApiError, InvalidInput, MalformedBody, TooLarge, UnsupportedMedia
from service.ledger.label_files import parse_label_file

HEADER = "transaction_id,label,reported_at,source\n"


def parse(body: str | bytes, media: str = "text/csv", max_rows: int = 100) -> list:
    data = body.encode() if isinstance(body, str) else body
    return parse_label_file(data, media, max_rows=max_rows, max_bytes=10_000)


def test_a_good_csv_gives_labels_with_utc_times() -> None:
    labels = parse(
        HEADER + "t1,fraud,2018-09-01T10:00:00,chargeback\n"
        "t2,genuine,2018-09-02T10:00:00+02:00,analyst\n"
    )
    assert [(x.transaction_id, x.label, x.source) for x in labels] == [
        ("t1", "fraud", "chargeback"),
        ("t2", "genuine", "analyst"),
    ]
    assert labels[0].reported_at == datetime(2018, 9, 1, 10, tzinfo=UTC)
    assert labels[1].reported_at.utcoffset() is not None


def test_bad_values_are_named_by_row_and_column() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(
            HEADER + "t1,fraud,2018-09-01T10:00:00,chargeback\n"
            "t2,maybe,2018-09-01T10:00:00,chargeback\n"
            "t3,fraud,yesterday,chargeback\n"
            ",fraud,2018-09-01T10:00:00,\n"
        )
    fields = [e["field"] for e in caught.value.errors]
    assert fields == [
        "row 2, column label",
        "row 3, column reported_at",
        "row 4, column transaction_id",
        "row 4, column source",
    ]
    assert caught.value.status == 422


def test_unknown_and_missing_columns_are_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse("transaction_id,label,reported_at,comment\nt1,fraud,2018-09-01,x\n")
    assert {e["field"]: e["reason"] for e in caught.value.errors} == {
        "column 'comment'": "unknown column",
        "column 'source'": "missing column",
    }


def test_a_row_with_the_wrong_field_count_is_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(HEADER + "t1,fraud,2018-09-01T10:00:00,chargeback,extra\n")
    assert caught.value.errors[0]["field"] == "row 1"


def test_malformed_csv_and_bad_encoding_are_400s() -> None:
    with pytest.raises(MalformedBody) as quote:
        parse(HEADER + 't1,"fraud,2018-09-01,chargeback\n')
    assert quote.value.status == 400
    assert quote.value.code == "malformed_csv"
    with pytest.raises(MalformedBody) as encoding:
        parse(HEADER.encode() + b"t1,fraud,\xff\xfe,chargeback\n")
    assert "UTF-8" in encoding.value.message
    with pytest.raises(InvalidInput):
        parse("")


def test_huge_files_are_refused_before_parsing() -> None:
    rows = "".join(f"t{i},fraud,2018-09-01T10:00:00,chargeback\n" for i in range(101))
    with pytest.raises(TooLarge) as many:
        parse(HEADER + rows, max_rows=100)
    assert many.value.status == 413
    assert "100 rows" in many.value.message
    with pytest.raises(TooLarge) as big:
        parse_label_file(b"x" * 10_001, "text/csv", max_rows=100, max_bytes=10_000)
    assert big.value.errors[0]["field"] == "file"


def test_parquet_files_with_timestamps_or_strings() -> None:
    table = pa.table(
        {
            "transaction_id": ["t1", "t2"],
            "label": ["fraud", "genuine"],
            "reported_at": pa.array(
                [datetime(2018, 9, 1, 10), datetime(2018, 9, 2, 10)], pa.timestamp("us")
            ),
            "source": ["chargeback", "analyst"],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    labels = parse(buffer.getvalue(), "application/vnd.apache.parquet")
    assert [x.label for x in labels] == ["fraud", "genuine"]
    assert labels[0].reported_at == datetime(2018, 9, 1, 10, tzinfo=UTC)

    bad = table.set_column(1, "label", pa.array(["fraud", "nope"]))
    buffer = io.BytesIO()
    pq.write_table(bad, buffer)
    with pytest.raises(InvalidInput) as caught:
        parse(buffer.getvalue(), "application/octet-stream")  # detected by its magic bytes
    assert caught.value.errors[0]["field"] == "row 2, column label"


def test_a_parquet_file_over_the_row_bound_or_broken_is_refused() -> None:
    table = pa.table(
        {
            "transaction_id": [f"t{i}" for i in range(5)],
            "label": ["fraud"] * 5,
            "reported_at": ["2018-09-01T00:00:00"] * 5,
            "source": ["chargeback"] * 5,
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    with pytest.raises(TooLarge):
        parse(buffer.getvalue(), "application/vnd.apache.parquet", max_rows=4)
    with pytest.raises(MalformedBody) as broken:
        parse(b"PAR1 not really", "application/vnd.apache.parquet")
    assert broken.value.code == "malformed_parquet"


def test_other_media_types_are_415() -> None:
    with pytest.raises(UnsupportedMedia) as caught:
        parse(HEADER, "application/json")
    assert isinstance(caught.value, ApiError)
    assert caught.value.status == 415
