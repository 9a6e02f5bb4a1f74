"""File bombs are refused before they are decoded, fast and in bounded memory; scored CSVs
parse back to the same rows; the serving path never imports pandas.

The bombs are the ones of the security review: a 13 KB Parquet file of 50,000 rows holding
one 20 KB string (1 GB decoded) and an 8.9 MB CSV whose header names 10^6 columns. Each is
scored in a fresh interpreter so that its peak RSS (``VmHWM``) is the file's own cost.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraud_contract.schema import example_transaction
from service.errors import ApiError
from service.scoring import Scorer
from service.table_limits import FileLimits
from service.tables import score_table
from testkit.api import load_tiny_model
from testkit.tools import REPO_ROOT

#: Peak RSS allowed for scoring (refusing) one bomb in a fresh interpreter, in MiB: the
#: interpreter with numpy and pyarrow loaded is about 100 MiB of it.
RSS_BOUND_MIB = 250
SECONDS_BOUND = 2.0


def parquet_bomb() -> bytes:
    sink = io.BytesIO()
    cell = "x" * 20_000
    rows = 50_000
    table = pa.table(
        {
            "transaction_id": pa.array([None] * rows, pa.string()),
            "timestamp": ["2018-04-01T10:00:00"] * rows,
            "customer_id": ["C1"] * rows,
            "terminal_id": ["T1"] * rows,
            "amount": [1.0] * rows,
            # As the file stores it: one dictionary entry, one index per row.
            "note": pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), [cell]),
        }
    )
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def wide_csv() -> bytes:
    header = ",".join(f"col{i}" for i in range(1_000_000))
    return f"{header}\n{','.join('1' for _ in range(10))}\n".encode()


_CHILD = """
import io, json, sys, time
sys.modules["pandas"] = None  # importing pandas now fails: the serving path must not need it
from service.errors import ApiError
from service.table_limits import FileLimits
from service.tables import score_table

content = sys.stdin.buffer.read()
limits = FileLimits(**json.loads(sys.argv[2]))
started = time.perf_counter()
try:
    score_table(
        content, filename=sys.argv[1], content_type=None, scorer=None, max_rows=2_000_000,
        limits=limits,
    )
    answer = {"status": 200}
except ApiError as exc:
    answer = {"status": exc.status, "code": exc.code, "errors": exc.errors}
answer["seconds"] = time.perf_counter() - started
# VmHWM: this process's own peak (ru_maxrss would include the parent's, kept across exec).
with open("/proc/self/status") as status:
    peak = next(line for line in status if line.startswith("VmHWM:"))
answer["rss_mib"] = int(peak.split()[1]) / 1024
print(json.dumps(answer))
"""


def _refuse_in_child(content: bytes, filename: str, **limits: int) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), filename, json.dumps(limits)],
        input=content,
        capture_output=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("limits", "field"),
    [({}, "max_cell_bytes"), ({"max_cell_bytes": 64 * 1024}, "max_decoded_bytes")],
    ids=["cell-limit", "decoded-limit"],
)
def test_the_parquet_dictionary_bomb_is_refused_fast_in_bounded_memory(
    limits: dict[str, int], field: str
) -> None:
    bomb = parquet_bomb()
    assert len(bomb) < 20_000  # the attack: a tiny upload
    answer = _refuse_in_child(bomb, "bomb.parquet", **limits)
    assert answer["status"] == 413
    assert answer["errors"] == [{"field": field, "reason": answer["errors"][0]["reason"]}]  # type: ignore[index]
    assert answer["seconds"] < SECONDS_BOUND  # type: ignore[operator]
    assert answer["rss_mib"] < RSS_BOUND_MIB  # type: ignore[operator]


@pytest.mark.parametrize(
    ("limits", "field"),
    [({}, "max_header_bytes"), ({"max_header_bytes": 16 * 1024 * 1024}, "max_columns")],
    ids=["header-limit", "column-limit"],
)
def test_the_wide_csv_is_refused_fast_in_bounded_memory(limits: dict[str, int], field: str) -> None:
    content = wide_csv()
    assert len(content) > 8_000_000
    answer = _refuse_in_child(content, "wide.csv", **limits)
    assert answer["status"] == 413
    assert answer["errors"][0]["field"] == field  # type: ignore[index]
    assert answer["seconds"] < SECONDS_BOUND  # type: ignore[operator]
    assert answer["rss_mib"] < RSS_BOUND_MIB  # type: ignore[operator]


def test_a_long_cell_in_a_csv_is_refused_naming_the_limit() -> None:
    header = "transaction_id,timestamp,customer_id,terminal_id,amount,note"
    cell = "x\n" * 10_000  # short lines, one long cell
    long_line = f't1,2018-04-01T10:00:00,C1,T1,1,"{cell}"'
    with pytest.raises(ApiError) as caught:
        score_table(
            f"{header}\n{long_line}\n".encode(),
            filename="x.csv",
            content_type=None,
            scorer=None,  # type: ignore[arg-type]
            max_rows=10,
            limits=FileLimits(max_cell_bytes=1000),
        )
    assert (caught.value.status, caught.value.errors[0]["field"]) == (413, "max_cell_bytes")


def test_a_parquet_file_with_too_many_rows_is_refused_from_its_footer() -> None:
    sink = io.BytesIO()
    pq.write_table(pa.table({"amount": [1.0] * 100}), sink)
    with pytest.raises(ApiError) as caught:
        score_table(
            sink.getvalue(),
            filename="x.parquet",
            content_type=None,
            scorer=None,  # type: ignore[arg-type]
            max_rows=99,
        )
    assert (caught.value.status, caught.value.code) == (413, "too_many_rows")


_WITHOUT_PANDAS = """
import io, sys, types
import numpy as np

