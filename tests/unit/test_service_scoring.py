"""Scoring logic in-process: model loading, decisions, TreeSHAP reasons, file validation."""

from __future__ import annotations

import csv
import io
from typing import Any, ClassVar

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraud_contract.features import columns_from_records
from fraud_contract.schema import Transaction, example_transaction
from service.batch_response import encode_answer, score_batch_body
from service.errors import ApiError
from service.json_input import TransactionColumns, decode_batch
from service.model import LoadedModel, ModelLoadError, load_from_store, load_model
from service.scoring import Scorer, StepTimes
from service.tables import score_table
from testkit.api import load_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_tiny_model(tmp_path_factory.mktemp("bentoml"))


def _transactions(n: int) -> list[Transaction]:
    rng = np.random.default_rng(1)
    return [
        Transaction.model_validate(
            example_transaction(
                transaction_id=f"tx-{i}",
                amount=float(rng.gamma(2, 60)),
                customer_avg_amount_30d=float(rng.gamma(2, 30)),
                terminal_risk_7d=float(rng.random()),
            )
        )
        for i in range(n)
    ]


def test_probabilities_match_the_booster_and_reasons_explain_them(model: LoadedModel) -> None:
    scorer = Scorer(model, threshold=None, top_k=3)
    transactions = _transactions(40)
    results = scorer.score(transactions)
    matrix = scorer.features(transactions)
    expected = model.booster.inplace_predict(matrix, missing=np.nan)
    assert [r["transaction_id"] for r in results] == [t.transaction_id for t in transactions]
    np.testing.assert_allclose([r["fraud_probability"] for r in results], expected, atol=1e-5)
    for result in results:
        assert result["is_fraud"] == (result["fraud_probability"] >= model.card.threshold)
        assert result["model_tag"] == model.tag
        contributions = [abs(reason["contribution"]) for reason in result["reasons"]]
        assert len(contributions) == 3
        assert contributions == sorted(contributions, reverse=True)
        assert all(reason["feature"] in model.feature_names for reason in result["reasons"])


def test_top_reason_is_the_largest_treeshap_contribution(model: LoadedModel) -> None:
    scorer = Scorer(model, threshold=None, top_k=1)
    transactions = _transactions(5)
    matrix = scorer.features(transactions)
    full = model.predict(matrix, explain=True).contributions
    assert full is not None
    for row, result in enumerate(scorer.score(transactions)):
        top = int(np.argmax(np.abs(full[row])))
        assert result["reasons"][0]["feature"] == model.feature_names[top]


def test_threshold_override_and_risk_bands(model: LoadedModel) -> None:
    always = Scorer(model, threshold=0.0, top_k=0)
    results = always.score(_transactions(10))
    assert all(r["is_fraud"] and r["threshold"] == 0.0 and r["reasons"] == [] for r in results)
    lowers = [band.lower for band in model.card.risk_bands]
    names = [band.name for band in model.card.risk_bands]
    for result in results:
        index = max(i for i, lower in enumerate(lowers) if result["fraud_probability"] >= lower)
        assert result["risk_band"] == names[index]


def test_missing_aggregates_are_reported_as_null_values(model: LoadedModel) -> None:
    scorer = Scorer(model, threshold=None, top_k=len(model.feature_names))
    (result,) = scorer.score([Transaction.model_validate(example_transaction())])
    values = {reason["feature"]: reason["value"] for reason in result["reasons"]}
    assert values["customer_nb_tx_1d"] is None
    assert values["amount"] == pytest.approx(57.16)


def test_missing_model_is_one_line_naming_the_tag() -> None:
    class Missing:
        stored = None

    with pytest.raises(ModelLoadError) as info:
        load_from_store(Missing(), model_tag="fraud-detector:nope", threads=1)
    assert "fraud-detector:nope" in str(info.value)
    assert "\n" not in str(info.value)


def test_corrupt_card_is_refused(model: LoadedModel) -> None:
    class Info:
        metadata: ClassVar[dict[str, str]] = {"threshold": "not a number"}

    class Stored:
        tag = "fraud-detector:broken"
        info = Info()

    with pytest.raises(ModelLoadError, match=r"fraud-detector:broken: invalid model card"):
        load_model(Stored(), threads=1)


def test_csv_file_is_scored_and_keeps_extra_columns(model: LoadedModel) -> None:
    scorer = Scorer(model, threshold=None, top_k=3)
    records = [example_transaction(transaction_id=f"t{i}", amount=10.0 * i) for i in range(1, 6)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, [*records[0], "label"])
    writer.writeheader()
    writer.writerows({**r, "label": i % 2} for i, r in enumerate(records))
    scored = score_table(
        buffer.getvalue().encode(),
        filename="x.csv",
        content_type="text/csv",
        scorer=scorer,
        max_rows=100,
    )
    out = list(csv.DictReader(io.StringIO(scored.content.decode(), newline="")))
    assert list(out[0]) == [*records[0], "label", "fraud_probability", "is_fraud", "risk_band"]
    single = scorer.score([Transaction.model_validate(r) for r in records])
    np.testing.assert_allclose(
        [float(r["fraud_probability"]) for r in out],
        [r["fraud_probability"] for r in single],
        atol=1e-6,
    )


