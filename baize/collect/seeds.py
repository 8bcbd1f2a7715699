"""The collection stage's seeds: its config's table, column, mode, shard and limit, read by baize.seeds."""

from __future__ import annotations

from baize.collect.config import CollectConfig
from baize.seeds import Seed, SeedStats, load_table, select_seeds


def load_seeds(config: CollectConfig) -> tuple[list[Seed], SeedStats]:
    table = load_table(config.seeds_path, config.seeds_name, config.seeds_split)
    return select_seeds(
        table,
        config.seeds_column,
        alpaca=config.mode == "alpaca",
        shard_index=config.shard_index,
        num_shards=config.num_shards,
        limit=config.limit,
    )
