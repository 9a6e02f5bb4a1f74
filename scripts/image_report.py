"""Measure the built image: start-to-ready time and size over the base image, by layer.

Writes ``reports/image.json`` and ``reports/image.md``. The image defaults to the last one
``make image`` built (``build/image/build.json``). Each start runs the container the way the
chart does (read-only root filesystem, tmpfs /tmp) and times ``podman run`` -> first 200 from
``/readyz`` on the published port.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_INFO = REPO_ROOT / "build" / "image" / "build.json"
BASE_IMAGE = "python:3.11-slim-bookworm"
READY_PATH = "/readyz"
TARGET_READY_S = 3.0
TARGET_ADDED_MB = 400.0


def podman_json(*args: str) -> Any:
    """Run ``podman ARGS`` and decode its JSON output."""
    out = subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return json.loads(out)


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_to_ready(image: str, timeout: float = 120.0) -> float:
    """Seconds from ``podman run`` to the first 200 from ``/readyz``."""
    port, name = free_port(), f"fraud-report-{uuid.uuid4().hex[:8]}"
    cmd = ["podman", "run", "--detach", "--name", name, "--read-only"]
    tmpfs = "/tmp:rw,size=256m,mode=1777"  # noqa: S108  (the container's own tmpfs)
    cmd += ["--tmpfs", tmpfs, "--publish", f"127.0.0.1:{port}:3000"]
    cmd += ["--env", "FRAUD_ID_HASH_KEY=image-report-hash-key-0123456789abcdef"]
    start = time.monotonic()
    subprocess.run([*cmd, image], capture_output=True, check=True, timeout=120)
    try:
        while time.monotonic() - start < timeout:
            try:
                url = f"http://127.0.0.1:{port}{READY_PATH}"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return time.monotonic() - start
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{image} not ready after {timeout:.0f}s")
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "5", name], capture_output=True, check=False)


def layer_breakdown(image: str) -> list[dict[str, Any]]:
    """Non-empty layers of ``image``, oldest first, with the instruction that made them."""
    history = podman_json("image", "history", "--format", "json", image)
    layers = []
    for entry in reversed(history):
        size = int(entry.get("size") or 0)
        if size:
            created_by = " ".join(
                str(entry.get("CreatedBy") or entry.get("createdBy") or "").split()
            )
            layers.append({"bytes": size, "created_by": created_by[:160]})
    return layers


def largest_packages(image: str, top: int = 12) -> list[dict[str, Any]]:
    """The largest entries of the image's site-packages (kB)."""
    out = subprocess.run(
        [
            "podman", "run", "--rm", "--entrypoint", "sh", image, "-c",
            "du -sk /app/.venv/lib/python3.11/site-packages/* | sort -rn | head -n " + str(top),
        ],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    rows = []
    for line in out.splitlines():
        kb, path = line.split(maxsplit=1)
        rows.append({"package": Path(path).name, "bytes": int(kb) * 1024})
    return rows


def measure(image: str, starts: int) -> dict[str, Any]:
    """All measurements for ``image``."""
    total = int(podman_json("image", "inspect", image)[0]["Size"])
    base = int(podman_json("image", "inspect", BASE_IMAGE)[0]["Size"])
    ready = [time_to_ready(image) for _ in range(starts)]
    return {
        "image": image,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}",
        "command": f"python scripts/image_report.py --image {image} --starts {starts}",
        "start_to_ready_s": {
            "runs": [round(r, 3) for r in ready],
            "median": round(statistics.median(ready), 3),
            "max": round(max(ready), 3),
            "target": TARGET_READY_S,
        },
        "size": {
            "image_bytes": total,
            "base_image": BASE_IMAGE,
            "base_bytes": base,
            "added_bytes": total - base,
            "added_mb": round((total - base) / 1e6, 1),
            "target_added_mb": TARGET_ADDED_MB,
        },
        "layers": layer_breakdown(image),
        "largest_packages": largest_packages(image),
    }


def render_markdown(report: dict[str, Any]) -> str:
    """``reports/image.md`` from the measurements."""
    ready, size = report["start_to_ready_s"], report["size"]
    ready_ok = "met" if ready["median"] <= ready["target"] else "NOT met"
    size_ok = "met" if size["added_mb"] <= size["target_added_mb"] else "NOT met"
    lines = [
        "# Image report",
        "",
        f"Image `{report['image']}`, measured {report['measured_at']} on {report['machine']}",
        f"with `{report['command']}`.",
        "",
        "| Measure | Value | Target | |",
        "|---|---|---|---|",
        f"| Start to ready (median of {len(ready['runs'])}) | {ready['median']:.2f} s "
        f"(max {ready['max']:.2f} s) | <= {ready['target']:.0f} s | {ready_ok} |",
        f"| Bytes added over `{size['base_image']}` | {size['added_mb']:.1f} MB | "
        f"<= {size['target_added_mb']:.0f} MB | {size_ok} |",
        "",
        "Start to ready: `podman run` (read-only root filesystem, tmpfs /tmp) until `/readyz`",
        "answers 200 on the published port (model loaded and warmed up).",
        "",
        "## Layers (oldest first, non-empty)",
        "",
        "| Size (MB) | Instruction |",
        "|---:|---|",
    ]
    for layer in report["layers"]:
        text = layer["created_by"].replace("|", "\\|")
        lines.append(f"| {layer['bytes'] / 1e6:.1f} | `{text}` |")
    lines += ["", "## Largest installed packages", "", "| Package | MB |", "|---|---:|"]
    for row in report["largest_packages"]:
        lines.append(f"| {row['package']} | {row['bytes'] / 1e6:.1f} |")
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--image", help="image reference (default: the last `make image`)")
    parser.add_argument("--starts", type=int, default=5, help="container starts to time")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--note", action="append", default=[], help="context line for the report")
    parser.add_argument(
        "--notes-only", action="store_true", help="add --note lines to the existing report"
    )
    args = parser.parse_args(argv)
    if args.notes_only:
        report = json.loads((args.out / "image.json").read_text())
    else:
        image = args.image or json.loads(BUILD_INFO.read_text())["image"]
        report = measure(image, args.starts)
    report["notes"] = [*report.get("notes", []), *args.note]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "image.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "image.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
