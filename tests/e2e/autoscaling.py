"""Driving the HPA on the kwok cluster: simulated CPU load, replica timeline, behaviour limits.

The load is simulated by kwok: a ``ClusterResourceUsage`` (kwok.x-k8s.io CRD) sets the CPU usage of
every pod in a namespace; kwok serves it on kubelet-style ``/metrics/resource`` endpoints,
metrics-server scrapes those and serves ``metrics.k8s.io``, and the real HPA controller in
kube-controller-manager reads it from there. Nothing here computes a replica count for the HPA: the
helpers only set the load, record what the controller did and check it against the
``spec.behavior`` the API server stored.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from typing import Any

from kubernetes import dynamic
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError

from tests.e2e.watch import ResourceWatch

KWOK_API = "kwok.x-k8s.io/v1alpha1"
HPA_API = "autoscaling/v2"
#: Memory each simulated container reports (metrics-server expects both CPU and memory).
SIMULATED_MEMORY = "300Mi"
#: ``base_at(period)``: the replica count ``period`` seconds before the change being checked.
BaseAt = Callable[[float], int]


class SimulatedCpuLoad:
    """The CPU usage kwok reports for ``container`` in every pod of ``namespace``.

    A cluster-scoped ``ClusterResourceUsage`` selecting the namespace, so pods that the HPA adds
    later carry the same load as the first ones (a pod-by-pod ``ResourceUsage`` would not). Other
    containers in the namespace report an idle 1m.
    """

    def __init__(self, dyn: dynamic.DynamicClient, namespace: str, container: str, cpu: str):
        self._usages = dyn.resources.get(api_version=KWOK_API, kind="ClusterResourceUsage")
        self.name = f"e2e-load-{namespace}"
        self._container = container
        self._usages.create(
            body={
                "apiVersion": KWOK_API,
                "kind": "ClusterResourceUsage",
                "metadata": {"name": self.name},
                "spec": {
                    "selector": {"matchNamespaces": [namespace]},
                    "usages": self._usages_for(cpu),
                },
            }
        )

    def _usages_for(self, cpu: str) -> list[dict[str, Any]]:
        return [
            {
                "containers": [self._container],
                "usage": {"cpu": {"value": cpu}, "memory": {"value": SIMULATED_MEMORY}},
            },
            # Entries without `containers` are the default for every other container.
            {"usage": {"cpu": {"value": "1m"}, "memory": {"value": "50Mi"}}},
        ]

    def set_cpu(self, cpu: str) -> None:
        """Change the simulated CPU usage of the container (kwok applies it at the next scrape)."""
        self._usages.patch(
            name=self.name,
            body={"spec": {"usages": self._usages_for(cpu)}},
            content_type="application/merge-patch+json",
        )

    def delete(self) -> None:
        """Remove the load object (idempotent)."""
        try:
            self._usages.delete(name=self.name)
        except DynamicApiError as exc:
            if exc.status != 404:
                raise


@dataclass(frozen=True)
class Step:
    """The Deployment's ``spec.replicas`` from ``at`` (``time.monotonic()``) on."""

    at: float
    replicas: int


class ReplicaTimeline(ResourceWatch):
    """Watches a Deployment and records every change of ``spec.replicas`` (what the HPA sets).

    A watch sees each write of the scale subresource, so no step is missed between polls.
    """

    def __init__(self, dyn: dynamic.DynamicClient, name: str, namespace: str) -> None:
        deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
        dep = deployments.get(name=name, namespace=namespace).to_dict()
        super().__init__(
            deployments,
            namespace,
            dep["metadata"]["resourceVersion"],
            field_selector=f"metadata.name={name}",
        )
        self.steps = [Step(time.monotonic(), int(dep["spec"]["replicas"]))]
        self.start()

    def on_event(self, event_type: str, obj: dict[str, Any]) -> bool:
        """Append a step when ``spec.replicas`` changed; a DELETED or ERROR event ends the watch."""
        if event_type not in {"ADDED", "MODIFIED"}:  # DELETED, ERROR (410 Gone)
            self.errors.append(f"{event_type}: {json.dumps(obj)[:300]}")
            return False
        replicas = int(obj["spec"]["replicas"])
        if replicas != self.steps[-1].replicas:
            self.steps.append(Step(time.monotonic(), replicas))
        return True

    def describe(self, origin: float) -> str:
        """The steps as ``+12.3s: 6`` lines, times relative to ``origin``."""
        return ", ".join(f"{s.at - origin:+.1f}s: {s.replicas}" for s in self.steps)


