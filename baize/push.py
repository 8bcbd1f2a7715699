"""`baize push FOLDER`: upload a stage's output folder to the Hugging Face Hub (adapter or dataset repo).

    baize push runs/baize-smol/sft --repo-id me/baize-smol --base-model HuggingFaceTB/SmolLM2-135M-Instruct
    baize push runs/baize-smol/sdf --repo-id me/baize-smol-v3   # SDF rounds: the best round's adapter and its parents
    baize push runs/selfchat-quora/collect --repo-type dataset --private
    baize push runs/baize-smol/sft --repo-id me/baize-smol --space me/baize-smol-chat   # + a Space running `baize web`
    python -m baize.push FOLDER --dry-run       # what would go up, without touching the network

The work is done by `baize.hub.push_adapter` / `push_dataset`; this module is only the command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from baize.hub import (
    adapter_of_round,
    default_repo_id,
    plan_adapter_push,
    plan_dataset_push,
    plan_model_push,
    plan_space_push,
    plan_stack_push,
    push_plan,
    whoami_name,
)
from baize.hub.cards import model_title
from baize.hub.gguf import plan_gguf_push
from baize.hub.lineage import ROUNDS_FILE, read_lineage
from baize.io.arguments import StageParser
from baize.io.errors import UsageError, configure_logging, run_command

DESCRIPTION = """\
Upload a folder written by a baize stage to the Hugging Face Hub.

  model repos (default): an adapter folder from `baize train` -- adapter weights and config, tokenizer and
    chat template, run summary, and a model card whose metadata (base_model, library_name: peft, datasets,
    license, tags) is completed and whose how-to names the repo -- or a full model folder (`baize merge`).
  a self-distilled stack: an SDF output folder (its best round, or --round N) or a v2/v3 adapter folder goes up
    with every parent that is only on this machine (v1, v2, ... each to REPO_ID-v1, -v2, ...), each sdf.json naming
    its parent's repo, so that `baize chat REPO_ID` anywhere loads base -> v1 -> ... -> the adapter.
  GGUF repos (--gguf): a `baize export` folder's GGUF file(s), Modelfile and export.json, with a card naming the
    model it is a quantised copy of and the commands for llama.cpp, Ollama and LM Studio.
  dataset repos (--repo-type dataset): collected dialogues, SDF scores, ... with their dataset card.

Left out unless asked: checkpoint-*/ folders, optimizer/scheduler/RNG states, training_args.bin and collect
journals (--include-checkpoints uploads them). Never uploaded: credential files, and any file containing an
access token (the push stops and names the file). The local folder is not modified.

Log in first with `hf auth login`, or set HF_TOKEN (a token with write access). The repo is created if needed;
--revision BRANCH creates the branch too.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = StageParser("baize push", DESCRIPTION)
    parser.add_argument("folder", help="output folder to upload, e.g. runs/baize-smol/sft")
    parser.add_argument(
        "--repo_id", help="Hub repo, user/name or org/name (default: <your user>/<folder name, or its parent's>)"
    )
    parser.add_argument(
        "--repo_type", choices=["model", "dataset"], default="model", help="adapter (model) or dataset repo"
    )
    visibility = parser.add_mutually_exclusive_group()
    visibility.add_argument(
        "--private", dest="private", action="store_true", default=None,
        help="private repo (the default for a new dataset repo, as `baize collect --push_to_hub` creates it: check "
        "the seed and teacher licences before making data public)",
    )  # fmt: skip
    visibility.add_argument(
        "--public", dest="private", action="store_false", help="public repo (the default for a new model repo)"
    )
    parser.add_argument(
        "--gguf",
        action="store_true",
        help="FOLDER is a `baize export` folder: push its GGUF file(s) and Modelfile as a GGUF model repo, with a "
        "card (base_model and the quantized relation, the chat template, commands for llama.cpp, Ollama, LM Studio)",
    )
    rounds = (
        "for an SDF folder that ran rounds: the round whose model to push, or best (the last that passed its gate)"
    )
    parser.add_argument("--round", default="best", help=rounds)
    parser.add_argument("--revision", help="branch to push to (created from main if missing; default: main)")
    parser.add_argument("--create_pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument(
        "--base_model",
        help="Hub id of the base model, for the card and the uploaded adapter_config.json (needed when the adapter "
        "was trained on a local or GGUF-converted copy)",
    )
    parser.add_argument("--license", help="license id for the card (default: keep the card's; else 'other')")
    parser.add_argument(
        "--dataset", action="append", default=[], help="Hub dataset id the adapter was trained on (repeatable)"
    )
    parser.add_argument("--include_checkpoints", action="store_true", help="also upload checkpoints and resume state")
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="leave out matching files (repeatable)"
    )
    token_shaped = (
        "upload text shaped like an hf_/sk- key (e.g. placeholders in API dialogues); your real token: never"
    )
    parser.add_argument("--allow_token_shaped_text", action="store_true", help=token_shaped)
    parser.add_argument("--commit_message", help="commit message (default: 'baize push: <folder>')")
    parser.add_argument(
        "--space",
        metavar="SPACE_ID",
        help="also create/update a Gradio Space running `baize web` on the adapter (FOLDER is pushed first; or give "
        "an adapter repo id as FOLDER for the Space alone)",
    )
    parser.add_argument(
        "--dry_run", action="store_true", help="show the files and card that would be uploaded; no network"
    )
    return parser


