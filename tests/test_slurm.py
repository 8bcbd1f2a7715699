"""accelerate_configs/slurm.sbatch submitted to a real (one-host) Slurm: two tasks play two nodes, each running its
own `accelerate launch` with its machine rank from SLURM_PROCID, over gloo on CPU, training baize-smol for two steps.
Skipped with the reason where Slurm is not installed (`make slurm`) or cannot start; CI sets BAIZE_REQUIRE_SLURM=1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, free_port
from slurm_cluster import SlurmUnavailable, missing_binaries, one_host_slurm

REQUIRE_SLURM = os.environ.get("BAIZE_REQUIRE_SLURM") == "1"


def _unavailable(reason: str):
    if REQUIRE_SLURM:
        pytest.fail(f"BAIZE_REQUIRE_SLURM=1 but {reason} (make slurm installs Debian's Slurm)")
    pytest.skip(reason)


@pytest.mark.slow  # a Slurm cluster, two launchers and a gloo rendezvous: about a minute and a half
def test_sbatch_trains_on_two_slurm_nodes_with_one_process_group_and_one_adapter(tmp_path, smol_dir):
    if missing := missing_binaries():
        _unavailable(f"Slurm is not installed here (missing {', '.join(missing)})")
    out = tmp_path / "run"
    # global batch 4 = 2 machines x 1 process x micro-batch 1 x accumulation 2
    overrides = f"--max_steps 2 --global_batch_size 4 --per_device_train_batch_size 1 --output_dir {out}"
    overrides += " --report_to none --eval_strategy no --save_steps 2"
    job_log = tmp_path / "slurm-job.out"
    try:
        with one_host_slurm(tmp_path / "slurm") as env:
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the job's `python` is this one
            env["PYTHONPATH"] = str(REPO)
            env.update(GPUS_PER_NODE="1", MAIN_PORT=str(free_port()))
            command = ["sbatch", "--wait", "--nodes=1", "--ntasks=2", "--ntasks-per-node=2", f"--output={job_log}"]
            command += ["accelerate_configs/slurm.sbatch", "baize-smol", "multi_cpu", overrides]
            result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    except SlurmUnavailable as error:
        _unavailable(str(error))
    log = job_log.read_text(errors="replace") if job_log.exists() else ""
    assert result.returncode == 0, f"{result.stderr[-2000:]}\n{log[-4000:]}"

    assert "baize: 2 machine(s) x 1 GPU(s)" in log
    tasks = {line.split(":", 1)[0].strip() for line in log.splitlines() if line[:1].isdigit()}
    assert tasks == {"0", "1"}, tasks  # both srun tasks (nodes) ran a launcher
    summary = json.loads((out / "run_summary.json").read_text())
    # both launchers' processes joined one process group of 2, and the global batch of 4 was kept
    assert summary["num_processes"] == 2 and summary["gradient_accumulation_steps"] == 2
    assert summary["global_step"] == 2
    assert log.count("Run summary:") == 1  # the card and summary are written by the world's rank 0 only
    assert (out / "README.md").exists() and (out / "adapter_model.safetensors").exists()
    assert len(list(out.glob("adapter_model*.safetensors"))) == 1
