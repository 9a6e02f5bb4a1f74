"""File jobs are cooperative: a cancelled job (or one past its deadline) stops within one chunk.

The engine works in chunks (CSV blocks, Parquet row groups, slices of ``CHUNK_ROWS`` rows)
and looks at the job's token in between. These tests assert on the rows each stage finished
and where the job stopped, never on wall time.
"""

from __future__ import annotations

import io
import itertools
import threading
import time
from typing import Any

import anyio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraud_contract.api import API_KEY_HEADER, SCORE_FILE_PATH
from fraud_contract.features import compute_features
from service import tables
from service.errors import ApiError
from service.logs import LOGGER_NAME
from service.model import LoadedModel
from service.scoring import Scorer
from service.table_limits import CHUNK_ROWS, AbandonedError, FileJob
from service.tables import model_columns, score_table
from testkit.api import load_tiny_model
from tests.unit.test_service_app import KEY, RecordingMetrics, client_for, front_app

#: Four chunks of rows: enough for every stage to have a chunk after the first.
ROWS = 4 * CHUNK_ROWS
HEADER = "transaction_id,timestamp,customer_id,terminal_id,amount,note"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_tiny_model(tmp_path_factory.mktemp("bentoml"))


@pytest.fixture(scope="module")
def scorer(model: LoadedModel) -> Scorer:
    return Scorer(model, threshold=None, top_k=0)


def _lines(rows: int) -> list[str]:
    return [
        f"tx-{i},2018-04-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:05,C{i % 500},T{i % 90},"
        f"{10 + (i % 997) * 0.37:.2f},n{i % 7}"
        for i in range(rows)
    ]


@pytest.fixture(scope="module")
def large_csv() -> bytes:
    return ("\n".join([HEADER, *_lines(ROWS)]) + "\n").encode()


