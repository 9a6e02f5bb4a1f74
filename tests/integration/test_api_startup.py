"""A missing hash key, a missing or corrupt model stop ``bentoml serve`` with one line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from testkit.api import TEST_HASH_KEY, serve_command, tiny_model_tag
from testkit.net import free_port
from testkit.tools import REPO_ROOT

pytestmark = pytest.mark.integration


def _start(home: Path, model_tag: str, **extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true",
           "FRAUD_MODEL_TAG": model_tag, "FRAUD_ID_HASH_KEY": TEST_HASH_KEY, **extra}  # fmt: skip
    return subprocess.Popen(
        serve_command(free_port()), cwd=REPO_ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        raise AssertionError("the server kept running with a bad model") from None
    return process.returncode, stderr


def test_missing_and_corrupt_models_exit_non_zero_naming_the_tag(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    tag = tiny_model_tag(broken)
    name, version = tag.split(":")
    model_dir = broken / "models" / name / version
    booster_files = [p for p in model_dir.iterdir() if p.suffix in (".ubj", ".json")]
    assert booster_files
    for booster in booster_files:
        booster.write_bytes(b"this is not a booster")
    shutil.rmtree(model_dir / "__pycache__", ignore_errors=True)

    missing = _start(empty, "fraud-detector:doesnotexist")
    corrupt = _start(broken, tag)
    # A missing model is reported by BentoML itself, before the service's own check runs.
    code, stderr = _finish(missing)
    assert code != 0
    lines = [line for line in stderr.splitlines() if "fraud-detector:doesnotexist" in line]
    assert len(lines) == 1, stderr[-2000:]
    assert "could not be found locally" in lines[0]
    assert "Traceback" not in stderr
    _only_our_line(corrupt, tag)


def test_no_hash_key_outside_dev_mode_exits_naming_the_variable(tmp_path: Path) -> None:
    tag = tiny_model_tag(tmp_path)
    _only_our_line(_start(tmp_path, tag, FRAUD_ID_HASH_KEY=""), "FRAUD_ID_HASH_KEY is not set")
    _only_our_line(
        _start(tmp_path, tag, FRAUD_ID_HASH_KEY="short"), "FRAUD_ID_HASH_KEY is too short"
    )


def _only_our_line(process: subprocess.Popen[str], expected: str) -> None:
    code, stderr = _finish(process)
    assert code == 2, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("fraud-scoring:")]
    assert len(lines) == 1, stderr[-2000:]
    assert expected in lines[0]
    assert "Traceback" not in stderr
