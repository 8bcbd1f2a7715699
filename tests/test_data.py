import json

import pytest
from helpers import sample_dialogues, write_jsonl
from trl import DatasetMixtureConfig
from trl.scripts.utils import DatasetConfig

from baize.data.formats import (
    BAIZE_HEADER,
    alpaca_to_messages,
    baize_to_messages,
    convert_file,
    load_chat_mixture,
    messages_to_baize,
)
from baize.io.errors import DataFormatError, UsageError

ORIGINAL = (
    "The conversation between human and AI assistant.\n"
    "[|Human|] What is LoRA?\n"
    "[|AI|] A low-rank adapter: W + BA with small B and A.\n"
    "[|Human|] Why is it cheap?\n"
    "[|AI|] Only A and B are trained.\n"
    "[|Human|] "
)


def test_baize_to_messages_keeps_every_exchange():
    messages = baize_to_messages(ORIGINAL)
    assert messages == [
        {"role": "system", "content": BAIZE_HEADER},
        {"role": "user", "content": "What is LoRA?"},
        {"role": "assistant", "content": "A low-rank adapter: W + BA with small B and A."},
        {"role": "user", "content": "Why is it cheap?"},
        {"role": "assistant", "content": "Only A and B are trained."},
    ]


def test_one_exchange_transcript_is_kept():
    # The original collector dropped the final exchange, so one-exchange dialogues vanished.
    text = f"{BAIZE_HEADER}\n[|Human|] Hi?\n[|AI|] Hello.\n[|Human|] "
    assert [m["role"] for m in baize_to_messages(text)] == ["system", "user", "assistant"]


def test_round_trip_both_ways():
    assert messages_to_baize(baize_to_messages(ORIGINAL)) == ORIGINAL
    for row in sample_dialogues(6):
        assert baize_to_messages(messages_to_baize(row["messages"]))[1:] == row["messages"]


def test_alpaca_becomes_single_turn():
    assert alpaca_to_messages("Translate to French.", "Good morning", "Bonjour") == [
        {"role": "user", "content": "Translate to French.\n\nGood morning"},
        {"role": "assistant", "content": "Bonjour"},
    ]
    assert alpaca_to_messages("Name a colour.", "", "Blue")[0]["content"] == "Name a colour."


@pytest.mark.parametrize(
    "text, reason",
    [
        ("no tags at all", "no [|Human|]"),
        (f"{BAIZE_HEADER}\n[|Human|] q\n[|Human|] r\n[|AI|] a\n[|Human|] ", "expected role 'assistant'"),
        (f"{BAIZE_HEADER}\n[|Human|] q\n[|Human|] ", "must end with an assistant turn"),
        (f"{BAIZE_HEADER}\n[|Human|] q\n[|AI|] \n[|Human|] ", "empty content"),
    ],
)
def test_malformed_transcripts(text, reason):
    with pytest.raises(DataFormatError, match=reason.replace("[", r"\[").replace("|", r"\|")):
        baize_to_messages(text)


def write_original(path, texts):
    path.write_text(json.dumps([{"topic": f"t{i}", "input": t} for i, t in enumerate(texts)]))
    return path


def test_bad_row_error_names_file_and_row(tmp_path):
    path = write_original(tmp_path / "quora_chat_data.json", [ORIGINAL, ORIGINAL, "broken"])
    mixture = DatasetMixtureConfig(datasets=[DatasetConfig(path="json", data_files=str(path))])
    with pytest.raises(DataFormatError, match=rf"{path}: row 3: no \[\|Human\|\]"):  # rows count from 1
        load_chat_mixture(mixture)


def test_bad_rows_skipped_and_counted(tmp_path):
    path = write_original(tmp_path / "quora_chat_data.json", [ORIGINAL, "broken", ORIGINAL, "also broken"])
    mixture = DatasetMixtureConfig(datasets=[DatasetConfig(path="json", data_files=str(path))])
    dataset, report = load_chat_mixture(mixture, on_bad_row="skip")
    assert len(dataset["train"]) == 2
    assert report.kept[str(path)] == 2
    assert sum(report.skipped.values()) == 2


def test_missing_file_is_named(tmp_path):
    mixture = DatasetMixtureConfig(datasets=[DatasetConfig(path="json", data_files=str(tmp_path / "nope.json"))])
    with pytest.raises(UsageError, match="dataset file not found: .*nope.json"):
        load_chat_mixture(mixture)


def test_mixture_of_formats_with_fractions_and_held_out_rows(tmp_path):
    original = write_original(tmp_path / "quora.json", [ORIGINAL] * 30)
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": f"Say {i}.", "input": "", "output": f"{i}"} for i in range(40)]))
    chat = write_jsonl(tmp_path / "chat.jsonl", sample_dialogues(20))
    mixture = DatasetMixtureConfig(
        datasets=[
            DatasetConfig(path="json", data_files=str(original), fraction=0.5),
            DatasetConfig(path="json", data_files=str(alpaca), fraction=0.25),
            DatasetConfig(path="json", data_files=str(chat), fraction=0.25),
        ],
        test_split_size=10,  # >= 1 means a number of rows, as Baize's 2,000 held-out dialogues
    )
    dataset, report = load_chat_mixture(mixture)
    # TRL's rule: shares 2:1:1 capped by the smallest relative supply -> 30 + 15 + 15 rows.
    assert len(dataset["train"]) + len(dataset["test"]) == 60
    assert len(dataset["test"]) == 10
    assert set(dataset["train"].column_names) == {"messages", "seed", "source", "teacher", "mode"}
    sources = list(dataset["train"]["source"]) + list(dataset["test"]["source"])
    assert sources.count(str(original)) == 30 and sources.count("test") == 15


def test_convert_file_both_ways(tmp_path):
    original = write_original(tmp_path / "in.json", [ORIGINAL, ORIGINAL.replace("LoRA", "QLoRA")])
    chat = tmp_path / "out.jsonl"
    convert_file(original, chat, to="messages")
    rows = [json.loads(line) for line in chat.read_text().splitlines()]
    assert rows[1]["seed"] == "t1" and rows[1]["messages"][1]["content"] == "What is QLoRA?"
    back = tmp_path / "back.json"
    convert_file(chat, back, to="baize")
    assert json.loads(back.read_text()) == json.loads(original.read_text())


def test_a_data_file_given_on_the_command_line_is_loaded():
    from baize.train import parse_args

    *_, mixture = parse_args(
        ["--config", "recipes/baize-smol/sft.yaml", "--datasets", "data/baize-smol/selfchat.jsonl"]
    )
    dataset, report = load_chat_mixture(mixture)
    assert sum(len(split) for split in dataset.values()) == 160
    assert dict(report.kept) == {"data/baize-smol/selfchat.jsonl": 160}


def test_a_broken_json_line_is_named_or_skipped(tmp_path):
    good = json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]})
    path = tmp_path / "chats.jsonl"
    path.write_text(f'{good}\n{{"messages": [oops\n{good}\n')
    mixture = DatasetMixtureConfig(datasets=[DatasetConfig(path="json", data_files=str(path))])
    with pytest.raises(UsageError, match=rf"{path}: line 2: not a JSON object .*on_bad_row: skip"):
        load_chat_mixture(mixture)
    dataset, report = load_chat_mixture(mixture, on_bad_row="skip")
    assert len(dataset["train"]) == 2 and report.skipped["invalid JSON line"] == 1
