"""SDF rounds (`rounds: K`): v1 -> v2 -> v3 -> ..., each new model gated by evaluation.

Round r samples from model r (v1 for round 1), judges, selects and trains model r+1 on model r merged into its
base, with the steps of a single SDF run (round 1 in OUTPUT_DIR, as a plain run; round r >= 2 in
OUTPUT_DIR/round-r, with its own files and signatures, so a killed run resumes in the right round and step). Each
round samples its own prompts (the next `limit` of them) unless `reuse_prompts`.

The gate: model r+1 and model r answer the same held-out questions (greedy, one answer each, through the one
sampler; kept in gate_answers.jsonl), and the one judge compares each pair in both orders (cached in
gate_cache.jsonl). The new model wins a question only when both orders agree. With `gate_mode: pointwise` the judge
scores each answer on its own instead (SDF's pointwise rubric, probability-weighted where the endpoint gives
logprobs) and the higher score wins. The adjusted win rate (wins + ties / 2) gets a bootstrap interval; a round
passes when its lower bound is above 0.5. The gate's settings are kept in rounds.json: a re-run that changes them
is refused (`overwrite: true` re-judges every round's gate under the new ones). Round 1's v2 is the paper's
result and stands whatever its gate says; from round 2 on, a round that does not pass ends the loop, and the best
model is the last one that passed. rounds.json says why the loop stopped and which model is best, with each
round's time and selected answers' mean score; rounds.png charts the gate's win rate by round, and each trained
adapter's card gets the lineage table up to its round (`baize push OUTPUT_DIR` pushes the best round's stack).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from baize.data.seeds import load_table, select_seeds
from baize.hub.lineage import ROUNDS_CARD_HEADING, ROUNDS_FILE, rounds_card_section
from baize.io.errors import SettingsChanged
from baize.io.jsonl import JSONLAppender, read_jsonl, write_text_atomically
from baize.judging.client import JudgeClient
from baize.judging.compare import Compared, comparison_figures, judge_pair, score_each
from baize.judging.rubrics import POINTWISE_100, pair_rubric, render_context
from baize.judging.step import JudgedStep
from baize.llm.generation import SamplingSettings
from baize.llm.sampling import EndpointSampler, LocalSampler, Sampled, SampleRequest, sample_all
from baize.llm.serving import Engines, public_command
from baize.modeling.gguf import convert
from baize.modeling.loading import load_chat_model
from baize.sdf.config import SDFConfig
from baize.sdf.judge import judge_step
from baize.sdf.sample import endpoint_sampler, load_prompts, sample_step
from baize.sdf.select import select_step
from baize.sdf.train import merged_v1, train_step

logger = logging.getLogger("baize.sdf")

ROUNDS_CHART = "rounds.png"
GATE_RUBRIC = pair_rubric(10)
DEFAULT_GATE_QUESTIONS = Path(__file__).parent.parent / "eval_questions.jsonl"


def gate_questions(config: SDFConfig) -> list[dict]:
    path = config.gate_questions_path or str(DEFAULT_GATE_QUESTIONS)
    table = load_table(path, None, "train", key="gate_questions_path")
    column = "question" if "question" in table.column_names else "text"
    seeds, _ = select_seeds(table, column, limit=config.gate_limit)
    return [{"id": seed.id, "question": seed.text} for seed in seeds]


def local_sampler(config: SDFConfig, model: str) -> LocalSampler:
    chat = load_chat_model(model, dtype=config.dtype)
    return LocalSampler(chat, chat.prompt_builder(), batch_size=config.batch_size)


class ServedModels:
    """Where a round's models answer with serve_command: at the servers baize starts on each model's merged folder
    (kept up while they serve the model asked for), prompted by the model's own builder at /v1/completions."""

    def __init__(self, config: SDFConfig, engines: Engines):
        self.config, self.engines = config, engines
        self.merged: dict[str, Path] = {}  # model -> its merged folder, the one the servers load

    def merge(self, config: SDFConfig, model: str) -> Path:
        self.merged[model] = merged_v1(replace(config, model_name_or_path=model))
        return self.merged[model]

    def for_sampling(self, config: SDFConfig, model: str) -> tuple[SDFConfig, Callable[[], list[str]]]:
        """The sample step's config at the servers (its sample_model: the merged folder they load, merged now) and
        the start-up the step calls only when something is left to sample."""
        merged = self.merge(config, model)
        return replace(config, sample_model=str(merged)), functools.partial(self.serve, model)

    def served_file(self, model: str) -> Path:
        """What the servers load: the merged folder, or for a template with {gguf} that folder as a GGUF file."""
        merged = self.merged[model]
        return merged.with_name(merged.name + ".gguf") if self.engines.takes_gguf else merged

    def serve(self, model: str) -> list[str]:
        merged, served = self.merged[model], self.served_file(model)
        if served != merged and not served.exists():  # converted once, beside the folder
            logger.info("serve: converting %s to %s for serve_command's {gguf}", merged, served)
            partial = served.with_name(served.name + ".partial")
            convert(merged, partial, "f16")
            partial.replace(served)
        return self.engines.serve(str(merged), str(served))

    def sampler(self, model: str) -> EndpointSampler:
        self.serve(model)
        served = replace(self.config, model_name_or_path=model, sample_model=str(self.merged[model]), base_model=None,
                         gguf_file=None)  # fmt: skip
        chat = load_chat_model(model, without_weights=True)
        return endpoint_sampler(served, chat, chat.prompt_builder())

    def record(self, model: str) -> dict:
        return {
            "at": self.engines.urls,
            "model": str(self.served_file(model)),
            "command": public_command(self.engines.template),
        }


