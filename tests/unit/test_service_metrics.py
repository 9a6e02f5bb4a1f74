"""Prometheus helpers: a bulk observation counts exactly what one observe() per value would."""

from __future__ import annotations

import numpy as np
import prometheus_client as prom
import pytest

from service.metrics import PROBABILITY_BUCKETS, observe_many


def _histogram(registry: prom.CollectorRegistry, name: str) -> prom.Histogram:
    family = prom.Histogram(
        name, name, ["endpoint"], buckets=PROBABILITY_BUCKETS, registry=registry
    )
    return family.labels("file")


@pytest.mark.parametrize("size", [0, 5, 2000])
def test_observe_many_counts_like_observe(size: int) -> None:
    rng = np.random.default_rng(size)
    values = np.concatenate([rng.random(size) ** 4, list(PROBABILITY_BUCKETS)[: min(size, 12)]])
    registry = prom.CollectorRegistry()
    one_by_one, bulk = _histogram(registry, "one_by_one"), _histogram(registry, "bulk")
    for value in values.tolist():
        one_by_one.observe(value)
    observe_many(bulk, values)
    samples = {
        metric.name: {
            (s.name.rsplit("_", 1)[-1], s.labels.get("le")): s.value for s in metric.samples
        }
        for metric in registry.collect()
    }
    expected, got = samples["one_by_one"], samples["bulk"]
    assert got.pop(("sum", None)) == pytest.approx(expected.pop(("sum", None)))
    assert {k: v for k, v in got.items() if k[0] != "created"} == {
        k: v for k, v in expected.items() if k[0] != "created"
    }
