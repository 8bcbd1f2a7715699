"""The questions: the project's own sets or any Hub dataset / local file, one or several turns each."""

from __future__ import annotations

from baize.data.seeds import column_values, load_table
from baize.evaluate.config import QUESTIONS_FILE, EvalConfig
from baize.io.errors import MissingColumn, UsageError


def load_questions(config: EvalConfig) -> list[dict]:
    """Question rows {question_id, category, question}, in file order, after the limits."""
    path = config.questions_path or str(QUESTIONS_FILE)
    table = load_table(path, config.questions_name, config.questions_split, key="questions_path")
    try:
        texts = column_values(table, config.question_column)
    except (KeyError, MissingColumn):
        raise MissingColumn(
            f"{path}: question column {config.question_column!r} not found; columns: {table.column_names} "
            "(set question_column)"
        ) from None
    categories = table[config.category_column] if config.category_column in table.column_names else None
    ids = table[config.id_column] if config.id_column in table.column_names else None
    try:
        references = column_values(table, config.reference_column)
    except MissingColumn:
        references = None
    questions, seen, per_category = [], set(), {}
    for row, text in enumerate(texts):
        question_id = str(ids[row] if ids is not None else row + 1)
        turns = list(text) if isinstance(text, list | tuple) else [text]
        if not turns or not isinstance(turns[0], str) or not turns[0].strip():
            raise UsageError(f"{path}: row {row + 1} (question {question_id}) has no question text")
        for number, turn in enumerate(turns, 1):
            if not isinstance(turn, str) or not turn.strip():
                raise UsageError(
                    f"{path}: row {row + 1} (question {question_id}): turn {number} is missing or empty; every "
                    f"turn in {config.question_column!r} needs text"
                )
        if question_id in seen:
            raise UsageError(f"{path}: row {row + 1}: question id {question_id} appears twice")
        seen.add(question_id)
        category = str(categories[row]) if categories is not None and categories[row] else "all"
        per_category[category] = per_category.get(category, 0) + 1
        if config.limit_per_category is not None and per_category[category] > config.limit_per_category:
            continue
        reference = references[row] if references is not None else None
        reference = [reference] if isinstance(reference, str) else list(reference or [])
        questions.append(
            {
                "question_id": question_id,
                "category": category,
                "question": turns[0].strip(),
                "turns": [turn.strip() for turn in turns],
                "references": [r.strip() if isinstance(r, str) else None for r in reference],
            }
        )
    return questions[: config.limit] if config.limit is not None else questions


def conversation(question: dict, turn: int, answers: dict) -> list[dict]:
    """The chat messages that ask `turn` (1-based) of a question: every earlier turn with the contestant's own
    answer to it (`answers`: (question_id, turn) -> answer row), then the turn's question."""
    messages = []
    for earlier in range(1, turn):
        messages.append({"role": "user", "content": question["turns"][earlier - 1]})
        messages.append({"role": "assistant", "content": answers[(question["question_id"], earlier)]["answer"]})
    return [*messages, {"role": "user", "content": question["turns"][turn - 1]}]


def turns_to_answer(questions: list[dict], done: dict) -> list[tuple[dict, int]]:
    """(question, turn) pairs not answered yet whose earlier turns are: turn 2 waits for the turn-1 answer."""
    todo = []
    for question in questions:
        for turn in range(1, len(question["turns"]) + 1):
            if (question["question_id"], turn) in done:
                continue
            if turn == 1 or (question["question_id"], turn - 1) in done:
                todo.append((question, turn))
            break
    return todo
