"""Package the Helm chart for a release: ``<destination>/fraud-detection-<version>.tgz``.

``helm package`` alone keeps ``values.yaml``'s image repositories, which name the local images
that ``make image`` and ``make image-ui`` build (``fraud-scoring``, ``fraud-detection-ui``) and
that no registry has. A released chart must default to the images the release pushed, so this
copies the chart to a staging directory, writes the given repositories into the copy's
``values.yaml`` (those two lines only: comments and every other value stay as they are) and
packages the copy with version and appVersion set to the release version, which is also the
tag release.yml pushes (``type=semver,pattern={{version}}``). The chart in the repository is
never modified, so ``make helm-install`` keeps deploying the locally built images.

    uv run --frozen python scripts/package_chart.py --version v0.1.0 \\
        --api-image ghcr.io/<owner>/fraud-detection --ui-image ghcr.io/<owner>/fraud-detection-ui

(what ``make chart-package`` runs with ``CHART_API_IMAGE`` / ``CHART_UI_IMAGE``).
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART = REPO_ROOT / "charts" / "fraud-detection"
#: Top-level values sections whose ``image.repository`` a release overrides.
IMAGE_SECTIONS = ("api", "ui")
_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z][\w-]*):")
_IMAGE_KEY = re.compile(r"^  image:\s*$")
_REPOSITORY = re.compile(r"^(    repository:)\s*\S.*$")


def set_image_repository(values_text: str, section: str, repository: str) -> str:
    """``values_text`` with ``<section>.image.repository`` set to ``repository``.

    Edits the one line in place (so the helm-docs comments survive) and checks the result
    parses to the same values with only that repository changed; raises ValueError otherwise.
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9._/:-]*", repository) or repository.endswith(":"):
        raise ValueError(f"not an image repository (lower case, no tag): {repository!r}")
    lines = values_text.splitlines(keepends=True)
    current: str | None = None
    in_image = False
    replaced = 0
    for index, line in enumerate(lines):
        top = _TOP_LEVEL_KEY.match(line)
        if top:
            current, in_image = top.group(1), False
            continue
        if current != section:
            continue
        if _IMAGE_KEY.match(line):
            in_image = True
        elif re.match(r"^  [^ #]", line):  # the next key of the section (comments are allowed)
            in_image = False
        elif in_image and (match := _REPOSITORY.match(line.rstrip("\n"))):
            lines[index] = f"{match.group(1)} {repository}\n"
            replaced += 1
    if replaced != 1:
        raise ValueError(f"expected one {section}.image.repository line, found {replaced}")
    result = "".join(lines)
    expected: dict[str, Any] = copy.deepcopy(yaml.safe_load(values_text))
    expected[section]["image"]["repository"] = repository
    if yaml.safe_load(result) != expected:
        raise ValueError(f"rewriting {section}.image.repository changed other values")
    return result


def package(
    version: str,
    destination: Path,
    images: dict[str, str],
    chart: Path = CHART,
    helm: str = "helm",
) -> Path:
    """Package ``chart`` with ``images`` (section -> repository) as defaults; return the .tgz."""
    version = version.removeprefix("v")
    unknown = set(images) - set(IMAGE_SECTIONS)
    if unknown:
        raise ValueError(f"no image in values sections {sorted(unknown)}")
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chart-package-") as staging:
        staged = Path(staging) / chart.name
        shutil.copytree(chart, staged)
        values = staged / "values.yaml"
        text = values.read_text(encoding="utf-8")
        for section, repository in images.items():
            text = set_image_repository(text, section, repository)
        values.write_text(text, encoding="utf-8")
        subprocess.run(
            [
                helm,
                "package",
                str(staged),
                "--version",
                version,
                "--app-version",
                version,
                "--destination",
                str(destination),
            ],
            check=True,
            stdout=sys.stderr,  # stdout carries only the package path
        )
    return destination / f"{chart.name}-{version}.tgz"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make chart-package``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", required=True, help="release version (v1.2.3 or 1.2.3)")
    parser.add_argument("--api-image", default="", help="API image repository (empty: keep)")
    parser.add_argument("--ui-image", default="", help="UI image repository (empty: keep)")
    parser.add_argument("--destination", type=Path, default=REPO_ROOT / "build" / "chart")
    parser.add_argument("--helm", default="helm")
    args = parser.parse_args(argv)
    images = {
        section: repository
        for section, repository in (("api", args.api_image), ("ui", args.ui_image))
        if repository
    }
    print(package(args.version, args.destination, images, helm=args.helm))
    return 0


if __name__ == "__main__":
    sys.exit(main())
