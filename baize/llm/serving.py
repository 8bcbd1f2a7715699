"""Model servers that baize starts and stops itself: SDF rounds serve each round's model where it is sampled and
gated (`serve_command`).

The command is a template with `{model}` (the model folder), `{gguf}` (that model as one GGUF file, for llama.cpp),
`{host}` and `{port}`; one process is started per base URL, on that URL's host and port (replicas), e.g.

    vllm serve {model} --host {host} --port {port}
    transformers serve --device cpu --host {host} --port {port}      (it loads the folder the requests name)
    python -m llama_cpp.server --model {gguf} --host {host} --port {port}

A server counts as up when `GET /models` answers (the preflight). Each process runs in a session of its own, so
stopping it stops what it forked (vLLM's engine processes) too, and it gets the kernel's parent-death signal, so a
baize killed with SIGKILL takes it along. The process groups are also recorded in a state file: a re-run first
stops any of them still alive (a forked worker that outlived its parent would hold the port or the GPU)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from baize.io.errors import EndpointError, UsageError
from baize.io.secrets import redact
from baize.llm.endpoint import describe_url
from baize.llm.preflight import check_endpoints

logger = logging.getLogger("baize")
PLACEHOLDERS = ("model", "gguf", "host", "port")


def serve_arguments(template: str, model: str, url: str, gguf: str | None = None) -> list[str]:
    """The argv that serves `model` at `url`; one line naming the template when it cannot be filled in."""
    parts = urlsplit(url)
    if not parts.port:
        raise UsageError(f"serve_command: the URL {url} names no port, so there is nowhere to start a server on: "
                         "give each sample_base_urls entry its port, e.g. http://127.0.0.1:8100/v1")  # fmt: skip
    try:
        values = {"model": model, "gguf": gguf or model, "host": parts.hostname, "port": parts.port}
        return [arg.format(**values) for arg in shlex.split(template)]
    except (KeyError, IndexError, ValueError) as error:
        raise UsageError(f"serve_command {template!r}: {error!s} is not a placeholder it can fill in; it takes "
                         f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}") from None  # fmt: skip


def public_command(template: str) -> str:
    """The template as records and cards show it: known secrets redacted, and the value of any option named like a
    key or token (`--api-key X`) masked."""
    words = shlex.split(redact(template))
    masked = [
        "***" if i and re.fullmatch(r"--?[\w-]*(key|token|secret)[\w-]*", words[i - 1], re.I) else word
        for i, word in enumerate(words)
    ]
    return shlex.join(masked)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stat(pid: int | str) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (Linux): state, ppid, pgrp, ..., start time at [19]."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _started_at(pid: int) -> str | None:
    """The process's start time: with the pid, it tells a recorded process from a later one that got its pid."""
    fields = _stat(pid)
    return fields[19] if fields else None


def _left_in_group(pgid: int, since: str = "0") -> bool:
    """Whether a live process of group `pgid` started at or after `since` (the recorded leader's start time): the
    leader itself, or a worker it forked that outlived it (the leader may be gone, reaped by init). Zombies have
    exited: they do not count."""
    if not Path("/proc/self/stat").exists():  # no procfs: ask the kernel whether the group has any process
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(entry.name)
        if fields and fields[0] != "Z" and int(fields[2]) == pgid and int(fields[19]) >= int(since):
            return True
    return False


def stop_group(pid: int, grace: float = 20.0) -> None:
    """SIGTERM to the process group led by `pid`, SIGKILL after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # our own server: reaped here
            if not _left_in_group(pid):
                return
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)


class Engines:
    """The servers of one model at `urls`, started from `template`: `serve(model)` returns the URLs once they
    answer, keeping the servers when they already serve `model`; `stop()` ends them. Logs go to `log_dir`."""

    def __init__(self, template: str, urls: list[str], state_file: Path, log_dir: Path, *,
                 api_key_env: str = "OPENAI_API_KEY", ready_timeout: float = 900):  # fmt: skip
        self.template, self.urls, self.state_file, self.log_dir = template, list(urls), state_file, log_dir
        self.api_key_env = api_key_env
        self.ready_timeout = ready_timeout
        self.model: str | None = None
        self.processes: list[subprocess.Popen] = []
        self.starts = 0
        self.seconds_starting = 0.0

    def __enter__(self) -> Engines:
        self.stop_leftovers()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop_leftovers(self) -> None:
        """Stop the servers an earlier run recorded and left running (it was killed before it could stop them)."""
        if not self.state_file.exists():
            return
        for entry in json.loads(self.state_file.read_text()).get("processes", []):
            if entry["started_at"] is not None and _left_in_group(entry["pid"], entry["started_at"]):
                logger.info(
                    "serve: stopping pid %d (%s), left running by an earlier run", entry["pid"], entry["model"]
                )
                stop_group(entry["pid"])
        self.state_file.unlink()

    def _record(self) -> None:
        entries = [{"pid": p.pid, "started_at": _started_at(p.pid), "model": self.model} for p in self.processes]
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({"processes": entries}, indent=2) + "\n")

    @property
    def takes_gguf(self) -> bool:
        return "{gguf}" in self.template

    def serve(self, model: str, gguf: str | None = None) -> list[str]:
        """Servers on `model` (a folder; `gguf`: the same model as a GGUF file, for a template with {gguf})."""
        if self.model == model and all(p.poll() is None for p in self.processes):
            return self.urls
        self.stop()
        started = time.perf_counter()
        self.model = model
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for url in self.urls:
            argv = serve_arguments(self.template, model, url, gguf)
            log_path = self.log_dir / f"serve-{urlsplit(url).port}.log"
            with log_path.open("a") as log:
                log.write(f"\n=== baize: {public_command(shlex.join(argv))}\n")
                log.flush()
                try:
                    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True, preexec_fn=_die_with_parent)  # fmt: skip
                except OSError as error:
                    raise UsageError(f"serve_command: cannot start {argv[0]!r} ({error.strerror}): install it, or "
                                     "fix serve_command") from None  # fmt: skip
            process.log_path = log_path
            self.processes.append(process)
        self._record()
        logger.info("serve: %s at %s, waiting for GET /models", model, ", ".join(map(describe_url, self.urls)))
        for url, process in zip(self.urls, self.processes, strict=True):
            self._wait_until_up(url, process)
        self.starts += 1
        self.seconds_starting += time.perf_counter() - started
        return self.urls

    def _wait_until_up(self, url: str, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if process.poll() is not None:
                tail = [line for line in process.log_path.read_text(errors="replace").splitlines() if line.strip()]
                last = redact(tail[-1].strip())[:300] if tail else "no output"
                self.stop()
                raise EndpointError(f"serve_command exited with code {process.returncode} before {describe_url(url)} "
                                    f"answered (last line: {last}); its log: {process.log_path}")  # fmt: skip
            try:
                check_endpoints([("server", url, self.api_key_env)], timeout=5)
                return
            except EndpointError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EndpointError(f"the server started by serve_command did not answer GET {describe_url(url)}"
                                        f"/models within {self.ready_timeout:.0f} s (serve_timeout); its log: "
                                        f"{process.log_path}") from None  # fmt: skip
                time.sleep(1)

    def stop(self) -> None:
        for process in self.processes:
            stop_group(process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.processes, self.model = [], None
        self.state_file.unlink(missing_ok=True)
