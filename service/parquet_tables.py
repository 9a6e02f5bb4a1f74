"""Parquet uploads: bounded reading into Arrow, and the one scored-Parquet writer.

Before any column is decoded, the footer must declare at most ``max_columns`` leaf columns,
the row limit, and at most ``max_decoded_bytes`` of uncompressed row groups. Text columns
are read as dictionaries (a stored dictionary page stays the dictionary plus one index per
row) and their decoded size is computed from the dictionary before they are expanded: that
is the size a dictionary bomb hides from the footer. Nested columns
(lists, structs, maps) are refused: the contract has none, and their decoded size is not
bounded by the same arithmetic.

Writing: the input table (column types and metadata as sent, existing score columns
dropped) with ``fraud_probability`` (float64), ``is_fraud`` (bool) and ``risk_band``
(string) appended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fraud_contract.api import SCORE_COLUMNS
from service.errors import ApiError
from service.table_limits import FileJob, FileLimits, check, done, limit_error, unreadable

#: Rows per written row group: pyarrow's own default for ``write_table``.
_ROW_GROUP_ROWS: Final = 1024 * 1024


def read_parquet(
    content: bytes, limits: FileLimits, max_rows: int, job: FileJob | None = None
) -> pa.Table:
    """Read a Parquet upload within ``limits``; dictionary text columns come back decoded.

    Row groups are read one at a time: each is checked against the decoded-size bound, with
    the ones before it, before the next is decoded, and ``job`` is checked in between.

    Raises:
        ApiError: 413 naming the limit exceeded, 422 for nested columns, 400 for bytes that
            are not a Parquet file.
        AbandonedError: ``job`` was cancelled.
    """
    try:
        probe = pq.ParquetFile(pa.BufferReader(content))
        schema = probe.schema_arrow
        _check_footer(probe.metadata, limits, max_rows)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable("parquet", str(exc)) from exc
    nested = [f.name for f in schema if pa.types.is_nested(f.type)]
    if nested:
        raise ApiError(
            422,
            "unsupported_columns",
            "The file has nested columns (lists, structs or maps); send flat columns.",
            [{"field": name, "reason": "nested column"} for name in nested[:20]],
            reason="invalid_rows",
        )
    # Every text column is read as a dictionary: stored dictionary pages stay as they are
    # (a repeated cell costs one index, not a copy) until their decoded size is known.
    dictionary = [f.name for f in schema if _is_text(f.type) and not pa.types.is_dictionary(f.type)]
    groups: list[pa.Table] = []
    decoded = 0
    try:
        source = pq.ParquetFile(pa.BufferReader(content), read_dictionary=dictionary)
        for index in range(source.num_row_groups):
            check(job, "reading")
            group = source.read_row_group(index, use_threads=False)
            group.validate(full=True)  # UTF-8 of every text cell, offsets in bounds
            decoded = _check_decoded(group, limits, decoded)
            groups.append(group)
            done(job, "read", group.num_rows)
        table = pa.concat_tables(groups) if groups else source.schema_arrow.empty_table()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable("parquet", str(exc)) from exc
    return _expanded(table, schema)


def _check_footer(metadata: pq.FileMetaData, limits: FileLimits, max_rows: int) -> None:
    """Columns, rows and uncompressed size as the footer declares them.

    Only row-group totals are read: pyarrow aborts the whole process on some damaged
    column-chunk metadata (seen with a corrupted size-statistics histogram), where the
    reader itself raises a clean error.
    """
    if metadata.num_columns > limits.max_columns:
        raise limit_error(
            "too_many_columns",
            "max_columns",
            f"The file has more than {limits.max_columns} columns.",
            f"{metadata.num_columns} columns > {limits.max_columns}",
        )
    if metadata.num_rows > max_rows:
        raise ApiError(
            413,
            "too_many_rows",
            f"The file has more than {max_rows} rows.",
            [{"field": "file", "reason": f"{metadata.num_rows} rows > {max_rows}"}],
            reason="too_large",
        )
    declared = sum(metadata.row_group(g).total_byte_size for g in range(metadata.num_row_groups))
    if declared > limits.max_decoded_bytes:
        raise _decoded_error(declared, limits)


def _decoded_error(size: int, limits: FileLimits) -> ApiError:
    return limit_error(
        "decoded_too_large",
        "max_decoded_bytes",
        f"The file decodes to more than {limits.max_decoded_bytes} bytes.",
        f"{size} bytes > {limits.max_decoded_bytes}",
    )


def _check_decoded(table: pa.Table, limits: FileLimits, total: int = 0) -> int:
    """Cell sizes and the decoded size, dictionaries counted as they will expand.

    ``total``: decoded bytes of the row groups before this one. Returns the new total.
    """
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_dictionary(kind):
            for chunk in column.chunks:
                lengths = pc.binary_length(chunk.dictionary)
                longest = pc.max(lengths).as_py() or 0
                _check_cell(name, longest, limits)
                total += pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
            if len(column):
                _check_cell(name, pc.max(pc.binary_length(column)).as_py() or 0, limits)
            total += column.nbytes
        else:
            total += column.nbytes
        if total > limits.max_decoded_bytes:
            raise _decoded_error(total, limits)
    return total


def _check_cell(name: str, longest: int, limits: FileLimits) -> None:
    if longest > limits.max_cell_bytes:
        raise limit_error(
            "cell_too_large",
            "max_cell_bytes",
            f"A cell of column {name!r} is longer than {limits.max_cell_bytes} bytes.",
            f"{longest} bytes > {limits.max_cell_bytes}",
        )


def _expanded(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Dictionary columns the reader kept encoded, back to the file's own types."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type) and not pa.types.is_dictionary(
            schema.field(field.name).type
        ):
            table = table.set_column(
                i, schema.field(field.name), table.column(i).cast(schema.field(field.name).type)
            )
    return table


def write_parquet(
    table: pa.Table,
    scores: Sequence[pa.Array],
    job: FileJob | None = None,
    names: Sequence[str] = SCORE_COLUMNS,
) -> bytes:
    """The input table with the score columns (``scores``, one per ``names`` entry).

    ``names`` are :data:`SCORE_COLUMNS`, and ``history`` with the history store on; input
    columns of those names are replaced. Written one row group of :data:`_ROW_GROUP_ROWS` at
    a time, ``job`` checked in between.
    """
    dropped = [name for name in table.column_names if name in names]
    if dropped:
        table = table.drop_columns(dropped).replace_schema_metadata(None)
    for name, values in zip(names, scores, strict=True):
        table = table.append_column(name, values)
    fields = table.schema
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(
        sink,
        fields,
        # Dictionaries only where values repeat by nature (counts, flags, categoricals, the
        # risk band): ids, timestamps and amounts are mostly distinct in real files.
        use_dictionary=[
            f.name for f in fields if _repeats(f.type) or f.name in (SCORE_COLUMNS[2], "history")
        ],
        # Min/max of text columns is the costly part of the statistics and the least useful.
        write_statistics=[f.name for f in fields if not _is_text(f.type)],
    ) as writer:
        for start in range(0, table.num_rows, _ROW_GROUP_ROWS):
            check(job, "writing")
            group = table.slice(start, _ROW_GROUP_ROWS)
            writer.write_table(group, row_group_size=_ROW_GROUP_ROWS)
            done(job, "written", group.num_rows)
    return bytes(sink.getvalue().to_pybytes())


def _repeats(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_dictionary(kind)
    )


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_dictionary(kind)
    )
