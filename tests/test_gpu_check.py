"""`make gpu-check ARGS=--dry-run`: every step of the prepared GPU check runs at tiny size on CPU, so the script
that the next GPU machine runs cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_dry_run_passes_every_step(tmp_path):
    result = subprocess.run(
        ["make", "gpu-check", f"PYTHON={sys.executable}", f"ARGS=--dry-run --out {tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = report["steps"]
    assert report["dry_run"] and report["failed"] == 0
    assert list(steps) == ["env", "smol", "recipes", "fsdp", "liger", "sdf", "bench7b"]
    assert steps["smol"]["global_step"] == 2 and steps["smol"]["chat_reply"].startswith("[|AI|]")
    for label in ("int8 (baize-7b)", "4-bit QLoRA (baize-qwen2.5-7b)"):
        assert steps["recipes"][label]["loss_last"] > 0 and steps["recipes"][label]["reloaded_mean_abs_logit"] > 0
    assert steps["recipes"]["4-bit QLoRA (baize-qwen2.5-7b)"]["attn_fallback_warning"]  # no flash-attn on CPU
    assert steps["fsdp"]["int8_fsdp_refused"].startswith("baize train: error: load_in_8bit cannot be sharded")
    assert steps["sdf"]["speedup"] > 0
    bench = steps["bench7b"]
    assert len(bench) == 1 + 4 + 1 and all(v["tokens_per_s"] > 0 for v in bench.values() if isinstance(v, dict))
    assert "| 7B-shaped LoRA |" in (tmp_path / "gpu_check.md").read_text()
