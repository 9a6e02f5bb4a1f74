"""Helpers for the container smoke suite: build (or reuse) the image, run containers.

Containers run with podman (the daemonless runtime on CI); machine-specific runtime settings
(runc, ulimits, CA bundle) come from containers.conf written by ``.ci/configure-containers.sh``,
never from here or the product.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testkit.tools import REPO_ROOT

#: Image name used by the tests (not the user-facing ``fraud-scoring``: never clobber it).
TEST_IMAGE_NAME = "fraud-scoring-smoke"
#: Files whose content decides the tiny model: the cached test model store is keyed by them.
MODEL_INPUTS = ("testkit/models.py", "training", "fraud_contract")


#: FRAUD_ID_HASH_KEY of every test container (a test value, never a real secret).
TEST_HASH_KEY = "container-test-hash-key-0123456789abcdef"


def model_inputs_key() -> str:
    """Digest of the code that trains the tiny test model (reuse its store while unchanged)."""
    digest = hashlib.sha256()
    for entry in MODEL_INPUTS:
        root = REPO_ROOT / entry
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            digest.update(path.relative_to(REPO_ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class BuiltImage:
    """The image under test and what ``scripts/build_image.py`` reported about it."""

    ref: str
    model_tag: str
    git_revision: str
    containerfile: Path
    reused: bool
    build_seconds: float


def tiny_model_home() -> Path:
    """A BentoML home holding a tiny trained model, kept between runs while training is unchanged.

    Keeping it lets an unchanged tree reuse the previous image instead of rebuilding it.
    """
    home = REPO_ROOT / "build" / "container-test" / f"bentoml-{model_inputs_key()}"
    marker = home / "model-tag.txt"
    if not marker.exists():
        from testkit.models import train_tiny_model  # noqa: PLC0415

        for stale in home.parent.glob("bentoml-*"):  # stores of older training code
            shutil.rmtree(stale, ignore_errors=True)
        home.mkdir(parents=True)
        marker.write_text(train_tiny_model(home))
    return home


def build_image(runtime: str, bentoml_home: Path, log_path: Path, timeout: float) -> BuiltImage:
    """Build the working tree's image with ``scripts/build_image.py`` (podman or docker CLI).

    An identical image (same Bento digest) is reused, so an unchanged tree costs seconds; a
    changed tree always gets a fresh image, never a stale one from an earlier checkout.
    """
    import os  # noqa: PLC0415

    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    env["PATH"] = f"{Path(runtime).parent}:{env.get('PATH', '')}"
    start = time.monotonic()
    with log_path.open("w") as log:
        completed = subprocess.run(
            [
                str(REPO_ROOT / ".venv" / "bin" / "python"),
                "scripts/build_image.py",
                "--backend",
                Path(runtime).name,
                "--image-name",
                TEST_IMAGE_NAME,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            timeout=timeout,
            check=False,
        )
    elapsed = time.monotonic() - start
    if completed.returncode != 0:
        tail = log_path.read_text(errors="replace")[-6000:]
        raise AssertionError(f"image build failed ({completed.returncode}):\n{tail}")
    info = json.loads((REPO_ROOT / "build" / "image" / "build.json").read_text())
    ref = completed.stdout.strip().splitlines()[-1]
    assert ref == info["image"], (ref, info)
    return BuiltImage(
        ref=ref,
        model_tag=info["model_tag"],
        git_revision=info["git_revision"],
        containerfile=Path(info["containerfile"]),
        reused=bool(info["reused"]),
        build_seconds=elapsed,
    )


def build_ui_image(log_path: Path, timeout: float) -> None:
    """``make image-ui`` (the UI image of the working tree; the layer cache makes an unchanged
    tree quick), its output appended to ``log_path``."""
    with log_path.open("a") as log:
        result = subprocess.run(
            ["make", "image-ui"],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    assert result.returncode == 0, f"make image-ui failed; log: {log_path}"


def remove_older_test_images(podman: str, keep: str) -> None:
    """Delete earlier smoke-test images (each is ~580 MB) except ``keep``; ignore images in use."""
    listing = subprocess.run(
        [podman, "images", "--format", "{{.Repository}}:{{.Tag}}", TEST_IMAGE_NAME],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    keep_tag = keep.rpartition(":")[2]
    for ref in listing.stdout.split():
        if ref.rpartition(":")[2] not in {keep_tag, "latest"}:
            subprocess.run([podman, "rmi", ref], capture_output=True, timeout=120, check=False)


def inspect_image(podman: str, ref: str) -> dict[str, object]:
    """``podman image inspect`` of ``ref`` (first entry)."""
    out = subprocess.run(
        [podman, "image", "inspect", ref], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    data = json.loads(out)
    assert isinstance(data, list) and data
    return dict(data[0])


@dataclass
class Container:
    """A running test container."""

    podman: str
    name: str
    base_url: str
    started_at: float

    def exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the container (as its default user)."""
        return subprocess.run(
            [self.podman, "exec", self.name, *cmd],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def logs(self) -> str:
        """Everything the container wrote so far."""
        done = subprocess.run(
            [self.podman, "logs", self.name],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout + done.stderr

    def state(self) -> dict[str, object]:
        """``State`` of ``podman inspect``."""
        out = subprocess.run(
            [self.podman, "inspect", "--format", "{{json .State}}", self.name],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        return dict(json.loads(out))


@contextmanager
def running_container(
    podman: str,
    image: str,
    port: int,
    *,
    read_only: bool = True,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> Iterator[Container]:
    """Start ``image`` publishing container port 3000 on ``127.0.0.1:port``; always remove it.

    Read-only root filesystem with a tmpfs on /tmp, as the Helm chart runs it.
    """
    name = f"fraud-smoke-{uuid.uuid4().hex[:10]}"
    cmd = [podman, "run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:3000"]
    if read_only:
        cmd += ["--read-only", "--tmpfs", "/tmp:rw,size=256m,mode=1777"]
    # The image runs in production mode: it refuses to start without a hash key.
    for key, value in {"FRAUD_ID_HASH_KEY": TEST_HASH_KEY, **(env or {})}.items():
        cmd += ["--env", f"{key}={value}"]
    started_at = time.monotonic()
    subprocess.run([*cmd, image], capture_output=True, text=True, timeout=120, check=True)
    container = Container(podman, name, f"http://127.0.0.1:{port}", started_at)
    try:
        yield container
    finally:
        if log_path is not None:
            log_path.write_text(container.logs())
        subprocess.run(
            [podman, "rm", "--force", "--time", "5", name],
            capture_output=True,
            timeout=120,
            check=False,
        )
