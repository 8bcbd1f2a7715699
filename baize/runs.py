"""Run folders: the signature of the settings that shape a run's outputs, written when it starts and compared on
every re-run, so that a finished run is not trained again and a changed setting is refused instead of mixed in."""

from __future__ import annotations

import json
from pathlib import Path

from baize.jsonl import write_text_atomically

SIGNATURE_FILE = "run_signature.json"


class SettingsChanged(ValueError):
    """A re-run in an output folder that holds a run made with other settings."""


def normalise(value):
    """Plain JSON values (dataclasses, paths, enums as their strings), so signatures compare as written."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def read_signature(folder: str | Path) -> dict | None:
    path = Path(folder) / SIGNATURE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_signature(folder: str | Path, signature: dict) -> None:
    """Atomically: a crash never leaves half a signature behind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(folder / SIGNATURE_FILE, json.dumps(signature, indent=2, sort_keys=True) + "\n")


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


def check_same_settings(folder: str | Path, settings: dict, how_to_start_over: str) -> dict | None:
    """The folder's earlier signature, or SettingsChanged naming every setting that differs."""
    earlier = read_signature(folder)
    if earlier is None:
        return None
    changed = differences(earlier["settings"], normalise(settings))
    if changed:
        shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise SettingsChanged(
            f"{folder} holds a run made with other settings ({shown}): use a new --output_dir, or "
            f"{how_to_start_over} to start over"
        )
    return earlier