@pytest.fixture(scope="module")
def large_parquet() -> bytes:
    i = np.arange(ROWS)
    table = pa.table(
        {
            "transaction_id": [f"tx-{n}" for n in range(ROWS)],
            "timestamp": pa.array(np.datetime64("2018-04-01T00:00:00") + i.astype("m8[s]")),
            "customer_id": [f"C{n % 500}" for n in range(ROWS)],
            "terminal_id": [f"T{n % 90}" for n in range(ROWS)],
            "amount": 10.0 + (i % 997) * 0.37,
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=CHUNK_ROWS)
    return sink.getvalue()


class CancelAfter(FileJob):
    """A job whose request goes away as soon as ``stage`` has finished its first chunk."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def done(self, stage: str, rows: int) -> None:
        super().done(stage, rows)
        if stage == self.stage:
            self.cancel()


class CountingScorer:
    """The tiny model's scorer, counting the rows sent to the model."""

    def __init__(self, scorer: Scorer) -> None:
        self.inner = scorer
        self.feature_names = scorer.feature_names
        self.model = self
        self.predicted = 0

    def predict(self, matrix: np.ndarray, *, explain: bool) -> Any:
        self.predicted += len(matrix)
        return self.inner.model.predict(matrix, explain=explain)

    def decide(self, probabilities: np.ndarray) -> Any:
        return self.inner.decide(probabilities)


def _score(content: bytes, filename: str, scorer: Any, job: FileJob | None) -> tables.ScoredTable:
    return score_table(
        content,
        filename=filename,
        content_type=None,
        scorer=scorer,
        max_rows=ROWS,
        job=job,
    )


# Stage finished first -> (where the job stops, stages that never started).
_CSV_STAGES = {
    "read": ("reading", {"checked", "scored", "written"}),
    "checked": ("checking", {"scored", "written"}),
    "scored": ("scoring", {"written"}),
    "written": ("writing", set()),
}


@pytest.mark.parametrize("stage", list(_CSV_STAGES))
def test_a_cancelled_csv_job_stops_within_one_chunk(
    scorer: Scorer, large_csv: bytes, stage: str
) -> None:
    job = CancelAfter(stage)
    counting = CountingScorer(scorer)
    with pytest.raises(AbandonedError) as stopped:
        _score(large_csv, "x.csv", counting, job)
    where, never = _CSV_STAGES[stage]
    assert stopped.value.stage == where
    assert job.cancelled
    assert not never & set(job.rows), job.rows
    if stage == "read":  # one parser block: some rows, not all
        assert 0 < job.rows["read"] < ROWS
    else:  # every stage before it ran to the end, it did one chunk
        assert job.rows[stage] == CHUNK_ROWS
        assert job.rows["read"] == ROWS
    assert counting.predicted == (ROWS if stage == "written" else job.rows.get("scored", 0))


@pytest.mark.parametrize("stage", ["read", "checked", "scored"])
def test_a_cancelled_parquet_job_stops_within_one_row_group_or_chunk(
    scorer: Scorer, large_parquet: bytes, stage: str
) -> None:
    job = CancelAfter(stage)
    with pytest.raises(AbandonedError):
        _score(large_parquet, "x.parquet", CountingScorer(scorer), job)
    assert job.rows[stage] == CHUNK_ROWS  # one row group read, or one slice checked/scored
    later = ["read", "checked", "scored", "written"]
    assert not set(later[later.index(stage) + 1 :]) & set(job.rows), job.rows


def test_a_job_past_its_deadline_stops_at_the_next_check(scorer: Scorer, large_csv: bytes) -> None:
    ticks = itertools.count()  # one tick per look at the clock
    job = FileJob(deadline_s=2.5, clock=lambda: float(next(ticks)))
    with pytest.raises(AbandonedError) as stopped:
        _score(large_csv, "x.csv", CountingScorer(scorer), job)
    # Created at tick 0; checks at ticks 1 and 2 pass, the one at tick 3 stops the job.
    assert stopped.value.stage == "reading"
    assert job.cancelled
    assert 0 < job.rows["read"] < ROWS
    assert set(job.rows) == {"read"}


def test_a_job_that_is_never_cancelled_scores_like_one_pass(
    scorer: Scorer, large_csv: bytes
) -> None:
    job = FileJob(deadline_s=3600)
    scored = _score(large_csv, "x.csv", scorer, job)
    assert job.rows == {"read": ROWS, "checked": ROWS, "scored": ROWS, "written": ROWS}
    assert not job.cancelled
    # Scored in chunks, the probabilities are those of one model call on the whole file.
    columns = model_columns(tables.read_csv(large_csv, tables.FileLimits()).table, max_rows=ROWS)
    whole = scorer.model.predict(compute_features(columns, scorer.feature_names), explain=False)
    np.testing.assert_array_equal(scored.probabilities, whole.probabilities)
    assert scored.content.count(b"\n") == ROWS + 1


def test_the_cell_report_does_not_depend_on_chunks(scorer: Scorer) -> None:
    """Bad cells are listed column by column over the whole file, as in one pass."""
    lines = _lines(CHUNK_ROWS + 10)
    lines[1] = lines[1].replace(",10.37,", ",-1,")  # amount, first chunk
    late = CHUNK_ROWS + 5
    lines[late] = lines[late].replace("2018-04-", "2018-13-", 1)  # timestamp, second chunk
    content = ("\n".join([HEADER, *lines]) + "\n").encode()
    with pytest.raises(ApiError) as caught:
        _score(content, "x.csv", scorer, None)
    fields = [error["field"] for error in caught.value.errors]
    assert fields == [f"rows.{late}.timestamp", "rows.1.amount"]
    assert caught.value.message.startswith("2 invalid cells")


# ---- through the route ----------------------------------------------------------------------


class HeldJob(FileJob):
    """A job held at its first check until the test lets it go (the request times out)."""

    entered = threading.Event()
    release = threading.Event()
    made: list[HeldJob] = []  # noqa: RUF012 (one test's record)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        HeldJob.made.append(self)

    def check(self, stage: str) -> None:
        if not HeldJob.entered.is_set():
            HeldJob.entered.set()
            HeldJob.release.wait(60)
        super().check(stage)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_504_cancels_the_file_job_and_it_says_so(
    model: LoadedModel,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    anyio_backend: str,
) -> None:
    monkeypatch.setattr(tables, "FileJob", HeldJob)
    HeldJob.entered.clear()
    HeldJob.release.clear()
    HeldJob.made.clear()
    metrics = RecordingMetrics()
    app = front_app(model, metrics, api_keys=[KEY], request_timeout_s=0.5)
    upload = ("\n".join([HEADER, *_lines(10)]) + "\n").encode()
    with caplog.at_level("WARNING", logger=LOGGER_NAME):
        try:
            async with client_for(app, **{API_KEY_HEADER: KEY}) as client:
                response = await client.post(
                    SCORE_FILE_PATH, files={"file": ("big.csv", upload, "text/csv")}
                )
            assert response.status_code == 504, response.text
            assert HeldJob.entered.is_set()  # the job was running when the timeout fired
            (job,) = HeldJob.made
            assert job.cancelled  # the request's end reached the worker thread
        finally:
            HeldJob.release.set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _abandoned(caplog):
            await anyio.sleep(0.01)
    (record,) = _abandoned(caplog)
    assert record.stage == "reading"
    assert record.rows_done == {}
    assert (SCORE_FILE_PATH, 504) in metrics.requests
    assert ("file", "timeout") in metrics.rejections


def _abandoned(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [r for r in caplog.records if r.getMessage() == "file job abandoned"]