def test_parquet_file_round_trips(model: LoadedModel) -> None:
    scorer = Scorer(model, threshold=None, top_k=3)
    table = pa.Table.from_pylist(
        [example_transaction(amount=5.0), example_transaction(amount=500.0)]
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    scored = score_table(
        buffer.getvalue(), filename="x.parquet", content_type=None, scorer=scorer, max_rows=100
    )
    out = pq.read_table(io.BytesIO(scored.content))
    assert out.schema.field("is_fraud").type == pa.bool_()
    assert out.num_rows == 2


@pytest.mark.parametrize("reasons", ["all", "flagged", "none"])
def test_columns_score_as_the_transactions_do(model: LoadedModel, reasons: str) -> None:
    transactions = _transactions(30)
    asked = [i % 4 == 0 for i in range(30)]
    ranked = sorted(
        r["fraud_probability"] for r in Scorer(model, threshold=None, top_k=0).score(transactions)
    )
    scorer = Scorer(model, threshold=(ranked[12] + ranked[13]) / 2, top_k=3, reasons=reasons)  # type: ignore[arg-type]
    batch = TransactionColumns(
        columns_from_records(transactions), [t.transaction_id for t in transactions]
    )
    for explain in (None, asked):
        expected, _ = scorer.score_timed(transactions, explain)
        results, timings = scorer.score_columns(batch, explain)
        assert results == expected
        assert min(timings.preprocess, timings.predict, timings.postprocess) >= 0.0
    assert scorer.score_columns(TransactionColumns({}, []))[0] == []


def test_file_with_missing_columns_names_them(model: LoadedModel) -> None:
    scorer = Scorer(model, threshold=None, top_k=3)
    content = b"timestamp,amount\n2018-01-01T00:00:00,1.0\n"
    with pytest.raises(ApiError) as info:
        score_table(content, filename="x.csv", content_type=None, scorer=scorer, max_rows=10)
    assert info.value.status == 422
    assert {e["field"] for e in info.value.errors} == {"customer_id", "terminal_id"}


def test_file_with_garbage_rows_names_row_and_column(model: LoadedModel) -> None:
    scorer = Scorer(model, threshold=None, top_k=3)
    content = (
        b"timestamp,customer_id,terminal_id,amount,terminal_risk_1d\n"
        b"2018-01-01T00:00:00,C1,T1,1.0,0.1\n"
        b"not-a-date,C2,T2,abc,0.2\n"
        b"2018-01-01T00:00:00,C3,T3,-5,1.5\n"
    )
    with pytest.raises(ApiError) as info:
        score_table(content, filename="x.csv", content_type=None, scorer=scorer, max_rows=10)
    fields = {e["field"] for e in info.value.errors}
    assert {
        "rows.1.timestamp",
        "rows.1.amount",
        "rows.2.amount",
        "rows.2.terminal_risk_1d",
    } <= fields
    assert info.value.status == 422


def test_unreadable_parquet_is_a_400(model: LoadedModel) -> None:
    scorer = Scorer(model, threshold=None, top_k=3)
    with pytest.raises(ApiError) as info:
        score_table(
            b"PAR1garbage", filename="x.parquet", content_type=None, scorer=scorer, max_rows=10
        )
    assert info.value.status == 400


def test_overflowing_derived_features_still_score(model: LoadedModel) -> None:
    scorer = Scorer(model, threshold=None, top_k=3)
    extreme = example_transaction(
        amount=1e6, customer_avg_amount_30d=1e-300, customer_std_amount_30d=1e-300,
        customer_avg_amount_1d=1e-310,
    )  # fmt: skip
    (result,) = scorer.score([Transaction.model_validate(extreme)])
    assert 0.0 <= result["fraud_probability"] <= 1.0


def test_flagged_mode_explains_only_flagged_rows(model: LoadedModel) -> None:
    transactions = _transactions(30)
    every = Scorer(model, threshold=None, top_k=3).score(transactions)
    # A cutoff between two scores, not on one: the plain path's probability may differ from
    # the TreeSHAP path's in the 8th digit, and a row exactly at the cutoff could then flip.
    ranked = sorted({r["fraud_probability"] for r in every})
    cutoff = (ranked[12] + ranked[13]) / 2
    flagged = Scorer(model, threshold=cutoff, top_k=3, reasons="flagged").score(transactions)
    full = Scorer(model, threshold=cutoff, top_k=3).score(transactions)
    for lazy, exact in zip(flagged, full, strict=True):
        assert lazy["fraud_probability"] == pytest.approx(exact["fraud_probability"], abs=1e-5)
        if exact["is_fraud"]:
            assert lazy["reasons"] == exact["reasons"]
        else:
            assert lazy["reasons"] == []
    assert any(r["reasons"] for r in flagged) and any(not r["reasons"] for r in flagged)


def test_explain_flags_add_reasons_to_the_policy(model: LoadedModel) -> None:
    transactions = _transactions(12)
    asked = [i % 3 == 0 for i in range(12)]
    never = Scorer(model, threshold=1.0, top_k=3, reasons="none")
    full = Scorer(model, threshold=1.0, top_k=3).score(transactions)
    results, timings = never.score_timed(transactions, asked)
    for want, lazy, exact in zip(asked, results, full, strict=True):
        assert lazy["reasons"] == (exact["reasons"] if want else [])
    assert min(timings.preprocess, timings.predict, timings.postprocess) >= 0.0

    every = Scorer(model, threshold=0.0, top_k=3, reasons="flagged")  # everything is flagged
    assert all(len(r["reasons"]) == 3 for r in every.score(transactions, [False] * 12))
    off = Scorer(model, threshold=0.0, top_k=0, reasons="flagged")
    assert all(r["reasons"] == [] for r in off.score(transactions, [True] * 12))


# ---- the batch answer, written column-wise --------------------------------------------------


def _columns_of(transactions: list[Transaction], ids: list[str | None]) -> TransactionColumns:
    return TransactionColumns(columns_from_records(transactions), ids)


@pytest.mark.parametrize("reasons", ["all", "flagged", "none"])
def test_the_batch_answer_is_byte_for_byte_orjsons(model: LoadedModel, reasons: str) -> None:
    transactions = _transactions(30)
    ranked = sorted(
        r["fraud_probability"] for r in Scorer(model, threshold=None, top_k=0).score(transactions)
    )
    scorer = Scorer(model, threshold=(ranked[12] + ranked[13]) / 2, top_k=3, reasons=reasons)  # type: ignore[arg-type]
    # None, commas and quotes in ids: the answer must not depend on what the ids hold.
    ids: list[str | None] = [f"tx-{i}" for i in range(30)]
    ids[3], ids[4], ids[5] = None, "a,b", 'q"'
    batch = _columns_of(transactions, ids)
    for explain in (None, [i % 4 == 0 for i in range(30)]):
        results, _ = scorer.score_columns(batch, explain)
        scored, times = scorer.score_columns_rows(batch, explain)
        expected = orjson.dumps({"model_tag": scorer.model_tag, "results": results})
        got = encode_answer(scored, threshold=scorer.threshold, model_tag=scorer.model_tag)
        assert got == expected
        assert min(times.preprocess, times.predict, times.postprocess) >= 0.0
    empty, _ = scorer.score_columns_rows(TransactionColumns({}, []))
    assert encode_answer(empty, threshold=0.5, model_tag="m:1") == orjson.dumps(
        {"model_tag": "m:1", "results": []}
    )


class _RecordedMetrics:
    """The three observations the batch endpoint makes, kept for the test."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def observe_batch(self, endpoint: str, rows: int) -> None:
        self.calls.append(("batch", (endpoint, rows)))

    def observe_scores(
        self, endpoint: str, probabilities: np.ndarray, is_fraud: np.ndarray
    ) -> None:
        self.calls.append(("scores", (endpoint, list(probabilities), list(is_fraud))))

    def observe_steps(self, endpoint: str, timings: StepTimes) -> None:
        self.calls.append(("steps", endpoint))


@pytest.mark.parametrize("explain", [False, True])
def test_a_batch_body_is_answered_as_the_route_did(model: LoadedModel, explain: bool) -> None:
    transactions = _transactions(12)
    rows = [t.model_dump(mode="json", exclude_none=True) for t in transactions]
    body = orjson.dumps({"transactions": rows})
    scorer = Scorer(model, threshold=None, top_k=3, reasons="flagged")
    metrics = _RecordedMetrics()
    answer = score_batch_body(scorer, metrics, body, explain)
    flags = [True] * 12 if explain else None
    results, _ = scorer.score_columns(decode_batch(body), flags)
    assert answer == orjson.dumps({"model_tag": scorer.model_tag, "results": results})
    if explain:
        assert all(len(r["reasons"]) == 3 for r in orjson.loads(answer)["results"])
    assert metrics.calls[0] == ("batch", ("batch", 12))
    assert metrics.calls[1] == (
        "scores",
        ("batch", [r["fraud_probability"] for r in results], [r["is_fraud"] for r in results]),
    )
    assert metrics.calls[2] == ("steps", "batch")


def test_a_bad_batch_body_names_the_field(model: LoadedModel) -> None:
    rows = [t.model_dump(mode="json", exclude_none=True) for t in _transactions(4)]
    rows[2]["amount"] = -1
    metrics = _RecordedMetrics()
    with pytest.raises(ApiError) as caught:
        score_batch_body(
            Scorer(model, threshold=None, top_k=3),
            metrics,
            orjson.dumps({"transactions": rows}),
            False,
        )
    assert (caught.value.status, caught.value.errors[0]["field"]) == (422, "transactions.2.amount")
    assert metrics.calls == []
