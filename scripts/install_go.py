"""Install the pinned Go toolchain into ``.tools/go`` from the Go module proxy (stdlib only).

Go publishes every release as the module ``golang.org/toolchain`` (version
``v0.0.1-go<version>.<os>-<arch>``); it is what ``GOTOOLCHAIN`` switching downloads. This
script fetches that zip from ``$GOPROXY`` (Go's default proxy when unset), checks it
against the ``h1:`` checksum pinned in ``scripts/tool-versions.env`` (the go.sum / checksum
database hash of the module zip), unpacks it to ``.tools/go`` and links ``go`` and ``gofmt``
into ``.tools/bin``, which the Makefile, the scripts and the tests already put on PATH.
``scripts/install-system-deps.sh`` runs it only when no Go >= the required version is found.

    python3 scripts/install_go.py   # GO_VERSION, GO_TOOLCHAIN_SUM_<OS>_<ARCH> (tool-versions.env)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL_VERSIONS = REPO_ROOT / "scripts" / "tool-versions.env"
TOOLS = REPO_ROOT / ".tools"
GOROOT = TOOLS / "go"
BIN = TOOLS / "bin"
DEFAULT_PROXY = "https://proxy.golang.org"
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
TIMEOUT_S = 300


def log(message: str) -> None:
    print(f"[install_go] {message}", file=sys.stderr, flush=True)


def platform_suffix() -> str:
    """``linux-amd64`` and the like: the toolchain module's platform part."""
    system = platform.system().lower()
    arch = ARCHES.get(platform.machine().lower())
    if system not in {"linux", "darwin"} or arch is None:
        raise SystemExit(f"no Go toolchain module for {platform.system()}/{platform.machine()}")
    return f"{system}-{arch}"


def module_version(version: str, suffix: str) -> str:
    return f"v0.0.1-go{version}.{suffix}"


def proxies(goproxy: str | None) -> list[str]:
    """The HTTP(S) proxies listed in ``GOPROXY`` (``direct`` and ``off`` cannot serve a zip)."""
    entries = (goproxy or DEFAULT_PROXY).replace("|", ",").split(",")
    urls = [entry.strip().rstrip("/") for entry in entries]
    return [url for url in urls if url.startswith(("https://", "http://"))]


def zip_hash(path: Path) -> str:
    """The ``h1:`` hash of a module zip (Go's ``dirhash.HashZip`` with ``Hash1``)."""
    summary = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for name in sorted(archive.namelist()):
            if "\n" in name:
                raise ValueError(f"file name with a newline in {path}")
            digest = hashlib.sha256(archive.read(name)).hexdigest()
            summary.update(f"{digest}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


def download(version: str, suffix: str, target: Path, goproxy: str | None) -> None:
    """Fetch the toolchain module zip into ``target`` from the first proxy that has it."""
    path = f"golang.org/toolchain/@v/{module_version(version, suffix)}.zip"
    errors = []
    for proxy in proxies(goproxy):
        url = f"{proxy}/{path}"
        log(f"downloading {url}")
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer, target.open("wb") as out:  # noqa: S310  (https proxy URL)
                shutil.copyfileobj(answer, out)
            return
        except OSError as error:
            errors.append(f"{url}: {error}")
    raise SystemExit("could not download the Go toolchain: " + ("; ".join(errors) or "no proxy"))


def unpack(archive_path: Path, prefix: str, goroot: Path) -> None:
    """Unpack the zip's ``<prefix>/`` tree into ``goroot`` (replaced whole), keeping exec bits."""
    staging = goroot.with_name(goroot.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            relative = Path(info.filename[len(prefix) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise SystemExit(f"unsafe path in the toolchain zip: {info.filename}")
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, destination.open("wb") as out:
                shutil.copyfileobj(source, out)
            mode = (info.external_attr >> 16) & 0o777
            # As Go's own toolchain switch does: bin/ and pkg/tool/ are executable.
            if mode & 0o111 or relative.parts[0] == "bin" or relative.parts[:2] == ("pkg", "tool"):
                destination.chmod(0o755)
    shutil.rmtree(goroot, ignore_errors=True)
    staging.rename(goroot)


def install(version: str, expected_sum: str, goproxy: str | None) -> Path:
    """Install Go ``version`` into ``.tools/go``; return the path of its ``go``."""
    suffix = platform_suffix()
    with tempfile.TemporaryDirectory(prefix="go-toolchain-", dir=TOOLS) as tmp:
        archive = Path(tmp) / "toolchain.zip"
        download(version, suffix, archive, goproxy)
        actual = zip_hash(archive)
        if actual != expected_sum:
            raise SystemExit(
                f"checksum mismatch for go{version} {suffix}: {actual} != {expected_sum}"
            )
        unpack(archive, f"golang.org/toolchain@{module_version(version, suffix)}/", GOROOT)
    BIN.mkdir(parents=True, exist_ok=True)
    for tool in ("go", "gofmt"):
        link = BIN / tool
        link.unlink(missing_ok=True)
        link.symlink_to(GOROOT / "bin" / tool)
    log(f"go{version} installed in {GOROOT} (linked from {BIN})")
    return BIN / "go"


def pinned(path: Path = TOOL_VERSIONS) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of ``tool-versions.env`` (comments and blank lines skipped)."""
    settings = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            settings[key.strip()] = value.strip().strip('"')
    return settings


def main(argv: list[str] | None = None) -> int:
    """Install the Go version pinned in tool-versions.env (with this platform's checksum)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.parse_args(argv)
    settings = pinned()
    suffix = platform_suffix()
    sum_key = "GO_TOOLCHAIN_SUM_" + suffix.upper().replace("-", "_")
    if sum_key not in settings:
        raise SystemExit(f"{TOOL_VERSIONS.name} pins no checksum for {suffix} ({sum_key})")
    TOOLS.mkdir(parents=True, exist_ok=True)
    print(install(settings["GO_VERSION"], settings[sum_key], os.environ.get("GOPROXY")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
