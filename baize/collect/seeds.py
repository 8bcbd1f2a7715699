"""The collection stage's seeds: its config's table, column, mode, shard and limit, read by baize.data.seeds."""

from __future__ import annotations

from collections.abc import Iterator

from baize.collect.config import CollectConfig
from baize.data.seeds import Seed, SeedStats, iter_seeds, load_table
from baize.io.errors import UsageError


def seed_table(config: CollectConfig):
    """The seed source as a `datasets.Dataset` (memory-mapped: its rows stay on disk until read)."""
    return load_table(config.seeds_path, config.seeds_name, config.seeds_split)


def stream_seeds(config: CollectConfig, table, stats: SeedStats, contamination=None) -> Iterator[Seed]:
    """This shard's seeds one at a time (a million-seed source is never held as a list); `stats` fills as it goes."""
    return iter_seeds(
        table,
        config.seeds_column,
        stats,
        alpaca=config.mode == "alpaca",
        shard_index=config.shard_index,
        num_shards=config.num_shards,
        limit=config.limit,
        on_bad_row=config.on_bad_row,
        source=config.seeds_path,
        contamination=contamination,
    )


def check_contamination(config: CollectConfig, stats: SeedStats) -> None:
    """A decontamination that would drop most seeds is a wrong eval file more likely than a contaminated source."""
    considered = stats.selected + stats.contaminated
    if considered and stats.contaminated / considered > config.max_contaminated_fraction:
        raise UsageError(
            f"decontaminate {config.decontaminate}: {stats.contaminated} of {considered} seeds of {config.seeds_path} "
            f"overlap the eval sets (over max_contaminated_fraction {config.max_contaminated_fraction}): check the "
            "eval sets named, or raise max_contaminated_fraction"
        )
