"""A missing or corrupt model stops ``bentoml serve`` with a non-zero exit and one line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.api import serve_command, tiny_model_tag
from tests.support.net import free_port
from tests.support.tools import REPO_ROOT

pytestmark = pytest.mark.integration


def _start(home: Path, model_tag: str) -> subprocess.Popen[str]:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true",
           "FRAUD_MODEL_TAG": model_tag}  # fmt: skip
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
    for process, expected_tag in ((missing, "fraud-detector:doesnotexist"), (corrupt, tag)):
        code, stderr = _finish(process)
        assert code != 0
        lines = [line for line in stderr.splitlines() if line.startswith("fraud-scoring:")]
        assert len(lines) == 1, stderr[-2000:]
        assert expected_tag in lines[0]
        assert "Traceback" not in stderr
