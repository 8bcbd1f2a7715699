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
    assert report["dry_run"] and report["failed"] == 0 and report["skipped"] == 0  # no budget in a dry run
    assert list(steps) == ["env", "smol", "recipes", "bench7b", "fsdp", "liger", "sdf"]
    assert steps["smol"]["global_step"] == 2 and steps["smol"]["chat_reply"].startswith("[|AI|]")
    for label in ("int8 (baize-7b)", "4-bit QLoRA (baize-qwen2.5-7b)"):
        assert steps["recipes"][label]["loss_last"] > 0 and steps["recipes"][label]["reloaded_mean_abs_logit"] > 0
    assert steps["recipes"]["4-bit QLoRA (baize-qwen2.5-7b)"]["attn_fallback_warning"]  # no flash-attn on CPU
    assert steps["fsdp"]["int8_fsdp_refused"].startswith("baize train: error: load_in_8bit cannot be sharded")
    assert steps["sdf"]["speedup"] > 0
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_check import TRAINER_ROW
    from ladder import ladder_rows

    bench = {label: row for label, row in steps["bench7b"].items() if isinstance(row, dict)}
    assert list(bench) == [*(row.label for row in ladder_rows()), TRAINER_ROW]  # every rung ran, in order
    assert all(row["tokens_per_s"] > 0 for row in bench.values())
    assert bench[TRAINER_ROW]["global_step"] == 2 and bench[TRAINER_ROW]["loss_last"] > 0
    assert bench["+ regional compile (best)"]["options"]["compiled_layers"] == 2
    assert bench["best + selective checkpointing"]["selective_layers"] == 2
    assert "| 7B-shaped LoRA |" in (tmp_path / "gpu_check.md").read_text()


def test_the_budget_runs_what_fits_and_keeps_room_for_the_essential_work_after_it():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from ladder import Budget

    budget = Budget.of(100)
    assert budget.allows(90, essential=True) and not budget.allows(120, essential=True)
    assert not budget.allows(30, essential=False, essential_after_s=80)  # would starve the essential rows after it
    assert budget.allows(30, essential=False, essential_after_s=60)
    assert Budget.of(None).allows(1e9, essential=False, essential_after_s=1e9)


def test_the_default_plan_fits_every_essential_step_and_row_under_eight_minutes():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_check import DEFAULT_BUDGET_S, STEP_PLAN, TRAINER_ROW_EXPECTED_S
    from ladder import essential_seconds, ladder_rows

    assert sum(seconds for seconds, essential in STEP_PLAN.values() if essential) <= DEFAULT_BUDGET_S < 8 * 60
    assert STEP_PLAN["bench7b"][0] >= essential_seconds(ladder_rows())
    # the whole ladder with env alone fits one command on the lent GPU machine (600 s a command)
    ladder_s = STEP_PLAN["env"][0] + STEP_PLAN["bench7b"][0] - essential_seconds(ladder_rows())
    assert ladder_s + sum(row.expected_s for row in ladder_rows()) + TRAINER_ROW_EXPECTED_S < 600


def test_a_check_out_of_time_skips_and_lists_what_it_left_out(tmp_path):
    """Skipped steps are recorded as skipped (not passed, not failed), with the command that runs them alone."""
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--budget", "1", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert (report["passed"], report["failed"], report["skipped"]) == (0, 0, 7)
    assert all(step["skipped"].startswith("time budget: ") for step in report["steps"].values())
    assert "| bench7b | skipped |" in (tmp_path / "gpu_check.md").read_text()
    assert "Run them alone with --steps env,smol,recipes,bench7b,fsdp,liger,sdf" in result.stdout


def test_a_misspelt_step_is_refused_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--steps", "env,bench7", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and not (tmp_path / "gpu_check.json").exists()
    assert result.stderr.strip().splitlines()[-1].endswith("--steps: no step bench7 (the steps: "
                                                           "env,smol,recipes,bench7b,fsdp,liger,sdf)")  # fmt: skip


def test_the_ladder_out_of_time_writes_every_row_as_skipped():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_check import TINY
    from ladder import Budget, ladder_rows, run_ladder

    written = []
    results = run_ladder(TINY, 989.0, True, lambda rows: written.append(dict(rows)), Budget.of(0))
    assert list(results) == [row.label for row in ladder_rows()] and len(written) == len(results)
    assert all("skipped" in row for row in results.values())


def test_gpu_wheels_leave_out_the_bitsandbytes_libraries_the_gpu_machine_never_loads(tmp_path):
    """The transfer's headroom: the CPU and CUDA 12.8/13.0 libraries stay, the rest and their RECORD lines go."""
    import zipfile

    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_check import trim_bitsandbytes

    wheel = tmp_path / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    libraries = ["cpu", "cuda118", "cuda126", "cuda128", "cuda130", "cuda132", "rocm64"]
    names = [f"bitsandbytes/libbitsandbytes_{lib}.so" for lib in libraries] + ["bitsandbytes/__init__.py"]
    record = "bitsandbytes-0.50.2.dist-info/RECORD"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in names:
            archive.writestr(name, b"x" * 50_000 if name.endswith(".so") else b"")
        archive.writestr(record, "".join(f"{name},sha256=abc,1\n" for name in [*names, record]))
    assert trim_bitsandbytes(wheel) > 0
    with zipfile.ZipFile(wheel) as archive:
        kept = sorted(n for n in archive.namelist() if n.endswith(".so"))
        listed = [line.split(",")[0] for line in archive.read(record).decode().splitlines()]
    assert kept == [f"bitsandbytes/libbitsandbytes_{lib}.so" for lib in ("cpu", "cuda128", "cuda130")]
    assert set(listed) == {*kept, "bitsandbytes/__init__.py", record}
