"""A one-host Slurm for the launcher's test: munged, slurmctld and slurmd from Debian's packages (`make slurm`), each
with its own folder, socket and ports under a temporary directory, so nothing of the machine's own set-up is used or
changed. The node declares 8 GPUs (`gres/gpu`, files that stand in for devices) because accelerate_configs/
slurm.sbatch asks for them as a real GPU cluster would; the jobs themselves run on CPU."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from helpers import free_port

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "sinfo", "scontrol")


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else f"{path}: no log"


class SlurmUnavailable(RuntimeError):
    """Slurm is installed but its daemons cannot start here (no root, a container without the needed rights)."""


@contextmanager
def one_host_slurm(root: Path, cpus: int | None = None):
    """Start munge and Slurm under `root`; yields the environment (SLURM_CONF) for sbatch/srun. Stops them after."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "log", "munge", "gpus"):
        (root / sub).mkdir(exist_ok=True)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    for i in range(8):
        (root / "gpus" / f"gpu{i}").touch()
    user = getpass.getuser()
    node = os.uname().nodename.split(".")[0]
    socket = root / "munge" / "munge.socket"
    conf = root / "slurm.conf"
    conf.write_text(
        f"""ClusterName=baizetest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={socket}
CredType=cred/munge
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "log" / "slurmctld.log"}
SlurmdLogFile={root / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus or os.cpu_count()} RealMemory=1000 Gres=gpu:8 State=UNKNOWN
PartitionName=baize Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""
    )
    (root / "gres.conf").write_text(f"AutoDetect=off\nName=gpu File={root / 'gpus'}/gpu[0-7]\n")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[Path] = []
    try:
        munge = [_binary("munged"), f"--socket={socket}", f"--key-file={key}", f"--pid-file={root / 'munge' / 'pid'}"]
        munge += [f"--log-file={root / 'munge' / 'log'}", f"--seed-file={root / 'munge' / 'seed'}", "--force"]
        for command, pid_file, log in (
            (munge, root / "munge" / "pid", root / "munge" / "log"),
            ([_binary("slurmctld")], root / "slurmctld.pid", root / "log" / "slurmctld.log"),
            ([_binary("slurmd")], root / "slurmd.pid", root / "log" / "slurmd.log"),
        ):
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
            if result.returncode != 0:
                raise SlurmUnavailable(f"{Path(command[0]).name} did not start: {result.stderr.strip()} {_tail(log)}")
            started.append(pid_file)
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            probe = subprocess.run([_binary("sinfo"), "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            state = probe.stdout.strip()
            if state == "idle":
                break
            time.sleep(1)
        else:
            raise SlurmUnavailable(f"the node stayed {state!r}: {_tail(root / 'log' / 'slurmctld.log')}")
        yield env
    finally:
        for pid_file in reversed(started):
            _stop(pid_file)


def _stop(pid_file: Path) -> None:
    deadline = time.monotonic() + 5
    while not pid_file.exists() and time.monotonic() < deadline:  # daemons write their pid file once they are up
        time.sleep(0.1)
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
