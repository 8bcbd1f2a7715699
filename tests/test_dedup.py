"""Data you can trust: near-duplicates (baize.data.dedup, MinHash LSH) and decontamination against eval sets
(baize.data.decontaminate), in collection (before anything is paid for) and as `baize data dedup|decontaminate`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openai_server import openai_server_fixture  # noqa: F401
from test_collect import REPO, config_for, journal, seed_of
from test_errors import one_line, run

from baize.collect import collect
from baize.data.decontaminate import Contamination
from baize.data.dedup import dialogue_text, near_duplicate_clusters, shingles
from baize.io.errors import UsageError

ANSWER = (
    "[Human] Could you explain {topic} in simple words please?\n[AI] Sure. {topic} is a topic with a short history, "
    "a few key ideas and many practical uses in everyday life, from the kitchen to the office and the garden.\n"
    "[Human] What is the most important idea about it?\n[AI] The most important idea is to start small, measure "
    "what happens, and improve step by step until it works well for you."
)


def test_shingles_and_near_duplicate_clusters_keep_the_first_of_each():
    assert shingles("A b, C d!", size=2) == ["a b", "b c", "c d"] and shingles("one two", size=3) == ["one two"]
    base = ANSWER.format(topic="tea")
    items = [
        ("1", base),
        (
            "2",
            "Could you explain coffee? It grows on shrubs in the tropics; the beans are roasted, ground and brewed.",
        ),
        ("3", base.replace("short history", "long history").replace("start small", "begin small")),  # paraphrase
        ("4", "Something else entirely: how tectonic plates build mountains over millions of years."),
        ("5", base + " Thanks!"),
    ]
    assert near_duplicate_clusters(items) == {"3": "1", "5": "1"}
    assert near_duplicate_clusters(list(reversed(items))) == {"1": "5", "3": "5"}  # deterministic by order
    human = dialogue_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "human_turns")
    assert human == "q"


def test_contamination_by_eight_word_ngrams_and_short_eval_texts(tmp_path):
    project = Contamination(["project"])
    question = "How can I build a habit of reading before bed when I usually end up scrolling on my phone instead?"
    assert project.match(f"Tell me, {question.lower()}") == {"project"}
    assert project.match("How do I build a birdhouse from scrap wood?") == set()
    mine = tmp_path / "prompts.txt"
    mine.write_text("Name three primes\nWrite a limerick about a cat who loves the rain\n")
    own = Contamination(["project", str(mine)])
    assert own.match("Please name three primes, quickly.") == {str(mine)}  # shorter than 8 words: whole match
    assert own.match("write a limerick about a cat who loves the rain and the sea") == {str(mine)}
    with pytest.raises(UsageError, match="neither project, mt_bench, a Hub dataset id nor a file"):
        Contamination(["nope.jsonl"])


def test_collection_drops_eval_questions_before_paying_and_near_duplicates_when_asked(openai_server, tmp_path):
    # every dialogue says the same, but for one word: near-duplicates, not exact ones
    openai_server.responder = lambda request: ANSWER.format(topic="the same thing") + f" ({seed_of(request)})"
    question = "What causes the seasons on Earth, and why are they not simply the result of the planet's changing distance from the Sun?"  # noqa: E501
    seeds = ["topic one", question, "topic two", "topic three"]
    config = config_for(openai_server, tmp_path, seeds, near_duplicate_threshold=0.7)
    report = collect(config)
    assert report["seeds"]["contaminated"] == 1 and report["seeds"]["contaminated_by"] == {"project": 1}
    assert all(seed_of(r) != question for r in openai_server.requests)  # never sent, never paid
    assert report["kept"] == 1 and report["dropped"]["near_duplicate"] == 2
    dropped = [e for e in journal(config) if e["status"] == "dropped"]
    assert all("near-duplicate of the kept dialogue of seed" in e["detail"] for e in dropped)
    card = (Path(config.output_dir) / "README.md").read_text()
    assert "checked against project (8-word n-gram overlap); 1 matching seeds were left out" in card
    page = (Path(config.output_dir) / "browse.html").read_text()  # what was kept and dropped, and why
    assert "<td>near_duplicate</td><td>2</td>" in page and "Dropped (2 of 2 shown)" in page and "topic two" in page

    # a resumed run compares new dialogues with those kept before
    config = config_for(openai_server, tmp_path, [*seeds, "topic four"], near_duplicate_threshold=0.7)
    again = collect(config)
    assert again["kept"] == 1 and again["dropped"]["near_duplicate"] == 3

    # without the threshold (the default) only exact duplicates are dropped; another folder
    openai_server.responder = lambda request: ANSWER.format(topic="the same thing")
    plain = collect(config_for(openai_server, tmp_path / "plain", ["topic one", "topic two"]))
    assert plain["dropped"]["duplicate"] == 1 and plain["dropped"]["near_duplicate"] == 0


def test_a_decontamination_that_would_drop_most_seeds_stops_before_collecting(openai_server, tmp_path):
    questions = [json.loads(line)["question"] for line in (REPO / "baize" / "eval_questions.jsonl").open()][:3]
    config = config_for(openai_server, tmp_path, [*questions, "topic one"])
    with pytest.raises(UsageError, match=r"3 of 4 seeds .* overlap the eval sets \(over max_contaminated_fraction"):
        collect(config)
    assert not openai_server.requests


@pytest.mark.slow
def test_baize_data_dedup_and_decontaminate_write_the_kept_rows_and_a_report(tmp_path):
    base = ANSWER.format(topic="tea").replace("[Human] ", "").replace("[AI] ", "").split("\n")
    rows = [
        {"messages": [{"role": "user", "content": base[0]}, {"role": "assistant", "content": base[1]}]},
        {"messages": [{"role": "user", "content": "Something else?"}, {"role": "assistant", "content": "Yes, else."}]},
        {"messages": [{"role": "user", "content": base[0]}, {"role": "assistant", "content": base[1] + " Indeed."}]},
        {"messages": [{"role": "user", "content": "What are the main differences between weather and climate, and why?"},
                      {"role": "assistant", "content": "Weather is today; climate is decades."}]},
    ]  # fmt: skip
    source = tmp_path / "chat.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = subprocess.run([sys.executable, "-m", "baize.cli", "data", "dedup", str(source), "-o", str(tmp_path / "d.jsonl")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 3
    report = json.loads((tmp_path / "d.jsonl.report.json").read_text())
    assert report["dropped"] == [{"row": 3, "reason": "near_duplicate", "of_row": 1}]

    result = run(sys.executable, "-m", "baize.curate", "decontaminate", str(source), "-o", str(tmp_path / "c.jsonl"))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "c.jsonl.report.json").read_text())
    assert report["dropped"] == [{"row": 4, "reason": "contaminated", "eval_sets": ["project"]}]
    assert report["by_eval_set"] == {"project": 1}

    strict = run(sys.executable, "-m", "baize.curate", "decontaminate", str(source), "-o", str(tmp_path / "x.jsonl"),
                 "--max_fraction", "0.1")  # fmt: skip
    assert strict.returncode == 2 and "over --max_fraction 0.1" in one_line(strict, "baize data")
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.slow
def test_training_rows_that_overlap_an_eval_set_are_dropped_counted_and_on_the_card(tmp_path, tiny_llama_dir):
    from helpers import sample_dialogues, train, write_jsonl, write_recipe
    from huggingface_hub import ModelCard

    question = "What is inflation, and what are the main tools a central bank uses to influence it?"
    rows = sample_dialogues() + [
        {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "Rising prices."}]}
    ]
    recipe = write_recipe(tmp_path, tiny_llama_dir, write_jsonl(tmp_path / "chat.jsonl", rows), max_steps=1)
    summary = train(recipe)
    assert summary["data"]["decontaminated_against"] == ["project"] and summary["data"]["contaminated"] == {
        "project": 1
    }
    card = ModelCard.load(tmp_path / "run" / "README.md").text
    assert "checked against project: project 1 rows dropped" in card