def replicas_at(steps: Sequence[Step], moment: float) -> int:
    """The replicas at ``moment`` (the first step's for moments before it)."""
    current = steps[0].replicas
    for step in steps:
        if step.at > moment:
            break
        current = step.replicas
    return current


# ---- the behaviour's limits (autoscaling/v2 HPAScalingRules) -------------------------------------
def _proposals(rules: dict[str, Any], base_at: BaseAt, sign: int) -> list[int]:
    """Replica counts each policy allows, from the count at the start of its period."""
    proposals = []
    for policy in rules.get("policies") or []:
        base = base_at(policy["periodSeconds"])
        if policy["type"] == "Pods":
            proposals.append(base + sign * policy["value"])
        else:  # Percent, rounded as the controller rounds it: towards the larger change
            change = base * policy["value"] / 100
            proposals.append(base + math.ceil(change) if sign > 0 else base - math.ceil(change))
    return proposals


def scale_up_limit(rules: dict[str, Any], base_at: BaseAt) -> int:
    """Most replicas the scale-up rules allow; ``base_at(period)`` is the count a period ago."""
    proposals = _proposals(rules, base_at, +1)
    if rules.get("selectPolicy") == "Disabled" or not proposals:
        return base_at(0)
    return min(proposals) if rules.get("selectPolicy") == "Min" else max(proposals)


def scale_down_limit(rules: dict[str, Any], base_at: BaseAt) -> int:
    """Fewest replicas the scale-down rules allow; ``base_at(period)`` is the count a period ago."""
    proposals = _proposals(rules, base_at, -1)
    if rules.get("selectPolicy") == "Disabled" or not proposals:
        return base_at(0)
    # Max (the default) picks the policy allowing the largest change: the fewest replicas.
    return max(proposals) if rules.get("selectPolicy") == "Min" else min(proposals)


def behaviour_violations(
    steps: Sequence[Step], behavior: dict[str, Any], slack: float
) -> list[str]:
    """Steps (after the first, the starting point) that went further than ``behavior`` allows.

    The controller limits a change by the replicas at the start of each policy's period (current
    replicas minus those added plus those removed within it). That count is read from the steps
    ``slack`` seconds later than exact, so that a step the controller, with its own clock, saw
    just outside the period is not held against it.
    """
    found = []
    for previous_step, step in pairwise(steps):
        previous = previous_step.replicas

        def base_at(period: float, at: float = step.at) -> int:
            return replicas_at(steps, at - period + slack)

        if step.replicas > previous:
            limit = scale_up_limit(behavior["scaleUp"], base_at)
            if step.replicas > limit:
                found.append(f"{previous} -> {step.replicas}: scale-up rules allow {limit}")
        elif step.replicas < previous:
            limit = scale_down_limit(behavior["scaleDown"], base_at)
            if step.replicas < limit:
                found.append(f"{previous} -> {step.replicas}: scale-down rules allow {limit}")
    return found


def _constant(value: int, _period: float) -> int:
    return value


def scale_down_periods(behavior: dict[str, Any], start: int, floor: int) -> int:
    """How many periods the scale-down rules need to go from ``start`` to ``floor`` replicas."""
    periods, current = 0, start
    while current > floor:
        # One step per period: at the start of each, the count is what the last step left.
        lowest = scale_down_limit(behavior["scaleDown"], partial(_constant, current))
        if lowest >= current:
            raise ValueError(f"the scale-down rules never go below {current}")
        current, periods = max(lowest, floor), periods + 1
    return periods