def gate_answers(config: SDFConfig, folder: Path, models: dict[str, str], questions: list[dict],
                 served: ServedModels | None = None) -> dict:  # fmt: skip
    """{role: {question id: answer}} for the previous and the new model, answered once and kept: in this process, or
    at the servers of `served`."""
    path = folder / "gate_answers.jsonl"
    kept = {(row["role"], row["id"]): row["answer"] for row in read_jsonl(path)}
    settings = SamplingSettings(config.max_new_tokens, 0.0, 1.0, config.seed)  # greedy: the models, not the dice
    for role, model in models.items():
        todo = [q for q in questions if (role, q["id"]) not in kept]
        if not todo:
            continue
        sampler = served.sampler(model) if served else local_sampler(config, model)
        requests = [SampleRequest(q["id"], [{"role": "user", "content": q["question"]}]) for q in todo]
        # appended as each comes: a killed run keeps what was answered; a failure ends the step after the rest
        failing = ("the gate's answering", "questions", "serve_command and its log" if served else "the model")
        with JSONLAppender(path, writer="`baize sdf` gate") as appender:

            def keep(sampled: Sampled, role: str = role) -> None:
                kept[(role, sampled.request.id)] = sampled.samples[0].text
                appender.append({"role": role, "id": sampled.request.id, "answer": sampled.samples[0].text})

            sample_all(sampler, requests, settings, keep, concurrency=config.sample_concurrency, failing=failing)
    return {role: {q["id"]: kept[(role, q["id"])] for q in questions} for role in models}


def gate_settings(config: SDFConfig) -> dict:
    """What decides the gate's verdicts beyond the judge (whose settings sign its cache entries)."""
    return {"mode": config.gate_mode, "questions": config.gate_questions_path, "limit": config.gate_limit,
            "bootstrap_samples": config.gate_bootstrap_samples}  # fmt: skip


def gate(config: SDFConfig, folder: Path, previous: str, new: str, served: ServedModels | None = None) -> dict:
    """Model `new` (A) against model `previous` (B) on the held-out questions: the comparison of two answer sets
    (baize.judging.compare) on the one judged step, verdicts cached in gate_cache.jsonl."""
    questions = gate_questions(config)
    answers = gate_answers(config, folder, {"previous": previous, "new": new}, questions, served)
    pointwise = config.gate_mode == "pointwise"

    async def judge(client: JudgeClient, question: dict) -> Compared:
        context = render_context([{"role": "user", "content": question["question"]}])
        a, b = answers["new"][question["id"]], answers["previous"][question["id"]]
        words = {"a_words": len(a.split()), "b_words": len(b.split())}
        if pointwise:  # SDF's own pointwise rubric and key: the same answer is never scored twice
            new_verdict, previous_verdict = await score_each(client, POINTWISE_100, context, [a, b])
            return Compared(pointwise=True, a_score=new_verdict.value, b_score=previous_verdict.value, **words)
        b_first, a_first = await judge_pair(client, GATE_RUBRIC, context, a, b, question=question["question"])
        return Compared(b_first.value, a_first.value, **words)

    compared: dict[str, Compared] = {}
    step = JudgedStep(config, folder / "gate_cache.jsonl", what="gate questions", desc="gate", unit="question",
                      label=lambda q: q["id"], describe=lambda q: q["id"])  # fmt: skip
    # a gate on part of its questions would decide the loop: the step fails unless every question was judged
    stats = step.run(questions, judge, lambda question, result: compared.update({question["id"]: result}))
    figures = comparison_figures(list(compared.values()), resamples=config.gate_bootstrap_samples, seed=config.seed)
    interval = figures["adjusted_win_rate_ci"]
    return {
        "new": new, "previous": previous, "mode": config.gate_mode, "questions": len(questions),
        "judged": figures["win"] + figures["tie"] + figures["loss"], **figures,
        "passed": bool(interval and interval[0] > 0.5), "request_errors": stats["request_errors"],
    }  # fmt: skip


