"""Validate ``skaffold.yaml`` against skaffold's own JSON schema, offline.

The schema is the one skaffold ships in its Go module (``docs-v2/content/en/schemas/``),
fetched through the Go module proxy into the module cache by ``go mod download``; the
file's ``apiVersion`` must be the newest schema of that skaffold release.

Usage: ``python k8s/schemas/validate_skaffold.py SKAFFOLD_YAML MODULE_VERSION``
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

MODULE = "github.com/GoogleContainerTools/skaffold/v2"


def module_dir(version: str) -> Path:
    """Download skaffold's module at ``version`` (cached) and return its directory."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{version}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(json.loads(out)["Dir"])


def latest_schema_version(root: Path) -> str:
    """The ``skaffold/vX`` apiVersion that this skaffold release writes (its latest schema)."""
    source = (root / "pkg/skaffold/schema/latest/config.go").read_text()
    match = re.search(r'const Version string = "(skaffold/[^"]+)"', source)
    if not match:
        raise SystemExit("cannot find the latest schema version in skaffold's sources")
    return match.group(1)


def validate(config_path: Path, root: Path) -> list[str]:
    """Return the problems of every document in ``config_path`` (empty when valid)."""
    latest = latest_schema_version(root)
    schema_file = root / "docs-v2/content/en/schemas" / f"{latest.split('/', 1)[1]}.json"
    schema: dict[str, Any] = json.loads(schema_file.read_text())
    validator = jsonschema.Draft7Validator(schema)
    problems = []
    for index, doc in enumerate(yaml.safe_load_all(config_path.read_text())):
        where = f"{config_path} document {index + 1}"
        if doc.get("apiVersion") != latest:
            problems.append(f"{where}: apiVersion {doc.get('apiVersion')!r} is not {latest!r}")
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            # anyOf errors hide the real cause in their context: report the deepest ones.
            causes = error.context or [error]
            deepest = max(causes, key=lambda e: len(e.absolute_path))
            path = "/".join(str(p) for p in deepest.absolute_path)
            problems.append(f"{where}: at /{path}: {deepest.message}")
    return problems


def main(argv: list[str]) -> int:
    """Validate the file; print every problem; exit non-zero when there is one."""
    if len(argv) != 2:
        raise SystemExit(__doc__)
    config_path, version = Path(argv[0]), argv[1]
    problems = validate(config_path, module_dir(version))
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{config_path}: valid against skaffold {version}'s schema")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