def cli(argv: list[str] | None = None) -> None:
    run_command("baize push", build_parser, main, argv)


def main(args: argparse.Namespace) -> None:

    configure_logging(logging.WARNING, timestamps=False)
    if args.space and not Path(args.folder).exists():  # an adapter already on the Hub: the Space alone
        push_space(args, args.folder, base_model=args.base_model)
        return
    folder = Path(args.folder)
    if args.repo_type == "model" and (folder / ROUNDS_FILE).is_file():
        folder = adapter_of_round(folder, args.round)
    elif args.round != "best":
        raise UsageError(f"--round: {folder} has no {ROUNDS_FILE} (it is not the output folder of SDF rounds)")
    repo_id = args.repo_id
    if repo_id is None:
        if args.dry_run:
            repo_id = "<user>/<name>"
        else:
            repo_id = (
                f"{whoami_name()}/{model_title(folder)}" if folder != Path(args.folder) else default_repo_id(folder)
            )
    if args.gguf:
        plan = plan_gguf_push(folder, repo_id, base_model=args.base_model, license=args.license, exclude=args.exclude)
    elif args.repo_type == "model" and read_lineage(folder) is not None:
        push_stack(args, folder, repo_id)
        return
    elif args.repo_type == "model" and not (folder / "adapter_config.json").exists():
        plan = plan_model_push(
            folder,
            repo_id,
            base_model=args.base_model,
            license=args.license,
            include_checkpoints=args.include_checkpoints,
            exclude=args.exclude,
        )
    elif args.repo_type == "model":
        plan = plan_adapter_push(
            folder, repo_id, base_model=args.base_model, license=args.license, datasets=args.dataset,
            include_checkpoints=args.include_checkpoints, exclude=args.exclude
        )  # fmt: skip
    else:
        plan = plan_dataset_push(
            folder, repo_id, license=args.license, include_checkpoints=args.include_checkpoints, exclude=args.exclude
        )
    print(plan.describe(), flush=True)
    if args.dry_run:
        print("\n--- README.md (card) ---\n" + str(plan.card))
        return
    private = args.private
    if private is None and args.repo_type == "dataset":  # the same default as `baize collect --push_to_hub`
        private = True
    result = push_plan(
        plan,
        private=private,
        revision=args.revision,
        create_pr=args.create_pr,
        commit_message=args.commit_message,
        allow_token_shaped_text=args.allow_token_shaped_text,
    )
    print(f"Pushed {len(result.files)} file(s) to {result.url} ({result.revision}): {result.commit_url}")
    if args.space:
        push_space(args, repo_id, base_model=plan.card.data.get("base_model") if plan.card else None)


def push_stack(args: argparse.Namespace, adapter: Path, repo_id: str) -> None:
    """A v2/v3 adapter with every parent only this machine has, each to its own repo, the oldest first."""
    plans = plan_stack_push(adapter, repo_id, base_model=args.base_model, license=args.license,
                            datasets=args.dataset, include_checkpoints=args.include_checkpoints,
                            exclude=args.exclude)  # fmt: skip
    for plan in plans:
        print(plan.describe(), flush=True)
        if args.dry_run:
            print("\n--- README.md (card) ---\n" + str(plan.card))
            continue
        result = push_plan(plan, private=args.private, revision=args.revision, create_pr=args.create_pr,
                           commit_message=args.commit_message,
                           allow_token_shaped_text=args.allow_token_shaped_text)  # fmt: skip
        print(f"Pushed {len(result.files)} file(s) to {result.url} ({result.revision}): {result.commit_url}")
    if args.space and not args.dry_run:
        push_space(args, repo_id, base_model=plans[-1].card.data.get("base_model") if plans[-1].card else None)


def push_space(args: argparse.Namespace, adapter: str, base_model: str | None) -> None:
    import shutil

    plan = plan_space_push(adapter, args.space, base_model=base_model, license=args.license)
    try:
        print(plan.describe(), flush=True)
        if args.dry_run:
            print("\n--- README.md (Space card) ---\n" + str(plan.card))
            return
        result = push_plan(plan, private=args.private, commit_message=args.commit_message)
        print(f"Pushed the Space {result.url}: {len(result.files)} file(s), running `baize web {adapter}`")
    finally:
        shutil.rmtree(plan.folder, ignore_errors=True)


if __name__ == "__main__":
    cli(sys.argv[1:])
