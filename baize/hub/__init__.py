"""The Hub side of baize: `push` (an output folder as an adapter, model, dataset or Space repo, resume state and
secrets left out, the card completed) and `pull` (a local folder for a repo id, through the HF cache). Cards are
baize.hub.cards'; Hub ids are baize.hub.ids'."""

from baize.hub.ids import is_repo_id
from baize.hub.pull import pull, redundant_weight_patterns
from baize.hub.push import (
    SECRET_FILE_PATTERNS,
    PushPlan,
    PushResult,
    commit_operations,
    default_repo_id,
    find_secrets,
    plan_adapter_push,
    plan_dataset_push,
    plan_model_push,
    plan_space_push,
    plan_upload,
    push_adapter,
    push_dataset,
    push_plan,
    push_training_output,
    whoami_name,
)
from baize.hub.stack import adapter_of_round, plan_stack_push
from baize.io.errors import HubError
from baize.io.runs import RESUME_STATE_PATTERNS

__all__ = [
    "RESUME_STATE_PATTERNS", "SECRET_FILE_PATTERNS", "HubError", "PushPlan", "PushResult", "adapter_of_round",
    "commit_operations",
    "default_repo_id", "find_secrets", "is_repo_id", "plan_adapter_push", "plan_dataset_push", "plan_model_push",
    "plan_space_push", "plan_stack_push", "plan_upload", "pull", "push_adapter", "push_dataset", "push_plan", "push_training_output",
    "redundant_weight_patterns", "whoami_name",
]  # fmt: skip
