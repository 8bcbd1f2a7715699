"""The README's two set-up commands: `make train` and `make test` set up (pip, every time), then run."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# as a user's shell runs make: not the settings of a `make test` this suite may be running under
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON", "VENV")}


def dry_run(*args: str) -> str:
    """What `make ARGS` would run (make -n)."""
    result = subprocess.run(["make", "-n", *args], cwd=REPO, env=CLEAN_ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_train_and_test_always_call_pip_before_they_run():
    # nothing left on a machine (a stamp, an import that works) may skip the installs: pip decides, quickly
    for target, command in (("train", "baize.train --config recipes/baize-smol/sft.yaml"), ("test", "pytest tests")):
        for _ in range(2):
            steps = dry_run(target)
            assert 'pip install -q "torch==2.13.0"' in steps and 'pip install -q -e ".[dev]"' in steps
            assert steps.index("pip install") < steps.index(command)
            assert "--no-deps" not in steps  # data packages are fetched by baize, not installed half (pip check)


def test_llama_cpp_always_asks_pip():
    steps = dry_run("llama-cpp")
    assert 'pip install -q -e ".[dev,llama]"' in steps and "import llama_cpp" not in steps


def test_venv_option_creates_a_project_virtualenv(tmp_path):
    # PYTHON=python3 as well: the virtualenv's interpreter still wins
    steps = dry_run("train", f"VENV={tmp_path / 'venv'}", "PYTHON=python3")
    assert f"python3 -m venv {tmp_path / 'venv'}" in steps
    assert f"{tmp_path / 'venv'}/bin/python -m pip install" in steps
