"""Train the project's real pipeline on the tiny ``test`` preset into a given model store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testkit.tools import REPO_ROOT


def train_tiny_model(bentoml_home: Path, timeout: float = 600) -> str:
    """Train on the ``test`` simulator preset into ``bentoml_home``; return the model tag.

    Runs in a subprocess: BentoML fixes its store path when first imported, so this is the
    only way to target an exact home from a test process that may already have imported it.
    """
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "true",
        "TQDM_DISABLE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "training.train", "--preset", "test"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        msg = f"tiny model training failed ({done.returncode}):\n{done.stderr[-4000:]}"
        raise RuntimeError(msg)
    return done.stdout.strip().splitlines()[-1]
