"""The report's charts: bars per category for the paper's score and the pairwise outcomes, and per turn."""

from __future__ import annotations

from pathlib import Path

from baize.evaluate.config import SCALE


def plot_charts(results: dict, folder: Path) -> list[str]:
    """Two bar charts with a bar per category: the paper's score % and the pairwise win/tie/loss shares."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    names = [*results["categories"], "overall"]
    blocks = [*results["categories"].values(), results["overall"]]
    model, reference = results["model"], results["reference"]
    written = []

    def mark_unjudged(ax, missing: list[bool]) -> None:
        # An empty slot would read as a score of 0: say that the judge gave no usable verdict there.
        for x, empty in enumerate(missing):
            if empty:
                ax.text(x, 0.5, "no verdict", transform=ax.get_xaxis_transform(), ha="center", va="center",
                        rotation=90, color="grey")  # fmt: skip

    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4))
    scores = [b["score_pct"] or 0 for b in blocks]
    errors = [
        [s - b["score_pct_ci"][0] if b["score_pct_ci"] else 0 for s, b in zip(scores, blocks, strict=True)],
        [b["score_pct_ci"][1] - s if b["score_pct_ci"] else 0 for s, b in zip(scores, blocks, strict=True)],
    ]
    ax.bar(names, scores, yerr=errors, capsize=3, color=["tab:blue"] * (len(names) - 1) + ["tab:orange"])
    ax.axhline(100, color="grey", linestyle="--", linewidth=1)
    mark_unjudged(ax, [b["score_pct"] is None for b in blocks])
    ax.set_ylabel(f"score, % of {reference}")
    ax.set_title(f"{model}: judge score relative to {reference}")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(folder / "scores_by_category.png", dpi=120)
    plt.close(fig)
    written.append("scores_by_category.png")

    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4))
    bottom = [0.0] * len(names)
    for outcome, color in (("win", "tab:green"), ("tie", "tab:gray"), ("loss", "tab:red")):
        shares = [b[outcome] / max(1, b["win"] + b["tie"] + b["loss"]) for b in blocks]
        ax.bar(names, shares, bottom=bottom, color=color, label=outcome)
        bottom = [x + y for x, y in zip(bottom, shares, strict=True)]
    mark_unjudged(ax, [b["win"] + b["tie"] + b["loss"] == 0 for b in blocks])
    ax.set_ylabel("share of judged questions")
    ax.set_ylim(0, 1)
    ax.set_title(f"{model} vs {reference}, both orders (disagreement = tie)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")  # outside: never over a bar
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(folder / "pairwise_by_category.png", dpi=120)
    plt.close(fig)
    written.append("pairwise_by_category.png")
    return written


def plot_turn_charts(results: dict, folder: Path) -> list[str]:
    """Per turn, a bar per category: single-answer grades of both contestants (with single_grading), else the
    paper's score %. Only for multi-turn sets or single grading."""
    turns = results.get("turns") or ({"1": results} if results["overall"].get("model_single_score") else {})
    if not turns:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for turn, blocks in turns.items():
        names = [*blocks["categories"], "overall"]
        rows = [*blocks["categories"].values(), blocks["overall"]]
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4))
        positions = range(len(names))
        if results["overall"].get("model_single_score") is not None:
            for offset, role in ((-0.2, "model"), (0.2, "reference")):
                values = [b.get(f"{role}_single_score") or 0 for b in rows]
                ax.bar([p + offset for p in positions], values, width=0.4, label=results[role])
            ax.set_ylim(0, SCALE)
            ax.set_ylabel(f"mean single-answer grade (1-{SCALE})")
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
        else:
            ax.bar(names, [b["score_pct"] or 0 for b in rows])
            ax.axhline(100, color="grey", linestyle="--", linewidth=1)
            ax.set_ylabel(f"score, % of {results['reference']}")
        ax.set_xticks(list(positions), names, rotation=30)
        ax.set_title(f"{results['model']} vs {results['reference']}: turn {turn}, by category")
        fig.tight_layout()
        name = f"turn{turn}_by_category.png"
        fig.savefig(folder / name, dpi=120)
        plt.close(fig)
        written.append(name)
    return written
