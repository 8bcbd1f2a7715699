"""Pull: a local folder for a Hub repo id, through the HF cache (huggingface_hub's `snapshot_download`), with
resume state left out and errors that name the repo and say what to check."""

from __future__ import annotations

from pathlib import Path

from baize.hub.ids import is_repo_id
from baize.io.errors import HubError
from baize.io.runs import RESUME_STATE_PATTERNS


def _auth_error(error: Exception) -> HubError:
    return HubError(
        f"the Hub rejected the token ({error}). Log in with `hf auth login` or set HF_TOKEN to a token with "
        "write access (https://huggingface.co/settings/tokens)."
    )


def pull(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    repo_type: str = "model",
    token: str | None = None,
    include_checkpoints: bool = False,
    ignore_patterns: list[str] | None = None,
) -> Path:
    """A local folder for a Hub repo id (downloaded into the HF cache, HF_HUB_CACHE) or a local path (as is).

    Resume state (checkpoints, optimizer states) is not downloaded unless `include_checkpoints`. Errors name
    the repo and say what to check."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise HubError(f"{path} is a file; give a model or adapter folder or a Hub repo id")
        return path
    name = str(name_or_path)
    if not is_repo_id(name):
        raise HubError(f"{name!r} is neither a local folder nor a Hub repo id (user/name)")
    try:
        folder = snapshot_download(
            name,
            repo_type=repo_type,
            revision=revision,
            token=token,
            ignore_patterns=(ignore_patterns or []) + ([] if include_checkpoints else RESUME_STATE_PATTERNS),
        )
    except RepositoryNotFoundError as error:
        raise HubError(
            f"{repo_type} repository {name!r} not found on {constants.ENDPOINT}. Check the name; if it is private "
            "or gated, log in with `hf auth login` or set HF_TOKEN."
        ) from error
    except RevisionNotFoundError as error:
        raise HubError(f"revision {revision!r} not found in {name!r}") from error
    except LocalEntryNotFoundError as error:
        raise HubError(
            f"{name!r} is not in the local cache and the Hub could not be reached (offline? HF_HUB_OFFLINE is "
            f"{'on' if constants.HF_HUB_OFFLINE else 'off'}): {error}"
        ) from error
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code in (401, 403):
            raise _auth_error(error) from error
        raise
    return Path(folder)


def redundant_weight_patterns(repo_id: str, revision: str | None = None) -> list[str]:
    """When a model repo has safetensors weights, the other formats it also ships (e.g. huggyllama/llama-7b's
    .bin files) need not be downloaded: transformers loads the safetensors."""
    from huggingface_hub import HfApi

    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
    except Exception:  # the download that follows reports the real problem
        return []
    if any(f.endswith(".safetensors") for f in files):
        return ["*.bin", "*.bin.index.json", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.ot", "*.onnx", "*.gguf"]
    return []


def check_hub_available(name: str, *, repo_type: str = "model", what: str = "model") -> None:
    """Preflight for a Hub repo a run will load: found on the Hub, or (offline: HF_HUB_OFFLINE, or no network) in
    the local cache; else one line saying how to get it, instead of minutes of retries and a traceback. Local
    paths and anything that is not a repo id pass."""
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    if not is_repo_id(name):
        return
    if not constants.HF_HUB_OFFLINE:
        try:
            HfApi().repo_info(name, repo_type=repo_type, timeout=10)
            return
        except RepositoryNotFoundError:
            raise HubError(
                f"{what} {name!r} is not on the Hub ({constants.ENDPOINT}): check the name; if it is private or "
                "gated, log in with `hf auth login` or set HF_TOKEN"
            ) from None
        except Exception as error:  # no network: a cached copy will do
            reason = f"the Hub cannot be reached ({str(error).splitlines()[0][:120]})"
    else:
        reason = "HF_HUB_OFFLINE is on"
    try:
        snapshot_download(name, repo_type=repo_type, local_files_only=True)
    except LocalEntryNotFoundError:
        flag = " --repo-type dataset" if repo_type == "dataset" else ""
        raise HubError(
            f"{what} {name!r} is not in the local Hugging Face cache and {reason}: download it first where there is "
            f"network (`hf download{flag} {name}`, then bring the cache, HF_HOME), or point the recipe at a local copy"
        ) from None
