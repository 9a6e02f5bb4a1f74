"""``POST /v1/score/batch`` without the HTTP: body in, answer bytes out, metrics recorded.

The answer is written column-wise: orjson encodes each column once (ids, probabilities) and
every result is one template filled with its pieces, so the bytes are exactly what
``orjson.dumps({"model_tag": ..., "results": [result dicts]})`` gives, without building a dict
per row. Stateless (no history, no ledger): the stateful path needs the transactions
themselves (:func:`service.json_input.decode_transactions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np
import orjson

from service.json_input import decode_batch

if TYPE_CHECKING:
    from service.scoring import ScoredRows, Scorer, StepTimes

_ENDPOINT: Final = "batch"
_NO_REASONS: Final = b"[]"
_FLAGS: Final = (b"false", b"true")


class BatchMetrics(Protocol):
    """What the endpoint records (:class:`service.metrics.ServiceMetrics` has it)."""

    def observe_batch(self, endpoint: str, rows: int) -> None: ...

    def observe_scores(
        self, endpoint: str, probabilities: np.ndarray, is_fraud: np.ndarray
    ) -> None: ...

    def observe_steps(self, endpoint: str, timings: StepTimes) -> None: ...


def score_batch_body(scorer: Scorer, metrics: BatchMetrics, body: bytes, explain: bool) -> bytes:
    """Decode, score and encode one batch body; record its rows, scores and step times.

    ``explain`` asks for reasons on every result (``?explain=true``); otherwise the scorer's
    reasons policy decides.

    Raises:
        ApiError: as :func:`service.json_input.decode_batch` (400/422 naming the field).
    """
    batch = decode_batch(body)
    flags = np.ones(len(batch), dtype=bool) if explain else None
    scored, times = scorer.score_columns_rows(batch, flags)
    answer = encode_answer(scored, threshold=scorer.threshold, model_tag=scorer.model_tag)
    metrics.observe_batch(_ENDPOINT, len(scored))
    metrics.observe_scores(_ENDPOINT, scored.decisions.probabilities, scored.decisions.is_fraud)
    metrics.observe_steps(_ENDPOINT, times)
    return answer


def encode_answer(scored: ScoredRows, *, threshold: float, model_tag: str) -> bytes:
    """``{"model_tag": ..., "results": [...]}`` as orjson writes it for the result dicts."""
    n_rows = len(scored)
    tag = orjson.dumps(model_tag)
    head = b'{"model_tag":' + tag + b',"results":['
    if not n_rows:
        return head + b"]}"
    template = (
        b'{"transaction_id":%b,"fraud_probability":%b,"is_fraud":%b,"risk_band":%b,"threshold":'
        + orjson.dumps(threshold).replace(b"%", b"%%")
        + b',"model_tag":'
        + tag.replace(b"%", b"%%")
        + b',"reasons":%b}'
    )
    decisions = scored.decisions
    bands = [orjson.dumps(name) for name in decisions.band_names.tolist()]
    rows = map(
        template.__mod__,
        zip(
            _items(orjson.dumps(list(scored.transaction_ids)), n_rows, scored.transaction_ids),
            _items(orjson.dumps(decisions.probabilities.tolist()), n_rows, None),
            [_FLAGS[flag] for flag in decisions.is_fraud.tolist()],
            [bands[index] for index in decisions.band_index.tolist()],
            [orjson.dumps(reasons) if reasons else _NO_REASONS for reasons in scored.reasons],
            strict=True,
        ),
    )
    return head + b",".join(rows) + b"]}"


def _items(encoded: bytes, n_items: int, values: Sequence[str | None] | None) -> list[bytes]:
    """The items of an encoded JSON array of scalars, each as orjson wrote it.

    Splitting at ',' is exact when no item holds one (numbers, null and the contract's
    identifiers never do); otherwise each value is encoded on its own.
    """
    items = encoded[1:-1].split(b",")
    if len(items) == n_items:
        return items
    if values is None:
        raise ValueError("an encoded number holds a ','")
    return [orjson.dumps(value) for value in values]