def plot_rounds(rounds: list[dict], path: Path) -> None:
    """The gate's adjusted win rate of each round's new model against its parent, with its interval."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rounds) + 2), 3.5))
    names = [f"v{r['round'] + 1} vs v{r['round']}" for r in rounds]
    rates = [r["gate"]["adjusted_win_rate"] or 0 for r in rounds]
    cis = [r["gate"]["adjusted_win_rate_ci"] or [rate, rate] for r, rate in zip(rounds, rates, strict=True)]
    errors = [[rate - ci[0] for rate, ci in zip(rates, cis, strict=True)],
              [ci[1] - rate for rate, ci in zip(rates, cis, strict=True)]]  # fmt: skip
    colours = ["tab:green" if r["gate"]["passed"] else "tab:grey" for r in rounds]
    ax.bar(names, rates, yerr=errors, capsize=4, color=colours)
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("adjusted win rate vs parent")
    ax.set_title("SDF rounds: the gate (green: passed)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def record_lineage(root: Path, summary: dict) -> None:
    """rounds.json, rounds.png, and in each trained adapter's card the table of the rounds up to its own."""
    write_text_atomically(root / ROUNDS_FILE, json.dumps(summary, indent=2) + "\n")
    plot_rounds(summary["rounds"], root / ROUNDS_CHART)
    for number, entry in enumerate(summary["rounds"], start=1):
        adapter = Path(entry["trained"])
        card = adapter / "README.md"
        if not card.exists():
            continue
        shutil.copyfile(root / ROUNDS_CHART, adapter / ROUNDS_CHART)
        text = card.read_text()
        cut = text.find(ROUNDS_CARD_HEADING)
        text = (text[:cut] if cut >= 0 else text).rstrip() + "\n"
        card.write_text(text + rounds_card_section(summary["rounds"][:number], ROUNDS_CHART))


def run_rounds(config: SDFConfig, train_argv: list[str] | None = None) -> dict:
    """Every round in turn (each one resumes where it stopped); rounds.json after each. With serve_command, the
    servers baize starts answer for each round's model, and none outlives the run."""
    with serving(config) as served:
        return _run_rounds(config, train_argv, served)


@contextlib.contextmanager
def serving(config: SDFConfig):
    """ServedModels over the servers of serve_command (None without one), all stopped when the block ends."""
    if not config.serve_command:
        yield None
        return
    root = Path(config.output_dir)
    engines = Engines(config.serve_command, config.sample_base_urls, root / "serving.json", root / "serve-logs",
                      api_key_env=config.sample_api_key_env, ready_timeout=config.serve_timeout)  # fmt: skip
    with engines:
        yield ServedModels(config, engines)


