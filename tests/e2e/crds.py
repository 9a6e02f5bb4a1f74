"""CustomResourceDefinitions for the chart's custom kinds, built from the vendored JSON schemas.

The chart renders a ServiceMonitor (Prometheus Operator), a ScaledObject (KEDA), HTTPRoutes
(Gateway API) and a BackendTrafficPolicy (Envoy Gateway); k8s/gateway/ adds a GatewayClass, a
Gateway and an EnvoyProxy. Their schemas
are vendored in ``k8s/schemas/crds/<group>/<kind>_<version>.json`` (from the projects' Go modules,
see ``k8s/schemas/vendor_crd_schemas.py``) for kubeconform; nothing can be downloaded here, so the
e2e tests turn those schemas back into ``apiextensions.k8s.io/v1`` CRDs and apply them to the test
cluster. The API server then validates and prunes the chart's objects against the same schemas the
operators install, which is what ``helm install`` meets on a real cluster.

The vendored schemas were made strict for kubeconform (``additionalProperties: false`` on every
closed object, the envelope pinned to one apiVersion and kind, a ``$comment``). A CRD's structural
schema may not carry those (``additionalProperties`` and ``properties`` are mutually exclusive; the
API server prunes unknown fields instead), so :func:`structural` undoes exactly those changes.

Print them for a cluster of your own::

    uv run --frozen python -m tests.e2e.crds | kubectl apply -f -
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testkit.tools import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / "k8s" / "schemas" / "crds"


@dataclass(frozen=True)
class CrdNames:
    """What a CRD needs beyond the schema: names and scope, as the upstream CRD declares them."""

    plural: str
    scope: str
    short_names: tuple[str, ...] = ()
    #: ``api-approved.kubernetes.io``: the API server requires it for groups under k8s.io.
    api_approved: str = ""


#: The upstream CRDs' ``api-approved.kubernetes.io`` annotation (Gateway API v1.6.1).
GATEWAY_API_APPROVAL = "https://github.com/kubernetes-sigs/gateway-api/pull/4530"

#: (group, kind) -> names and scope, taken from the upstream CRDs the schemas were vendored from
#: (prometheus-operator v0.85.0 ``monitoring.coreos.com_servicemonitors.yaml``, KEDA v2.18.0
#: ``keda.sh_scaledobjects.yaml``, and the sources below). A vendored schema without an entry
#: here is an error.
CRD_NAMES: dict[tuple[str, str], CrdNames] = {
    ("monitoring.coreos.com", "ServiceMonitor"): CrdNames(
        plural="servicemonitors", scope="Namespaced", short_names=("smon",)
    ),
    ("monitoring.coreos.com", "PrometheusRule"): CrdNames(
        plural="prometheusrules", scope="Namespaced", short_names=("promrule",)
    ),
    ("keda.sh", "ScaledObject"): CrdNames(
        plural="scaledobjects", scope="Namespaced", short_names=("so",)
    ),
    # Gateway API v1.6.1 (config/crd/standard/) and Envoy Gateway v1.9.1 (its CRD chart).
    ("gateway.networking.k8s.io", "HTTPRoute"): CrdNames(
        plural="httproutes", scope="Namespaced", api_approved=GATEWAY_API_APPROVAL
    ),
    ("gateway.networking.k8s.io", "Gateway"): CrdNames(
        plural="gateways",
        scope="Namespaced",
        short_names=("gtw",),
        api_approved=GATEWAY_API_APPROVAL,
    ),
    ("gateway.networking.k8s.io", "GatewayClass"): CrdNames(
        plural="gatewayclasses",
        scope="Cluster",
        short_names=("gc",),
        api_approved=GATEWAY_API_APPROVAL,
    ),
    ("gateway.envoyproxy.io", "BackendTrafficPolicy"): CrdNames(
        plural="backendtrafficpolicies", scope="Namespaced", short_names=("btp",)
    ),
    ("gateway.envoyproxy.io", "EnvoyProxy"): CrdNames(
        plural="envoyproxies", scope="Namespaced", short_names=("eproxy",)
    ),
    # CloudNativePG v1.28.1 (config/crd/bases/).
    ("postgresql.cnpg.io", "Cluster"): CrdNames(plural="clusters", scope="Namespaced"),
}


def structural(node: Any) -> Any:
    """``node`` without what ``vendor_crd_schemas.make_strict`` added (a copy).

    Every ``additionalProperties: false`` next to ``properties`` goes: an upstream CRD cannot have
    had both, so each such pair was added for kubeconform. ``$comment`` is not a CRD schema field.
    """
    if isinstance(node, dict):
        result = {k: structural(v) for k, v in node.items() if k != "$comment"}
        if "properties" in result and result.get("additionalProperties") is False:
            del result["additionalProperties"]
        return result
    if isinstance(node, list):
        return [structural(item) for item in node]
    return node


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (no machine-specific prefix)."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _version_schema(path: Path) -> tuple[str, str, str, dict[str, Any]]:
    """(group, version, kind, structural schema) of one vendored schema file."""
    schema = json.loads(path.read_text())
    props = schema["properties"]
    (api_version,) = props["apiVersion"]["enum"]
    (kind,) = props["kind"]["enum"]
    group, version = api_version.split("/")
    result = structural(schema)
    # The envelope as in every CRD: the API server itself checks apiVersion, kind and metadata.
    result["properties"]["apiVersion"] = {"type": "string"}
    result["properties"]["kind"] = {"type": "string"}
    result["properties"]["metadata"] = {"type": "object"}
    return group, version, kind, result


def crd_from_schemas(paths: list[Path]) -> dict[str, Any]:
    """One CRD for the versions of a single kind in ``paths`` (one file per version).

    With one version it is the storage version; several would need an explicit choice, which no
    vendored kind needs yet, so they are rejected rather than guessed.
    """
    versions = [_version_schema(path) for path in sorted(paths)]
    kinds = {(group, kind) for group, _, kind, _ in versions}
    if len(kinds) != 1:
        raise ValueError(f"{paths}: more than one kind: {sorted(kinds)}")
    if len(versions) != 1:
        raise ValueError(f"{paths}: several versions; choose the storage version explicitly")
    ((group, kind),) = kinds
    names = CRD_NAMES.get((group, kind))
    if names is None:
        raise ValueError(f"no CrdNames for {kind}.{group}: add it to CRD_NAMES")
    crd_versions = []
    for _, version, _, schema in versions:
        entry: dict[str, Any] = {
            "name": version,
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": schema},
        }
        if "status" in schema["properties"]:  # every upstream CRD serves status as a subresource
            entry["subresources"] = {"status": {}}
        crd_versions.append(entry)
    spec_names: dict[str, Any] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": names.plural,
        "singular": kind.lower(),
    }
    if names.short_names:
        spec_names["shortNames"] = list(names.short_names)
    annotations = {"fraud-detection.e2e/schemas": ", ".join(map(_shown, paths))}
    if names.api_approved:
        annotations["api-approved.kubernetes.io"] = names.api_approved
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names.plural}.{group}", "annotations": annotations},
        "spec": {
            "group": group,
            "names": spec_names,
            "scope": names.scope,
            "versions": crd_versions,
        },
    }


def vendored_crds(schema_dir: Path = SCHEMA_DIR) -> list[dict[str, Any]]:
    """A CRD for every kind vendored under ``schema_dir`` (``<group>/<kind>_<version>.json``)."""
    by_kind: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(schema_dir.glob("*/*_*.json")):
        kind = path.stem.rsplit("_", 1)[0]
        by_kind.setdefault((path.parent.name, kind), []).append(path)
    if not by_kind:
        raise FileNotFoundError(f"no vendored CRD schemas under {schema_dir}")
    return [crd_from_schemas(paths) for paths in by_kind.values()]


def main() -> None:
    """Print every CRD as a YAML stream (for ``kubectl apply -f -``)."""
    yaml.safe_dump_all(vendored_crds(), sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
