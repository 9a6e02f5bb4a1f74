"""Regenerate the vendored JSON schemas of the CRD kinds the chart renders.

The CRDs come from the projects' own Go modules (downloaded through the Go module proxy into
the module cache), never from the web at check time. Each CRD version's ``openAPIV3Schema``
is written as ``crds/<group>/<kind>_<version>.json`` (kubeconform's ``-schema-location``
layout) and made strict: objects that list their properties reject unknown ones, as the
API server's structural-schema pruning would drop them silently.

Run: ``uv run --frozen python k8s/schemas/vendor_crd_schemas.py`` (needs ``go``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
#: Gateway API release: the one Envoy Gateway's go.mod requires (its CRD chart bundles it).
GATEWAY_API = "sigs.k8s.io/gateway-api@v1.6.1"
ENVOY_GATEWAY = "github.com/envoyproxy/gateway@v1.9.1"
ENVOY_GATEWAY_CRDS = "charts/gateway-helm/charts/crds/crds/generated"
#: (module@version, path of the CRD inside the module, versions to vendor). Only the versions
#: the chart and k8s/ render are vendored: one per kind, so it is also the storage version of
#: the CRD the e2e tests rebuild (tests/e2e/crds.py).
SOURCES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "github.com/prometheus-operator/prometheus-operator@v0.85.0",
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
        ("v1",),
    ),
    (
        "github.com/prometheus-operator/prometheus-operator@v0.85.0",
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
        ("v1",),
    ),
    (
        "github.com/kedacore/keda/v2@v2.18.0",
        "config/crd/bases/keda.sh_scaledobjects.yaml",
        ("v1alpha1",),
    ),
    (GATEWAY_API, "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml", ("v1",)),
    (GATEWAY_API, "config/crd/standard/gateway.networking.k8s.io_gateways.yaml", ("v1",)),
    (GATEWAY_API, "config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml", ("v1",)),
    (
        ENVOY_GATEWAY,
        f"{ENVOY_GATEWAY_CRDS}/gateway.envoyproxy.io_backendtrafficpolicies.yaml",
        ("v1alpha1",),
    ),
    (ENVOY_GATEWAY, f"{ENVOY_GATEWAY_CRDS}/gateway.envoyproxy.io_envoyproxies.yaml", ("v1alpha1",)),
    (
        "github.com/cloudnative-pg/cloudnative-pg@v1.28.1",
        "config/crd/bases/postgresql.cnpg.io_clusters.yaml",
        ("v1",),
    ),
)


def module_dir(module: str) -> Path:
    """Download ``module`` (cached) and return its directory in the module cache."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", module], check=True, capture_output=True, text=True
    ).stdout
    return Path(json.loads(out)["Dir"])


def make_strict(node: Any) -> Any:
    """Return ``node`` with ``additionalProperties: false`` on every closed object."""
    if isinstance(node, dict):
        node = {key: make_strict(value) for key, value in node.items()}
        closed = (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        )
        if closed:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [make_strict(item) for item in node]
    return node


def write_schemas(crd: dict[str, Any], source: str, versions: tuple[str, ...]) -> list[Path]:
    """Write one strict schema file per vendored version of ``crd``; return their paths."""
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    served = {version["name"] for version in crd["spec"]["versions"] if version["served"]}
    if missing := set(versions) - served:
        raise ValueError(f"{source}: {kind} does not serve {sorted(missing)}")
    written = []
    for version in crd["spec"]["versions"]:
        if version["name"] not in versions:
            continue
        schema = make_strict(version["schema"]["openAPIV3Schema"])
        props = schema.setdefault("properties", {})
        # The CRD leaves the envelope open; pin it to this kind and version.
        props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
        props["kind"] = {"type": "string", "enum": [kind]}
        props["metadata"] = {"type": "object"}
        schema["$comment"] = f"Generated from {source} by vendor_crd_schemas.py"
        path = HERE / "crds" / group / f"{kind.lower()}_{version['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def main() -> None:
    """Regenerate every vendored CRD schema."""
    for module, crd_path, versions in SOURCES:
        crd = yaml.safe_load((module_dir(module) / crd_path).read_text())
        for path in write_schemas(crd, f"{module} {crd_path}", versions):
            print(path.relative_to(HERE))


if __name__ == "__main__":
    main()