class NoPandas:  # as if pandas were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pandas":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoPandas())
import pyarrow as pa, pyarrow.parquet as pq, xgboost
from fraud_contract.features import MODEL_FEATURES, compute_features
from service.json_input import decode_batch, decode_transaction
from service.scoring import Decisions
from service.tables import score_table

class Model:
    def predict(self, matrix, explain):
        return types.SimpleNamespace(probabilities=np.full(len(matrix), 0.25))

class StubScorer:
    feature_names, model = MODEL_FEATURES, Model()
    def decide(self, p):
        return Decisions(p, p >= 0.5, np.zeros(len(p), int), np.array(["low"], dtype=object))

row = '{"timestamp": "2018-04-01T10:00:00", "customer_id": "C1", "terminal_id": "T1", "amount": 3}'
compute_features(decode_batch(('{"transactions": [%s]}' % row).encode(), max_rows=9).columns)
decode_transaction(row.encode())
csv = b"timestamp,customer_id,terminal_id,amount,note\\n2018-04-01T10:00:00,C1,T1,3,=x\\n"
score_table(csv, filename="x.csv", content_type=None, scorer=StubScorer(), max_rows=9)
sink = io.BytesIO()
table = pa.table({
    "timestamp": ["2018-04-01T10:00:00"], "customer_id": ["C1"], "terminal_id": ["T1"],
    "amount": [3.0],
})
pq.write_table(table, sink)
score_table(
    sink.getvalue(), filename="x.parquet", content_type=None, scorer=StubScorer(), max_rows=9
)
print("ok")
"""


def test_the_serving_path_runs_without_pandas() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PANDAS],
        capture_output=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == "ok"


# ---- scored CSVs parse back -----------------------------------------------------------------


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    return Scorer(load_tiny_model(tmp_path_factory.mktemp("bentoml")), threshold=None, top_k=0)


_FREE_TEXT = st.text(
    st.sampled_from(list("ab ,\"'=+-@\t\r\n;é1.")) | st.characters(codec="utf-8"), max_size=12
)
_ROW = st.fixed_dictionaries(
    {
        "transaction_id": st.one_of(
            st.just(""), st.from_regex(r"[A-Za-z0-9_.:-]{1,12}", fullmatch=True)
        ),
        "amount": st.floats(0, 1e6, allow_nan=False).map(repr) | st.integers(0, 10**6).map(str),
        "note": _FREE_TEXT,
        "other": _FREE_TEXT,
    }
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(_ROW, min_size=1, max_size=12),
    terminator=st.sampled_from(["\n", "\r\n"]),
    neutralise=st.booleans(),
)
def test_any_accepted_csv_scores_to_the_same_rows_on_the_right_ids(
    scorer: Scorer, rows: list[dict[str, str]], terminator: str, neutralise: bool
) -> None:
    base = example_transaction()
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=terminator, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(
        ["note", "transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "other"]
    )
    for row in rows:
        writer.writerow(
            [
                row["note"],
                row["transaction_id"],
                base["timestamp"],
                base["customer_id"],
                base["terminal_id"],
                row["amount"],
                row["other"],
            ]
        )
    try:
        scored = score_table(
            buffer.getvalue().encode(),
            filename="x.csv",
            content_type=None,
            scorer=scorer,
            max_rows=100,
            neutralise_formulas=neutralise,
        )
    except ApiError as exc:  # refused (e.g. a note that is blank lines only): nothing to check
        assert exc.status in (400, 422), exc.body()
        return
    back = list(csv.reader(io.StringIO(scored.content.decode(), newline="")))
    header, body = back[0], back[1:]
    assert header[-3:] == ["fraud_probability", "is_fraud", "risk_band"]
    assert len(body) == scored.rows
    assert all(len(line) == len(header) for line in body)
    for line, probability in zip(body, scored.probabilities.tolist(), strict=True):
        assert float(line[header.index("fraud_probability")]) == probability
    # What a standard reader reads from the upload (Python's csv writer leaves a lone CR
    # unquoted with LF line ends: those bytes then say an empty cell, not a CR).
    try:
        sent = [r for r in csv.reader(io.StringIO(buffer.getvalue(), newline="")) if r][1:]
    except csv.Error:  # bytes Python's reader refuses: only the output is checked
        return
    assert [line[1] for line in body] == [r[1] for r in sent]
    for line, row in zip(body, sent, strict=True):
        for position in (0, 6):
            assert line[position] in (row[position], f"'{row[position]}")
            assert (line[position] != row[position]) == (neutralise and _formula(row[position]))


def _formula(cell: str) -> bool:
    number = re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", cell)
    return bool(cell) and cell[0] in "=+-@\t\r" and number is None
