"""Build the fraud-scoring Bento and its OCI image; print the image reference.

Steps: export the pinned serving requirements from ``uv.lock`` -> ``bentoml build`` (packs the
service, the shared contract and the model) -> ``bentoml containerize`` with the first
available backend (docker with a reachable daemon, then buildah, then podman; ``BACKEND=...``
or ``--backend`` overrides). The image is tagged ``fraud-scoring:<bento version>`` and
``fraud-scoring:latest`` and labelled with the git revision, the model tag and a digest of
everything that went into it; when an image with the same digest already exists it is reused
instead of rebuilt (``--no-reuse`` forces a build).

CI tooling only: ``FRAUD_CONTAINER_BUILD_OPTS`` (default empty) adds space-separated
``bentoml containerize --opt`` values for machine-specific build flags. Users never need it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = REPO_ROOT / "build" / "image"
REQUIREMENTS = BUILD_DIR / "requirements.txt"
DEFAULT_IMAGE_NAME = "fraud-scoring"
BACKENDS = ("docker", "buildah", "podman")
DIGEST_LABEL = "io.fraud-detection.inputs-digest"
MODEL_LABEL = "io.fraud-detection.model-tag"
BENTO_LABEL = "io.fraud-detection.bento-tag"
#: Packages the image must never contain: the GPU build of XGBoost and NVIDIA CUDA wheels
#: (hundreds of MB); the serving runtime depends on ``xgboost-cpu`` instead.
FORBIDDEN_PREFIXES = ("xgboost==", "nvidia-cu", "nvidia-nccl", "nvidia-cublas")
#: Runtime dependencies the service never imports, left out of the image with their exclusive
#: dependencies: scikit-learn (training metrics only; ~36 MB with joblib and threadpoolctl).
#: The container smoke test proves the service imports and scores without them.
PRUNED_PACKAGES = ("scikit-learn",)


@dataclass(frozen=True)
class BuildResult:
    """What a build produced (also written to ``build/image/build.json``)."""

    image: str
    bento_tag: str
    backend: str
    model_tag: str
    git_revision: str
    inputs_digest: str
    reused: bool
    containerfile: str


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the final image reference)."""
    print(f"[build_image] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` from the repository root, raising with its output when it fails."""
    log("$ " + shlex.join(cmd))
    return subprocess.run(cmd, cwd=REPO_ROOT, check=True, text=True, **kwargs)  # type: ignore[call-overload]


def backend_available(name: str) -> bool:
    """True when ``name`` can build: installed and, for docker, with a reachable daemon."""
    binary = shutil.which(name)
    if binary is None:
        return False
    if name != "docker":
        return True
    probe = subprocess.run(
        [binary, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return probe.returncode == 0 and bool(probe.stdout.strip())


def detect_backend(preferred: str | None) -> str:
    """The backend to use: ``preferred`` if given (must be available), else the first found."""
    if preferred:
        if preferred not in BACKENDS:
            raise SystemExit(f"unknown BACKEND {preferred!r}; choose one of {', '.join(BACKENDS)}")
        if not backend_available(preferred):
            raise SystemExit(f"BACKEND={preferred} is not available on this machine")
        return preferred
    for name in BACKENDS:
        if backend_available(name):
            return name
    raise SystemExit(
        "no container build backend found: install Docker, or podman/buildah "
        "(`make system-deps` on Debian)"
    )


def export_requirements(target: Path = REQUIREMENTS) -> Path:
    """Write the serving runtime's exact versions from ``uv.lock`` to ``target``."""
    uv = shutil.which("uv") or "uv"
    exported = run(
        [
            uv,
            "export",
            "--frozen",
            "--no-default-groups",
            "--no-emit-project",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
            "--format",
            "requirements-txt",
            *(arg for name in PRUNED_PACKAGES for arg in ("--prune", name)),
        ],
        capture_output=True,
    ).stdout
    lines = [line for line in exported.splitlines() if line.strip() and not line.startswith("#")]
    forbidden = [line for line in lines if line.lower().startswith(FORBIDDEN_PREFIXES)]
    if forbidden:
        raise SystemExit(f"GPU packages would enter the image: {forbidden}")
    if not any(line.startswith("xgboost-cpu==") for line in lines):
        raise SystemExit("xgboost-cpu is missing from the serving requirements")
    target.parent.mkdir(parents=True, exist_ok=True)
    body = "# Generated by scripts/build_image.py from uv.lock. Do not edit.\n"
    target.write_text(body + "\n".join(lines) + "\n")
    return target


def git_revision() -> str:
    """The commit being built (``unknown`` outside a git checkout)."""
    probe = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    return probe.stdout.strip() if probe.returncode == 0 else "unknown"


def bentoml_command() -> list[str]:
    """The BentoML CLI of this environment."""
    return [sys.executable, "-m", "bentoml"]


def build_bento(labels: dict[str, str]) -> str:
    """``bentoml build`` with the repository's bentofile; return the new Bento tag."""
    cmd = [*bentoml_command(), "build", "--output", "tag", "-f", "bentofile.yaml"]
    for key, value in labels.items():
        cmd += ["--label", f"{key}={value}"]
    output = run([*cmd, "."], capture_output=True).stdout
    tags = [
        line.split("__tag__:", 1)[1].strip() for line in output.splitlines() if "__tag__:" in line
    ]
    if not tags:
        raise SystemExit(f"bentoml build printed no tag:\n{output}")
    return tags[-1]


def bento_path(bento_tag: str) -> Path:
    """Directory of ``bento_tag`` in the Bento store (``$BENTOML_HOME/bentos``)."""
    import bentoml  # noqa: PLC0415  (heavy; only needed once the Bento exists)

    return Path(bentoml.bentos.get(bento_tag).path)


def model_tags(bento_dir: Path) -> list[str]:
    """Tags of the models packed into the Bento (from its ``bento.yaml``)."""
    import yaml  # noqa: PLC0415  (bentoml's dependency; imported only when building)

    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    declared = list(info.get("models") or [])
    for service in info.get("services") or []:
        declared += service.get("models") or []
    return sorted({str(model["tag"]) for model in declared})


def inputs_digest(bento_dir: Path, models: list[str]) -> str:
    """SHA-256 over everything that shapes the image: Bento files (not its metadata) + models."""
    digest = hashlib.sha256()
    for path in sorted(bento_dir.rglob("*")):
        relative = path.relative_to(bento_dir).as_posix()
        if not path.is_file() or relative in {"bento.yaml", "README.md"}:
            continue
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    for tag in models:
        digest.update(tag.encode() + b"\0")
    return digest.hexdigest()


def runtime_for(backend: str) -> str:
    """CLI listing the images ``backend`` builds (buildah builds into podman's store)."""
    return "docker" if backend == "docker" else "podman"


def find_image_with_digest(backend: str, image_name: str, digest: str) -> str | None:
    """An existing ``image_name:<version>`` carrying ``digest``, if any."""
    runtime = runtime_for(backend)
    if shutil.which(runtime) is None:
        return None
    listing = subprocess.run(
        [
            runtime,
            "images",
            "--filter",
            f"label={DIGEST_LABEL}={digest}",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    for ref in listing.stdout.split():
        name, _, tag = ref.rpartition(":")
        if name.endswith(image_name) and tag not in {"latest", "<none>"}:
            return ref
    return None


def image_exists(backend: str, image: str) -> bool:
    """True when ``image`` is in the backend's local image store."""
    runtime = runtime_for(backend)
    probe = subprocess.run(
        [runtime, "image", "inspect", image], capture_output=True, text=True, check=False
    )
    return probe.returncode == 0


def containerize(
    bento_tag: str, backend: str, image_refs: list[str], labels: dict[str, str]
) -> None:
    """``bentoml containerize`` the Bento into ``image_refs`` with ``backend``."""
    cmd = [*bentoml_command(), "containerize", bento_tag, "--backend", backend]
    for ref in image_refs:
        cmd += ["--image-tag", ref]
    opts = [f"label={key}={value}" for key, value in labels.items()]
    if backend in {"podman", "buildah"}:
        # OCI image format has no HEALTHCHECK; the Docker format keeps it for Docker users.
        # --layers: one cached layer per step, as Docker does (buildah squashes by default).
        opts += ["format=docker", "layers"]
    opts += shlex.split(os.environ.get("FRAUD_CONTAINER_BUILD_OPTS", ""))
    for opt in opts:
        cmd += ["--opt", opt]
    # BentoML copies the Bento to a temporary build context and refuses a Dockerfile template
    # outside the working directory, so that context must be created below the repository.
    context_tmp = BUILD_DIR / "context"
    context_tmp.mkdir(parents=True, exist_ok=True)
    run(cmd, env={**os.environ, "TMPDIR": str(context_tmp)})


def save_containerfile(bento_dir: Path) -> Path:
    """Copy the Bento's generated Containerfile to ``build/image/Containerfile`` (for hadolint)."""
    target = BUILD_DIR / "Containerfile"
    shutil.copyfile(bento_dir / "env" / "docker" / "Dockerfile", target)
    return target


def build_image(backend: str, image_name: str, *, reuse: bool = True) -> BuildResult:
    """Build (or reuse) the image; return what was built."""
    export_requirements()
    revision = git_revision()
    bento_tag = build_bento({"git_revision": revision})
    bento_dir = bento_path(bento_tag)
    models = model_tags(bento_dir)
    if not models:
        raise SystemExit(f"{bento_tag} packs no model: train one first (`make train`)")
    digest = inputs_digest(bento_dir, models)
    containerfile = save_containerfile(bento_dir)
    existing = find_image_with_digest(backend, image_name, digest) if reuse else None
    if existing:
        log(f"inputs unchanged (digest {digest[:12]}): reusing {existing}")
        run([*bentoml_command(), "delete", "--yes", bento_tag], capture_output=True)
        return BuildResult(
            existing,
            bento_tag,
            backend,
            ",".join(models),
            revision,
            digest,
            True,
            str(containerfile),
        )
    version = bento_tag.split(":", 1)[1]
    image = f"{image_name}:{version}"
    labels = {
        "org.opencontainers.image.title": image_name,
        "org.opencontainers.image.description": "Credit-card fraud scoring API (BentoML, XGBoost)",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.licenses": "Apache-2.0",
        BENTO_LABEL: bento_tag,
        MODEL_LABEL: ",".join(models),
        DIGEST_LABEL: digest,
    }
    containerize(bento_tag, backend, [image, f"{image_name}:latest"], labels)
    # `bentoml containerize` logs build failures but may still exit 0: check the result.
    if not image_exists(backend, image):
        raise SystemExit(f"the {backend} build did not produce {image} (see the log above)")
    return BuildResult(
        image, bento_tag, backend, ",".join(models), revision, digest, False, str(containerfile)
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (BACKEND and IMAGE_NAME environment variables are the defaults)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--backend",
        default=os.environ.get("BACKEND") or None,
        choices=BACKENDS,
        help="docker, buildah or podman (default: first available, in that order)",
    )
    parser.add_argument("--image-name", default=os.environ.get("IMAGE_NAME") or DEFAULT_IMAGE_NAME)
    parser.add_argument(
        "--no-reuse", action="store_true", help="build even if an identical image exists"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make image``: prints the image reference on stdout."""
    args = parse_args(argv)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    backend = detect_backend(args.backend)
    log(f"backend: {backend}")
    result = build_image(backend, args.image_name, reuse=not args.no_reuse)
    (BUILD_DIR / "build.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(result.image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
