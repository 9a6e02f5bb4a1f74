"""CSV uploads: bounded reading into Arrow text columns, and the one scored-CSV writer.

Reading: the header line is found and parsed first (bounded by ``max_header_bytes`` and
``max_columns``), every line is bounded before the Arrow reader runs, and every cell is read
as text (the contract checks in :mod:`service.table_rules` convert them). The upload must be
UTF-8 (a UTF-8 byte-order mark is dropped), with the header's number of fields on every row;
blank lines are skipped; quoted cells may hold commas, quotes and line breaks (RFC 4180).

Writing (:func:`write_csv`): every input column (text as read, existing score columns
dropped), then ``fraud_probability`` (the shortest text that reads back to the same float64),
``is_fraud`` (``True``/``False``) and ``risk_band``. Cells are quoted when they hold a comma,
a quote, CR or LF, so any RFC 4180 reader (Python's :mod:`csv` included) gets back the same
rows and columns. With ``neutralise_formulas`` (the default), a cell outside the contract's
columns (and any column name) that starts with ``=``,
``+``, ``-``, ``@``, tab or CR and is not a plain decimal number gets a leading ``'`` (OWASP's
advice against formula injection into spreadsheets): ``-5`` and ``+1.5e3`` stay numbers,
``-2+3`` and ``=HYPERLINK(...)`` become text. The line ending is the input header's (CRLF or LF).
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from fraud_contract.api import SCORE_COLUMNS
from service.table_limits import (
    CHUNK_ROWS,
    FileJob,
    FileLimits,
    check,
    done,
    limit_error,
    unreadable,
)
from service.table_rules import CONTRACT_COLUMNS, text_array

#: Smallest parser block: large enough that per-block overhead does not show.
_BLOCK_BYTES: Final = 4 * 1024 * 1024
_MAX_BLOCK: Final = 2**30
_LF: Final = 0x0A
#: Cells a spreadsheet would run as a formula (OWASP CSV injection).
_FORMULA_START: Final = r"^[=+\-@\t\r]"
#: Plain decimal numbers: a spreadsheet reads them as numbers, never as formulas.
_PLAIN_NUMBER: Final = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_NEEDS_QUOTES: Final = '[,"\r\n]'
_FORMULA_BYTES: Final = np.frombuffer(b"=+-@\t\r", dtype=np.uint8)


@dataclass(frozen=True)
class CsvTable:
    """An upload read as text columns, and the line ending it used."""

    table: pa.Table
    terminator: str


def read_csv(content: bytes, limits: FileLimits, job: FileJob | None = None) -> CsvTable:
    """Parse a CSV upload into text columns within ``limits``.

    The parser reads blocks of at least :data:`_BLOCK_BYTES` (and at least the longest line
    ``limits`` allow), and ``job`` is checked between blocks.

    Raises:
        ApiError: 413 naming the limit exceeded, 400 for bytes that are not such a CSV.
        AbandonedError: ``job`` was cancelled.
    """
    body = content.removeprefix(codecs.BOM_UTF8)
    header_end = body.find(b"\n", 0, limits.max_header_bytes + 1)
    if header_end < 0 and len(body) > limits.max_header_bytes:
        raise limit_error(
            "header_too_large",
            "max_header_bytes",
            "The file's header line is too long.",
            f"no line end in the first {limits.max_header_bytes} bytes",
        )
    header = body if header_end < 0 else body[:header_end]
    names = _header_names(header.removesuffix(b"\r"), limits)
    longest = _check_line_lengths(body, len(names), limits)
    # A block must hold the longest line allowed (a row may not straddle two blocks).
    block = min(len(body) + 1, max(_BLOCK_BYTES, longest + 2), _MAX_BLOCK)
    batches = []
    try:
        reader = pa_csv.open_csv(
            pa.BufferReader(body),
            # One core per worker: no reader threads.
            read_options=pa_csv.ReadOptions(
                use_threads=False,
                block_size=block,
                column_names=[f"c{i}" for i in range(len(names))],  # names may repeat
                skip_rows=1,
            ),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={f"c{i}": pa.string() for i in range(len(names))},
                # An empty cell (quoted or not) is missing; the writer writes it back empty.
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
        check(job, "reading")
        for batch in reader:
            batches.append(batch)
            done(job, "read", batch.num_rows)
            check(job, "reading")
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise unreadable("csv", str(exc)) from exc
    table = pa.Table.from_batches(batches, schema=reader.schema).rename_columns(names)
    _check_cell_sizes(table, limits)
    return CsvTable(table, "\r\n" if header.endswith(b"\r") else "\n")


def _header_names(header: bytes, limits: FileLimits) -> list[str]:
    if header.count(b",") >= limits.max_columns and header.count(b'"') == 0:
        raise _too_many_columns(header.count(b",") + 1, limits)
    try:
        text = header.decode("utf-8")
        names = next(csv.reader([text], strict=True))
    except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
        raise unreadable("csv", f"header line: {exc}") from exc
    if len(names) > limits.max_columns:
        raise _too_many_columns(len(names), limits)
    return names


def _too_many_columns(count: int, limits: FileLimits) -> Exception:
    return limit_error(
        "too_many_columns",
        "max_columns",
        f"The file has more than {limits.max_columns} columns.",
        f"{count} columns > {limits.max_columns}",
    )


def _check_line_lengths(body: bytes, columns: int, limits: FileLimits) -> int:
    """No line may exceed what ``columns`` cells of ``max_cell_bytes`` (quoted) take.

    Returns that bound, in bytes.
    """
    longest = columns * (limits.max_cell_bytes + 3)
    if len(body) <= longest:
        return longest
    ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == _LF)
    bounds = np.concatenate(([-1], ends, [len(body)]))
    if int(np.diff(bounds).max()) > longest + 1:
        raise limit_error(
            "cell_too_large",
            "max_cell_bytes",
            f"A line of the file is longer than {columns} cells of {limits.max_cell_bytes} bytes.",
            f"line over {longest} bytes",
        )
    return longest


def _check_cell_sizes(table: pa.Table, limits: FileLimits) -> None:
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not len(column):
            continue
        longest = pc.max(pc.binary_length(column)).as_py() or 0
        if longest > limits.max_cell_bytes:
            raise limit_error(
                "cell_too_large",
                "max_cell_bytes",
                f"A cell of column {name!r} is longer than {limits.max_cell_bytes} bytes.",
                f"{longest} bytes > {limits.max_cell_bytes}",
            )


# ---- writing --------------------------------------------------------------------------------


def write_csv(
    source: CsvTable,
    score_cells: Sequence[pa.Array],
    *,
    neutralise_formulas: bool = True,
    job: FileJob | None = None,
    names: Sequence[str] = SCORE_COLUMNS,
) -> bytes:
    """The scored CSV: the input's columns then the score cells (already text), one per row.

    ``score_cells`` are text arrays, one per ``names`` entry (:data:`SCORE_COLUMNS`, and
    ``history`` with the history store on); input columns of those names are replaced. The
    contract's columns were validated (numbers, timestamps, identifiers of
    ``A-Z a-z 0-9 _ . : -``, which cannot spell a function call or a DDE payload) and are
    written as read, so the ids in the output are the ids sent; every other column is
    neutralised. Rows are written
    :data:`CHUNK_ROWS` at a time, with ``job`` checked in between.
    """
    table = source.table
    stripped = [name.strip() for name in table.column_names]
    keep = [i for i, name in enumerate(stripped) if name not in names]
    header_names = [table.column_names[i] for i in keep] + list(names)
    columns = [table.column(i) for i in keep] + [pa.chunked_array([a]) for a in score_cells]
    checked = [stripped[i] in CONTRACT_COLUMNS for i in keep] + [True] * len(score_cells)
    header = _cell_text(pa.chunked_array([text_array(header_names)]), neutralise_formulas)
    parts = [(",".join(header.to_pylist()) + source.terminator).encode()]
    for start in range(0, table.num_rows, CHUNK_ROWS):
        check(job, "writing")
        cells = [
            _cell_text(
                _filled(column.slice(start, CHUNK_ROWS)), neutralise_formulas and not contract
            )
            for column, contract in zip(columns, checked, strict=True)
        ]
        last = pc.binary_join_element_wise(cells[-1], source.terminator, "")
        lines = pc.binary_join_element_wise(*cells[:-1], last, ",")
        parts.extend(bytes(_data(chunk)) for chunk in lines.chunks)
        done(job, "written", len(lines))
    return b"".join(parts)


def _cell_text(column: pa.ChunkedArray, neutralise: bool) -> pa.ChunkedArray:
    """Each cell as it must be written: neutralised when asked, quoted when needed.

    The regular expressions run only on columns whose bytes show they may be needed (a
    formula character first in some cell, a comma, quote or line break anywhere).
    """
    if neutralise and any(_formula_start(chunk) for chunk in column.chunks):
        formula = pc.and_(
            pc.match_substring_regex(column, _FORMULA_START),
            pc.invert(pc.match_substring_regex(column, _PLAIN_NUMBER)),
        )
        if pc.any(formula).as_py():
            column = pc.if_else(formula, pc.binary_join_element_wise("'", column, ""), column)
    if any(_has_special(chunk) for chunk in column.chunks):
        quote = pc.match_substring_regex(column, _NEEDS_QUOTES)
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(column, '"', '""'), '"', "")
        column = pc.if_else(quote, quoted, column)
    return column


def _filled(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Missing cells as empty text."""
    return pc.fill_null(column, "") if column.null_count else column


def _formula_start(chunk: pa.Array) -> bool:
    """Whether some cell of the chunk starts with a formula character."""
    if not len(chunk) or chunk.buffers()[2] is None:
        return False
    offsets = _offsets(chunk)
    starts = offsets[:-1][np.diff(offsets) > 0]
    first = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[starts]
    return bool(np.isin(first, _FORMULA_BYTES).any())


def _has_special(chunk: pa.Array) -> bool:
    """Whether the chunk's text holds a byte that needs quoting."""
    data = bytes(_data(chunk))
    return any(byte in data for byte in (b",", b'"', b"\r", b"\n"))


def _offsets(chunk: pa.Array) -> np.ndarray:
    offset_type = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(chunk.buffers()[1], dtype=offset_type)
    return offsets[chunk.offset : chunk.offset + len(chunk) + 1]


def _data(chunk: pa.Array) -> memoryview:
    """The bytes of a text chunk's values, back to back (no copy)."""
    if not len(chunk) or chunk.buffers()[2] is None:
        return memoryview(b"")
    offsets = _offsets(chunk)
    return memoryview(chunk.buffers()[2])[int(offsets[0]) : int(offsets[-1])]
