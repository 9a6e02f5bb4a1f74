"""The pinned Go toolchain install (scripts/install_go.py, scripts/tool-versions.env)."""

from __future__ import annotations

import re
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from scripts import install_go
from testkit.tools import REPO_ROOT

#: go.sum's "/go.mod" line of every golang.org/toolchain version: Go hashes the module's go.mod
#: as a one-file tree named "go.mod", with the same h1 algorithm as the module zip.
TOOLCHAIN_GO_MOD = b"module golang.org/toolchain\n"
TOOLCHAIN_GO_MOD_SUM = "h1:8wlg68NqwW7eMnI1aABk/C2pDYXj8mrMY4TyRfiLeS0="


def write_zip(path: Path, files: dict[str, tuple[bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, (content, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | mode) << 16
            archive.writestr(info, content)
    return path


def test_zip_hash_is_gos_h1_hash(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "mod.zip", {"go.mod": (TOOLCHAIN_GO_MOD, 0o644)})
    assert install_go.zip_hash(archive) == TOOLCHAIN_GO_MOD_SUM


def test_zip_hash_covers_names_and_contents(tmp_path: Path) -> None:
    base = install_go.zip_hash(write_zip(tmp_path / "a.zip", {"x/a": (b"1", 0o644)}))
    assert install_go.zip_hash(write_zip(tmp_path / "b.zip", {"x/a": (b"2", 0o644)})) != base
    assert install_go.zip_hash(write_zip(tmp_path / "c.zip", {"x/b": (b"1", 0o644)})) != base


def test_unpack_strips_the_module_prefix_and_keeps_tools_executable(tmp_path: Path) -> None:
    prefix = "golang.org/toolchain@v0.0.1-go1.99.0.linux-amd64/"
    archive = write_zip(
        tmp_path / "tc.zip",
        {
            f"{prefix}bin/go": (b"#!/bin/sh\n", 0o644),  # exec bit restored for bin/
            f"{prefix}pkg/tool/linux_amd64/compile": (b"", 0o755),
            f"{prefix}src/fmt/print.go": (b"package fmt\n", 0o644),
        },
    )
    goroot = tmp_path / "go"
    install_go.unpack(archive, prefix, goroot)
    assert (goroot / "bin" / "go").stat().st_mode & 0o111
    assert (goroot / "pkg" / "tool" / "linux_amd64" / "compile").stat().st_mode & 0o111
    assert not (goroot / "src" / "fmt" / "print.go").stat().st_mode & 0o111


def test_unpack_refuses_paths_outside_goroot(tmp_path: Path) -> None:
    prefix = "golang.org/toolchain@v/"
    archive = write_zip(tmp_path / "evil.zip", {f"{prefix}../escape": (b"", 0o644)})
    with pytest.raises(SystemExit, match="unsafe path"):
        install_go.unpack(archive, prefix, tmp_path / "go")


def test_goproxy_lists_only_servers_that_serve_zips() -> None:
    assert install_go.proxies(None) == [install_go.DEFAULT_PROXY]
    assert install_go.proxies("https://a.example/,direct") == ["https://a.example"]
    assert install_go.proxies("https://a.example|https://b.example,off") == [
        "https://a.example",
        "https://b.example",
    ]
    assert install_go.proxies("off") == []


def test_pinned_go_is_new_enough_for_the_control_plane_and_has_checksums() -> None:
    pins = install_go.pinned()
    go_mod = (REPO_ROOT / "cluster" / "components" / "go.mod").read_text()
    match = re.search(r"^go (\d+)\.(\d+)(?:\.(\d+))?$", go_mod, re.MULTILINE)
    assert match
    required = tuple(int(part or 0) for part in match.groups())
    pinned = tuple(int(part) for part in pins["GO_VERSION"].split("."))
    assert pinned >= required
    for platform in ("LINUX_AMD64", "LINUX_ARM64"):
        assert re.fullmatch(r"h1:[A-Za-z0-9+/]{43}=", pins[f"GO_TOOLCHAIN_SUM_{platform}"])


def test_system_deps_checks_go_against_the_control_planes_go_mod() -> None:
    script = (REPO_ROOT / "scripts" / "install-system-deps.sh").read_text()
    assert "cluster/components/go.mod" in script
    assert "scripts/install_go.py" in script
    # A missing Go fails under CI=true instead of silently skipping the Go tools.
    go_section = script.split("# ---- Go toolchain", 1)[1].split("# ---- Go tools", 1)[0]
    assert re.search(r'if \[ "\$\{CI:-\}" = "true" \]; then[^f]*exit 1', go_section)
    script_path = REPO_ROOT / "scripts" / "install-system-deps.sh"
    subprocess.run(["bash", "-n", str(script_path)], check=True, timeout=30)