# ---- reading and reporting the HPA ---------------------------------------------------------------
@dataclass(frozen=True)
class Observation:
    """What the HPA's status said at ``at`` (``time.monotonic()``)."""

    at: float
    current: int | None
    desired: int | None
    utilization: int | None
    able_to_scale: str | None  # reason of the AbleToScale condition, e.g. ScaleDownStabilized
    limited: str | None  # reason of the ScalingLimited condition, e.g. TooManyReplicas

    def holds(self, replicas: int, utilization: int, tolerance: int = 2) -> bool:
        """At ``replicas`` (current and desired) reading ``utilization`` % (± ``tolerance``)."""
        return (
            self.current == self.desired == replicas
            and self.utilization is not None
            and abs(self.utilization - utilization) <= tolerance
        )


class HpaObserver:
    """Reads an HPA's status on demand and keeps every reading, for assertions on the sequence."""

    def __init__(self, dyn: dynamic.DynamicClient, name: str, namespace: str) -> None:
        self._hpas = dyn.resources.get(api_version=HPA_API, kind="HorizontalPodAutoscaler")
        self._name, self._namespace = name, namespace
        self.seen: list[Observation] = []

    def observe(self) -> Observation:
        """Read the HPA now and record the reading."""
        live = self._hpas.get(name=self._name, namespace=self._namespace).to_dict()
        status = live.get("status") or {}
        seen = Observation(
            at=time.monotonic(),
            current=status.get("currentReplicas"),
            desired=status.get("desiredReplicas"),
            utilization=cpu_utilization(live),
            able_to_scale=condition(live, "AbleToScale").get("reason"),
            limited=condition(live, "ScalingLimited").get("reason"),
        )
        self.seen.append(seen)
        return seen

    def reasons(self, start: float, end: float) -> set[str]:
        """AbleToScale reasons read in ``[start, end)``."""
        return {o.able_to_scale for o in self.seen if start <= o.at < end and o.able_to_scale}


def cpu_utilization(hpa: dict[str, Any]) -> int | None:
    """The average CPU utilisation (% of requests) the HPA last read, if any."""
    for metric in (hpa.get("status") or {}).get("currentMetrics") or []:
        resource = metric.get("resource") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu":
            value = (resource.get("current") or {}).get("averageUtilization")
            return None if value is None else int(value)
    return None


def condition(hpa: dict[str, Any], kind: str) -> dict[str, Any]:
    """The HPA status condition of type ``kind`` (empty when absent)."""
    for cond in (hpa.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


def hpa_report(dyn: dynamic.DynamicClient, name: str, namespace: str) -> str:
    """The HPA's status, conditions and events and the pods' metrics: what to read on a failure."""
    lines: list[str] = []
    try:
        hpa = dyn.resources.get(api_version=HPA_API, kind="HorizontalPodAutoscaler")
        status = hpa.get(name=name, namespace=namespace).to_dict().get("status") or {}
        lines.append(
            f"HPA {name}: current={status.get('currentReplicas')} "
            f"desired={status.get('desiredReplicas')} lastScaleTime={status.get('lastScaleTime')}"
        )
        lines.append(f"  currentMetrics: {json.dumps(status.get('currentMetrics'))}")
        lines += [
            f"  {c['type']}={c['status']} {c.get('reason')}: {c.get('message')}"
            for c in status.get("conditions") or []
        ]
        events = dyn.resources.get(api_version="v1", kind="Event").get(
            namespace=namespace, field_selector=f"involvedObject.name={name}"
        )
        lines.append("events:")
        lines += [f"  {e.lastTimestamp} x{e.count} {e.reason}: {e.message}" for e in events.items]
        pod_metrics = dyn.resources.get(api_version="metrics.k8s.io/v1beta1", kind="PodMetrics")
        lines.append("metrics.k8s.io PodMetrics:")
        lines += [
            f"  {m.metadata.name}: "
            + ", ".join(f"{c.name} cpu={c.usage.cpu} memory={c.usage.memory}" for c in m.containers)
            for m in pod_metrics.get(namespace=namespace).items
        ]
    except (ApiException, DynamicApiError) as exc:  # a report must never hide the real failure
        lines.append(f"(report incomplete: {exc!r})")
    return "\n".join(lines)
