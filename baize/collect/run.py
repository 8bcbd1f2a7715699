"""The collection loop: seeds not yet in the journal -> bounded-concurrency dialogues -> journal -> outputs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path

from tqdm.auto import tqdm

from baize.collect.browse import BrowsePage
from baize.collect.config import CollectConfig
from baize.collect.journal import (
    JOURNAL_GLOB,
    LEDGER_GLOB,
    Journal,
    JournalState,
    Ledger,
    iter_journals,
    kept_index,
    read_ledger_calls,
    read_ledgers,
)
from baize.collect.output import TRAIN_FILE, build_report, push, write_outputs
from baize.collect.plan import describe, plan_collection, plan_vs_actual
from baize.collect.seeds import check_contamination, seed_table, stream_seeds
from baize.collect.selfchat import (
    Cleaner,
    Dialogue,
    alpaca_dialogue,
    content_hash,
    transcript_dialogue,
    turns_dialogue,
)
from baize.collect.teacher import Teacher
from baize.data.decontaminate import Contamination
from baize.data.dedup import NearDuplicates, dialogue_text
from baize.data.seeds import Seed, SeedStats, check_local_source
from baize.io.errors import BatchWritten, BudgetReached, EndpointError, Rejected, UsageError, request_error_kind
from baize.io.jsonl import write_jsonl_atomically
from baize.io.runs import check_output_dir, claim_step
from baize.llm.batch import batch_label, label_of
from baize.llm.endpoint import billed_usage, describe_error, describe_url, resolve_api_key
from baize.llm.prices import RoleUsage, Usage
from baize.llm.ratelimit import RateLimiter

FAILED_SEEDS_FILE = "failed_seeds.jsonl"
# For resuming and for the operator, never pushed: the journals, spend ledgers, failed seeds, the Batch API state,
# the kept-and-dropped page and a plan (report.json and the card carry the totals).
RESUME_STATE = ["journal*.jsonl", "spend*.jsonl", "failed_seeds.jsonl", "batches/**", "browse.html", "plan.json"]
BATCH_FOLDER = "batches"  # batch: true: request files, batch ids and stored answers (baize.llm.batch)

logger = logging.getLogger("baize.collect")

BUDGET_STOPS = ("max_cost", "max_tokens")
DIALOGUE_FUNCTIONS = {"transcript": transcript_dialogue, "turns": turns_dialogue}


class Collector:
    """Runs the dialogues of one invocation and journals each one as it finishes."""

    def __init__(self, config: CollectConfig, journal: Journal, state: JournalState, todo: int):
        self.config, self.journal, self.state = config, journal, state
        self.cleaner = Cleaner(config)
        self.kept = self.dropped = self.failed = 0
        self.failures: list[dict] = []  # this run's failed seeds: retried by the next run
        self.stopped = "done"
        self.fatal: str | None = None
        self.teacher: Teacher | None = None
        self.ledger: Ledger | None = None  # set by collect(): every teacher call is reserved there first
        self.deferring = False  # first pass: a seed whose call fails goes to `deferred`, tried again after the rest
        self.deferred: list[Seed] = []
        self.batch_stats: dict | None = None  # batch: true: batches sent, re-attached, answers replayed
        self.open_batches: dict[str, str] = {}  # batch: true: batches sent that had not ended when the run stopped
        self.near: NearDuplicates | None = None  # near_duplicate_threshold: the kept dialogues' MinHash index
        self.waiting: BatchWritten | None = None  # batch_offline: the request file the engine has to answer
        self.progress = tqdm(total=todo, desc=f"collect ({config.mode})", unit="dialogue", mininterval=0.5)

    # ------------------------------------------------------------------ stop rules

    def budget_spent(self) -> str | None:
        total = self.state.spent.total
        return self.config.budget_reached(total.cost_usd, total.prompt_tokens + total.completion_tokens)

    def stop_reason(self) -> str | None:
        if self.fatal:
            return "error"
        if self.failed >= self.config.max_failures:
            return "max_failures"
        return self.budget_spent()

    # ------------------------------------------------------------------ one seed

    def fail(self, seed: Seed, reason: str) -> None:
        self.failed += 1
        self.failures.append({"id": seed.id, "seed": seed.text, "reason": reason})

    def record(
        self, seed: Seed, usage: Usage, dialogue: Dialogue | None = None, rejected: Rejected | None = None
    ) -> Future:
        """Journal a finished seed. Runs without awaiting, so the duplicate check and the queued append are atomic;
        the returned future is done once the line is on disk."""
        entry = {
            "id": seed.id,
            "seed": seed.text,
            "source": self.config.source_label,
            "teacher": self.config.teacher,
            # the label baize.data.formats and the shipped sample use for Alpaca rows
            "mode": "single-turn" if self.config.mode == "alpaca" else self.config.mode,
            "usage": usage.summary(),
            "usage_by_role": usage.by_role(),
        }
        if dialogue is not None:
            digest = content_hash(dialogue.messages)
            similar = None
            if digest not in self.state.kept_hashes and self.near is not None:
                similar = self.near.check(seed.id, dialogue_text(dialogue.messages, self.config.near_duplicate_over))
            if digest in self.state.kept_hashes:
                rejected = Rejected("duplicate", "same turns as a kept dialogue", dialogue.raw)
            elif similar is not None:
                rejected = Rejected("near_duplicate", f"near-duplicate of the kept dialogue of seed {similar}")
            else:
                entry.update(status="kept", messages=dialogue.messages, stop=dialogue.stop, hash=digest)
        if rejected is not None:
            entry.update(status="dropped", reason=rejected.reason, detail=rejected.detail[:500])
            if rejected.raw is not None:
                entry["raw"] = rejected.raw
        written = self.journal.submit([entry])
        self.state.done.add(seed.id)
        if entry["status"] == "kept":
            self.state.kept_hashes.add(entry["hash"])
            self.kept += 1
        else:
            self.dropped += 1
        self.tick()
        return written

    def tick(self, n: int = 1) -> None:
        total = self.state.spent.total
        self.progress.set_postfix_str(
            f"kept={self.kept} dropped={self.dropped} failed={self.failed} "
            f"tokens={total.prompt_tokens + total.completion_tokens:,} cost=${total.cost_usd:.4f}",
            refresh=False,
        )
        self.progress.update(n)

    async def one(self, seed: Seed, budget_spent: Callable[[], str | None] | None = None) -> None:
        import openai

        usage = Usage()
        dialogue, rejected = None, None
        try:
            dialogue = await DIALOGUE_FUNCTIONS[self.config.mode](
                self.teacher, seed, self.config, usage, budget_spent=budget_spent or self.budget_spent
            )
            self.cleaner.check(dialogue.messages, seed.text)
        except Rejected as error:
            dialogue, rejected = None, error
        except BudgetReached as reached:  # not started: the seed waits for a run with a larger budget
            if self.stopped == "done":
                self.stopped = reached.reason
            return
        except (openai.APIError, EndpointError) as error:
            kind = request_error_kind(error)  # the rule batch mode uses too (baize.io.errors)
            if kind == "rejected":  # this request (e.g. too long a context), not the endpoint: dropped, not re-paid
                rejected = Rejected("api_error", describe_error(error))
            elif kind == "fatal":  # every other seed would fail the same way: stop the run
                self.fatal = self.fatal or describe_error(error)
                self.fail(seed, describe_error(error))
                self.tick()
                return
            elif self.deferring:  # first pass: to the back of the queue instead of holding a slot through its retries
                self.deferred.append(seed)
                return
            else:  # transient, after the retries: the next run tries it again
                self.fail(seed, describe_error(error))
                logger.warning("seed %s failed after retries (retried on the next run): %s", seed.id, error)
                self.tick()
                return
        except Exception as error:
            self.fail(seed, describe_error(error))
            logger.exception("seed %s failed with an unexpected error (retried on the next run)", seed.id)
            self.tick()
            return
        # done once its journal line is on disk (written by the journal's thread: the event loop goes on meanwhile)
        await asyncio.wrap_future(self.record(seed, usage, dialogue=dialogue, rejected=rejected))

    # ------------------------------------------------------------------ the runs

    async def run_teacher(self, todo: Iterable[Seed]) -> None:
        """Two passes: every seed once with a single try per call, so that fresh seeds do not wait behind failing
        ones, then the seeds that failed with the remaining retries (the same number of attempts in all)."""
        limiter = self.config.rate_limiter()
        self.teacher = Teacher(self.config, limiter, self.state.spent, ledger=self.ledger)
        try:
            self.deferring = self.config.max_retries > 0
            self.teacher.retries = 0 if self.deferring else None
            await self.run_pass(todo)
            self.deferring, again, self.deferred = False, self.deferred, []
            if again and self.stopped == "done" and not self.fatal:
                self.teacher.retries = self.config.max_retries - 1
                await self.run_pass(again)
            elif again:  # the run stopped before their second try: failed this run, retried by the next one
                for seed in again:
                    self.fail(seed, f"not tried again: the run stopped ({self.stopped})")
                    self.tick()
            if self.stopped == "done" and self.fatal:
                self.stopped = "error"
        finally:
            await self.teacher.close()

    async def run_pass(self, seeds: Iterable[Seed]) -> None:
        slots = asyncio.Semaphore(self.config.concurrency)
        tasks: set[asyncio.Task] = set()

        def done(task: asyncio.Task) -> None:
            tasks.discard(task)
            slots.release()

        try:
            for seed in seeds:
                await slots.acquire()
                reason = self.stop_reason()
                if reason:
                    slots.release()
                    self.stopped = reason
                    break
                task = asyncio.create_task(self.one(seed))
                tasks.add(task)
                task.add_done_callback(done)
            await asyncio.gather(*tasks)
        except BaseException:  # Ctrl-C (cancelled) while seeds were in flight: none may outlive the teacher's client
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def run_batches(self, todo: Iterable[Seed], folder: Path) -> None:
        """`batch: true`: the seeds in runs of batch_size, each run sent batch by batch (baize.llm.batch) through the
        same dialogue, parse, clean and journal code as live calls. Batches a killed run left at the provider come
        first: they are paid for, so they are collected and settled before the budget decides anything."""
        config = self.config
        self.teacher = Teacher(config, RateLimiter(), self.state.spent, ledger=self.ledger)
        done = self.state.done
        session = self.teacher.endpoint.use_batches(  # `keep`: answers of unfinished seeds only
            folder, completion_window=config.batch_completion_window, poll_interval=config.batch_poll_interval,
            max_requests=config.batch_size, retries=config.batch_retries, offline=config.batch_offline,
            keep=lambda request_id: label_of(request_id) not in done
        )  # fmt: skip
        try:
            failed = await session.reattach()
            self.settle_paid_calls(session, failed)
            seeds = iter(todo)
            # Seeds with stored answers are paid for: they run whatever the budget says (their calls beyond the
            # stored answers still ask it).
            while self.stopped == "done" or self.paid_seeds_left(session):
                run = list(itertools.islice(seeds, config.batch_size))
                if not run:
                    break
                await session.run(self.one_within_budget(seed, session) for seed in run)
            if self.stopped == "done" and self.fatal:
                self.stopped = "error"
        except BatchWritten as written:  # offline: stop here until the engine has answered
            self.stopped, self.waiting = "waiting_for_batch_results", written
        except BaseException:
            logger.warning("a batch already sent keeps running at the provider: re-run the same command to collect it")
            raise
        finally:
            self.batch_stats = dict(session.stats)
            self.open_batches = session.open_batches()
            await self.teacher.close()

    def paid_seeds_left(self, session) -> bool:
        """Seeds whose answers are stored (paid for) and not yet journaled, while only the budget stopped the run."""
        if self.stopped not in ("done", *BUDGET_STOPS):
            return False
        return any(label not in self.state.done for label in session.labels_with_unused_answers())

    def settle_paid_calls(self, session, failed: dict) -> None:
        """Settle every batch call a killed run reserved and left open: at the usage of its stored answer, at 0 when
        its request failed in the batch or was never uploaded (never billed). Then the budget counts what was
        really billed, not the reservations."""
        if self.ledger is None:
            return
        sent = session.sent_request_ids()
        settled = 0
        for call_id, call in read_ledger_calls(Path(self.config.output_dir)).items():
            if "prompt_tokens" in call or not call.get("batch"):
                continue  # settled, or a live call (its id is no custom_id)
            reserved = RoleUsage(1, call.get("reserved_tokens", 0), 0)
            if call_id in session.results:
                usage, how = billed_usage(session.results[call_id].get("usage"), reserved), "answer"
            elif call_id in failed or call_id not in sent:
                usage, how = RoleUsage(calls=1), "not billed"
            else:
                continue  # sent and still unknown: it stays at its reservation
            self.teacher.price(call["role"], usage)
            self.ledger.append_soon({"call": call_id, "role": call["role"], **usage.as_dict(), "settled": how})
            settled += 1
        if settled:
            self.ledger.flush()
            self.state.spent.roles = read_ledgers(Path(self.config.output_dir)).roles
            logger.info("settled %d calls an earlier run left open, from the provider's batch answers", settled)

    async def one_within_budget(self, seed: Seed, session) -> None:
        """One seed of a batch run, started only while the budget (which holds the reservations of the seeds
        started before it) and the failure limit allow; a seed with answers already paid for always starts."""
        batch_label.set(seed.id)  # its requests' custom_ids start with the seed id
        if session.has_unused_answers(seed.id) and self.stop_reason() in (None, *BUDGET_STOPS):

            def budget_spent() -> str | None:  # its stored answers first, then the budget decides
                return None if session.has_unused_answers(seed.id) else self.budget_spent()

            await self.one(seed, budget_spent)
            return
        reason = self.stop_reason()
        if reason:
            self.stopped = reason
            return
        await self.one(seed)

    def run_alpaca(self, todo: Iterable[Seed]) -> None:
        for seed in todo:
            try:
                dialogue = alpaca_dialogue(seed)
                self.cleaner.check(dialogue.messages, seed.text)
            except Rejected as rejected:
                self.record(seed, Usage(), rejected=rejected)
                continue
            self.record(seed, Usage(), dialogue=dialogue)
        self.journal.flush()

    def summary(self, elapsed: float) -> dict:
        done = self.kept + self.dropped
        summary = {
            "dialogues": done,
            "failed": self.failed,
            "stopped": self.stopped,
            "elapsed_s": round(elapsed, 2),
            "dialogues_per_minute": round(done / elapsed * 60, 1) if elapsed > 0 else 0.0,
        }
        if self.batch_stats is not None:
            summary["batch"] = self.batch_stats
        if self.teacher is not None:
            summary.update(
                rate_limited_responses=self.teacher.rate_limited,
                calls_without_usage=self.teacher.calls_without_usage,
                unusable_replies=self.teacher.endpoint.unusable_replies,
                unpriced=sorted(self.teacher.unpriced),
            )
        return summary


def collect(config: CollectConfig) -> dict:
    """Collect (or resume collecting) into `config.output_dir`; write the outputs; push if asked. Returns the report."""
    output_dir = Path(config.output_dir)
    check_output_dir(output_dir)
    check_local_source(config.seeds_path)  # the checks that need no network first, then the key
    if config.mode != "alpaca":  # the key first: before the seeds are fetched (minutes offline) or anything is paid
        resolve_api_key(config.api_key_env, config.base_url, needed=not config.batch_offline)
    if config.push_to_hub:  # a rejected token is found out now, not after the collection was paid for
        from baize.hub import whoami_name

        whoami_name()
    outputs = [
        output_dir / BATCH_FOLDER,
        *output_dir.glob(JOURNAL_GLOB),
        *output_dir.glob(LEDGER_GLOB),
        *(output_dir / name for name in (TRAIN_FILE, "report.json", "README.md")),
    ]
    table = seed_table(config)  # a Hub table offline is one line before anything is written
    if not config.plan:  # a plan writes plan.json and nothing else: no signature, no journal, no ledger
        claim_step(output_dir, "collect_signature.json", config.shaping_settings(), outputs,
                   overwrite=config.overwrite, what="dialogues", resume_state=RESUME_STATE)  # fmt: skip
    if config.max_cost is not None and config.mode != "alpaca" and config.price(config.teacher_model) is None:
        raise UsageError(f"max_cost is set but `prices` has no entry for {config.teacher_model!r}")
    # Opening repairs a torn last line before anything is read (a plan only reads).
    with (
        contextlib.nullcontext() if config.plan else Journal(output_dir, config) as journal,
        contextlib.nullcontext() if config.plan else Ledger(output_dir, config) as ledger,
    ):
        # spent: every call billed, also those of failed or killed dialogues
        state = JournalState.read(output_dir)
        # The seeds are streamed twice (counting, then collecting), never held as a list: a million-seed source
        # costs the set of seen seed digests only.
        seed_stats = SeedStats()
        contamination = Contamination(config.decontaminate) if config.decontaminate else None
        done_before = sum(seed.id in state.done for seed in stream_seeds(config, table, seed_stats, contamination))
        check_contamination(config, seed_stats)
        todo_count = seed_stats.selected - done_before
        todo = (seed for seed in stream_seeds(config, table, SeedStats(), contamination) if seed.id not in state.done)
        logger.info(
            "%d seeds selected, %d already done in %s, %d to collect (%s mode)%s",
            seed_stats.selected, done_before, output_dir, todo_count, config.mode,
            f"; {seed_stats.contaminated} seeds overlap eval sets {seed_stats.as_dict()['contaminated_by']} and are "
            "left out" if seed_stats.contaminated else "",
        )  # fmt: skip
        if config.plan:  # what it would cost, and nothing sent
            sample = [seed.text for seed in itertools.islice(todo, 100)]
            plan = plan_collection(config, todo_count, sample, state.spent.total.cost_usd)
            logger.info("%s", describe(plan))
            return {"plan": plan}
        spent_before = RoleUsage()
        spent_before.add(state.spent.total)
        collector = Collector(config, journal, state, todo_count)
        if config.near_duplicate_threshold is not None:
            collector.near = kept_index(output_dir, config)
        collector.ledger = ledger
        # The client library is imported before the clock starts: elapsed_s is the collection's own time.
        startup = time.perf_counter()
        if config.mode != "alpaca" and todo_count:
            import openai  # noqa: F401
        startup = time.perf_counter() - startup
        start = time.perf_counter()
        try:
            if config.mode == "alpaca":
                collector.run_alpaca(todo)
            elif todo_count and config.batch:
                asyncio.run(collector.run_batches(todo, output_dir / BATCH_FOLDER))
            elif todo_count:
                asyncio.run(collector.run_teacher(todo))
        except KeyboardInterrupt:
            collector.stopped = "interrupted"
        finally:
            collector.progress.close()
        run = collector.summary(time.perf_counter() - start)
        run["import_s"] = round(startup, 2)

    seed_stats = {**seed_stats.as_dict(), "done_before_run": done_before}
    # The journal is read line by line for the report, and again for the outputs: never held whole.
    report = build_report(iter_journals(output_dir), config, seed_stats, run)
    # What the budget counts: every call, kept dialogue or not, read back from the ledgers, where a call a killed
    # run reserved and this run settled (a re-attached batch) is one call.
    billed = read_ledgers(output_dir)
    report["billed"] = billed.summary()
    this_run = billed.total
    report["this_run_usage"] = {"calls": this_run.calls - spent_before.calls,
                                "prompt_tokens": this_run.prompt_tokens - spent_before.prompt_tokens,
                                "completion_tokens": this_run.completion_tokens - spent_before.completion_tokens}  # fmt: skip
    if (compared := plan_vs_actual(output_dir, run, report)) is not None:
        report["plan_vs_actual"] = compared
    page = BrowsePage(f"{config.source_label}: kept and dropped")
    paths = write_outputs(page.watch(iter_journals(output_dir)), config, report)  # one pass for both
    page.write(output_dir)
    skipped = ""
    if seed_stats["missing_column"]:  # rows that are no seed: said here, not only in report.json
        skipped = (
            f"; {seed_stats['missing_column']} seeds rows without {config.seeds_column!r} skipped (first: row "
            f"{seed_stats['first_missing_row']} of {config.seeds_path}; on_bad_row: error stops on them)"
        )
    logger.info(
        "kept %d, dropped %d %s, failed this run %d, stopped: %s; %s tokens, $%.4f -> %s%s",
        report["kept"], report["dropped_total"], {k: v for k, v in report["dropped"].items() if v},
        run["failed"], run["stopped"], f"{report['tokens']['total']:,}", report["cost_usd"], paths["train"], skipped,
    )  # fmt: skip
    failed_path = output_dir / FAILED_SEEDS_FILE
    write_jsonl_atomically(failed_path, collector.failures)  # this run's failures (the next run retries them)
    counts = f"kept {report['kept']}, dropped {report['dropped_total']}, failed {run['failed']}"
    if collector.open_batches:  # paid for, answers not collected: never a clean exit
        raise EndpointError(
            f"{len(collector.open_batches)} batches sent to {describe_url(config.base_url)} have not ended "
            f"({', '.join(collector.open_batches)}; {counts}): they are paid for; re-run the same command to collect "
            "their answers"
        )
    if collector.fatal:
        raise EndpointError(f"stopped ({counts}): {collector.fatal}")
    if run["stopped"] == "interrupted":
        raise KeyboardInterrupt
    if run["failed"]:
        raise EndpointError(
            f"{run['failed']} seeds failed at {describe_url(config.base_url)} ({counts}; stop: "
            f"{run['stopped'] or 'none'}); they are listed in {failed_path}: re-run the same command to retry them"
        )
    if collector.waiting is not None:  # not a failure: the next step waits for the offline engine's answers
        logger.warning("%s", collector.waiting)
        return report
    if config.push_to_hub:
        push(config, report)
    return report