def _run_rounds(config: SDFConfig, train_argv: list[str] | None, served: ServedModels | None) -> dict:
    root = Path(config.output_dir)
    per_round = config.limit or max(1, len(load_prompts(replace(config, limit=None))) // config.rounds)
    summary = {"rounds": [], "best": str(config.model_name_or_path), "best_round": 0, "stopped": "rounds done"}
    model = str(config.model_name_or_path)
    earlier = json.loads((root / ROUNDS_FILE).read_text()) if (root / ROUNDS_FILE).exists() else {"rounds": []}
    settings = gate_settings(config)
    kept = earlier.get("gate_settings", settings)
    if earlier["rounds"] and kept != settings and not config.overwrite:
        changed = ", ".join(f"{k} {kept.get(k)!r} -> {v!r}" for k, v in settings.items() if kept.get(k) != v)
        raise SettingsChanged(f"{root / ROUNDS_FILE}: these rounds were gated with other settings ({changed}); set them "
                         "back, or pass --overwrite true to judge every round's gate again under the new ones")  # fmt: skip
    summary["gate_settings"] = settings
    finished = {entry["round"]: entry for entry in earlier["rounds"]}
    for number in range(1, config.rounds + 1):
        clock = Clock(served)
        folder = root if number == 1 else root / f"round-{number}"
        later = {} if number == 1 else {"base_model": None, "gguf_file": None,
                                        "merged_dir": str(folder / f"v{number}-merged")}  # fmt: skip
        round_config = replace(
            config, output_dir=str(folder), model_name_or_path=model, rounds=1, step="all", limit=per_round,
            prompts_offset=0 if config.reuse_prompts else (number - 1) * per_round, **later,
        )  # fmt: skip
        argv = list(train_argv or []) + ([] if number == 1 else ["--output_dir", str(folder / f"v{number + 1}")])
        serve = None
        if served:  # the servers load the model merged into its base: the folder the next LoRA trains on, too
            with clock("merge"):
                round_config, serve = served.for_sampling(round_config, model)
        offline = config.round_method != "grpo"  # grpo: the trainer samples and the judge rewards as it trains
        steps: dict = {}
        with clock("sample") if offline or served else contextlib.nullcontext():
            if offline:
                steps["sample"] = sample_step(round_config, preflight_judge=True, serve=serve)
            if served:  # the parent's gate answers while it is served (the gate answers the new model's later)
                gate_answers(round_config, folder, {"previous": model}, gate_questions(round_config), served)
                served.engines.stop()  # the training needs the memory
        if offline:
            with clock("judge"):
                steps["judge"] = judge_step(round_config)
            with clock("select"):
                steps["select"] = select_step(round_config)
        with clock("train"):
            trained = train_step(round_config, argv)
            new = trained["output_dir"]
        with clock("gate"):
            if served:  # the new model merged into the folder the next round trains on (and serves it from)
                next_merged = root / f"round-{number + 1}" / f"v{number + 1}-merged"
                # (on its parent's merged folder, the base of its adapter: not the recipe's v1 base)
                served.merge(replace(round_config, merged_dir=str(next_merged), base_model=None, gguf_file=None), new)
            gate_result = gate(round_config, folder, model, new, served)
        select = steps.get("select", {})  # none for grpo
        result = {
            "round": number, "method": config.round_method, "model": model, "trained": new,
            "selected": select.get("selected"), "preferences": select.get("preferences"),
            "selected_score": select.get("best_score"), "gate": gate_result,
            "reward": trained["lineage"]["selection"] if not offline else None,
            "served": {"sampled": served.record(model), "new": served.record(new)} if served else "in-process",
        }  # fmt: skip
        # Wall seconds of the run that finished the round (kept as they were when a finished loop is re-run).
        result["seconds"] = finished.get(number, {}).get("seconds", clock.total())
        result["timings"] = finished.get(number, {}).get("timings", clock.seconds)
        summary["rounds"].append(result)
        passed = result["gate"]["passed"]
        if number == 1 or passed:
            summary["best"], summary["best_round"] = new, number
        record_lineage(root, summary)
        logger.info("round %d: %s vs %s: adjusted win rate %s %s -> %s", number, Path(new).name, Path(model).name,
                    result["gate"]["adjusted_win_rate"], result["gate"]["adjusted_win_rate_ci"],
                    "passed" if passed else "no gain")  # fmt: skip
        if number > 1 and not passed:
            summary["stopped"] = f"no gain at round {number}: the gate's lower bound is not above 0.5"
            break
        model = new
    record_lineage(root, summary)
    logger.info("rounds: best model %s (round %d); stopped: %s", summary["best"], summary["best_round"],
                summary["stopped"])  # fmt: skip
    return summary


class Clock:
    """Wall seconds of a round's parts; with served models, the servers' start-up time apart (`serve_start`)."""

    def __init__(self, served: ServedModels | None):
        self.served, self.seconds, self.started = served, {}, time.perf_counter()

    def starting(self) -> float:
        return self.served.engines.seconds_starting if self.served else 0.0

    @contextlib.contextmanager
    def __call__(self, part: str):
        started, starting = time.perf_counter(), self.starting()
        yield
        serve_start = self.starting() - starting
        self.seconds[part] = round(time.perf_counter() - started - serve_start, 1)
        if serve_start:
            self.seconds["serve_start"] = round(self.seconds.get("serve_start", 0) + serve_start, 1)

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 1)
