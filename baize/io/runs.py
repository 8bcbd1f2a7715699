"""Run folders: the signature of the settings that shape a run's outputs, written when it starts and compared on
every re-run, so that a finished run is not trained again and a changed setting is refused instead of mixed in."""

from __future__ import annotations

import json
import os
import posixpath
import shutil
from pathlib import Path

from baize.io.errors import SettingsChanged, UsageError
from baize.io.jsonl import write_text_atomically

SIGNATURE_FILE = "run_signature.json"


# Resume state every output folder may hold: signatures (settings with local paths, for resuming here) and the
# Trainer's checkpoints and states. A stage's own resume files are declared by the stage, in its signature
# (`claim_step(resume_state=...)`), and read back by `declared_resume_state`.
RESUME_STATE_PATTERNS = [
    "*signature.json",
    "checkpoint-*",
    "**/checkpoint-*/**",
    "global_step*",
    "training_args.bin",
    "**/training_args.bin",
    "optimizer.pt",
    "optimizer.bin",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "trainer_state.json",
    # the stages' own resume files, also where no signature declares them (a folder put together by hand)
    "journal*.jsonl",
    "spend*.jsonl",
    "failed_seeds.jsonl",
    "batches/**",
    "judge-batches/**",
]


def normalise(value):
    """Plain JSON values (dataclasses, paths, enums as their strings), so signatures compare as written."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def fingerprint(name_or_path: str) -> str:
    """What identifies a model's weights: for a local folder a hash of its adapter (its bytes) or of its model
    files' names, sizes and modification times (full models are too big to hash on every run); else the id."""
    import hashlib

    folder = Path(name_or_path)
    if not folder.is_dir():
        return name_or_path
    digest = hashlib.sha256()
    adapter = folder / "adapter_model.safetensors"
    if adapter.exists():
        digest.update(adapter.read_bytes())
    else:
        for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def read_signature(folder: str | Path, name: str = SIGNATURE_FILE) -> dict | None:
    path = Path(folder) / name
    return json.loads(path.read_text()) if path.exists() else None


def write_signature(folder: str | Path, signature: dict, name: str = SIGNATURE_FILE) -> None:
    """Atomically: a crash never leaves half a signature behind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(folder / name, json.dumps(normalise(signature), indent=2, sort_keys=True) + "\n")


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'key: old -> new' for every leaf that differs."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return lines


def check_same_settings(
    folder: str | Path, settings: dict, how_to_start_over: str, name: str = SIGNATURE_FILE, what: str = "a run"
) -> dict | None:
    """The folder's earlier signature, or SettingsChanged naming every setting that differs."""
    earlier = read_signature(folder, name)
    if earlier is None:
        return None
    changed = differences(earlier["settings"], normalise(settings))
    if changed:
        shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise SettingsChanged(
            f"{folder} holds {what} made with other settings ({shown}): use a new --output_dir, or "
            f"{how_to_start_over} to start over"
        )
    return earlier


def check_output_dir(folder: str | Path) -> None:
    """Before any work, and without creating anything: the output folder is a folder this user can write (or can
    be created where it is named), or one line saying what is wrong with it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"output_dir {folder} is a file, not a folder: give another --output_dir")
    existing = folder
    while not existing.exists():  # the nearest folder that exists is where the new one will be made
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"output_dir {folder}: {existing} is a file, not a folder: give another --output_dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"output_dir {folder}: {existing} cannot be written by this user: give a folder you can write"
        )


def has_content(path: Path) -> bool:
    """A non-empty output file, or a folder holding one."""
    if path.is_dir():
        return any(p.is_file() and p.stat().st_size for p in path.rglob("*"))
    return path.is_file() and path.stat().st_size > 0


def remove(path: Path) -> None:
    """An output file, or an output folder (a Batch API session's) with everything in it."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def declared_resume_state(folder: str | Path) -> list[str]:
    """The resume-state patterns the stages declared in the signatures under `folder` (relative to it)."""
    folder = Path(folder)
    patterns: list[str] = []
    for path in sorted(folder.rglob("*signature.json")):
        try:
            declared = json.loads(path.read_text()).get("resume_state") or []
        except (OSError, ValueError):
            declared = []
        prefix = path.parent.relative_to(folder).as_posix()
        for pattern in declared:
            patterns.append(pattern if prefix == "." else posixpath.normpath(f"{prefix}/{pattern}"))
    return list(dict.fromkeys(patterns))


def claim_step(
    folder: str | Path, name: str, settings: dict, outputs: list[Path], *, overwrite: bool, what: str,
    resume_state: list[str] | None = None,
) -> None:  # fmt: skip
    """Before a resumable step writes `outputs` in `folder`: the same settings go on where the last run stopped;
    other settings are refused (SettingsChanged), or with `overwrite` the step's old outputs are deleted first.
    Outputs without a signature are refused too: nothing says how they were made.
    `resume_state`: the patterns of the step's files that are for resuming here, never pushed (written into the
    signature, where `baize push` reads them)."""
    try:
        earlier = check_same_settings(folder, settings, "--overwrite true", name=name, what=what)
    except SettingsChanged:
        # A signature binds the folder only once work that depends on it exists: after a start that failed
        # before writing anything (a bad seeds file, a missing model), the corrected command goes ahead.
        if not overwrite and any(has_content(path) for path in outputs):
            raise
        earlier = None
        for path in outputs:
            remove(path)
    if earlier is None:
        present = [path for path in outputs if has_content(path)]
        if present and not overwrite:
            raise SettingsChanged(
                f"{present[0]} was written without a record of its settings: use a new --output_dir, or "
                "--overwrite true to start that step over"
            )
        for path in present:
            remove(path)
        write_signature(folder, {"settings": settings, "resume_state": resume_state or []}, name)
