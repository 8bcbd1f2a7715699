"""Two checks of generated text that the original Baize's users asked for: a dialogue whose turns leave its
language (project-baize issues #21, #36, #55: replies switching from the question's language to English or
Russian), and a turn that repeats itself (#5: endless repetition).

Language: py3langid (langid.py's model, 97 languages, shipped in its wheel) on each turn with code blocks and
inline code taken out; a turn too short to tell (under 20 letters, a CJK character counting 3) or told with a
probability under 0.8 does not count either way. Repetition: words (a CJK character is a word), three signs of a
loop: a stretch that repeats back to back (a span of 3-40 words 3 times, 2 words 4 times, one word 8 times), one
sentence 3 times (4 times for a one-word sentence), or under half of a long turn's word 4-grams distinct.
"""

from __future__ import annotations

import functools
import re
import unicodedata

MIN_LETTERS = 20  # below this a turn's language is not told (a CJK character counts as 3 letters)
MIN_PROBABILITY = 0.8
# languages the model confuses within a group, and which a reader would call one language
SAME_LANGUAGE = {"yue": "zh", "wuu": "zh", "nb": "no", "nn": "no", "bs": "hr", "sr": "hr", "ms": "id"}
_CODE = re.compile(r"```.*?(```|$)|`[^`\n]*`", re.S)
_FENCED = re.compile(r"```.*?(```|$)", re.S)
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
_SENTENCE_END = re.compile(r"[.!?。！？\n]+")


@functools.cache
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def known_language(code: str) -> bool:
    """A language code the identifier can tell (py3langid's ISO 639 codes, e.g. en, zh, ru, de)."""
    return SAME_LANGUAGE.get(code, code) in {SAME_LANGUAGE.get(c, c) for c in _identifier().nb_classes}


def prose(text: str) -> str:
    """The text without its code (fenced blocks and inline code): code says nothing of the language."""
    return _CODE.sub(" ", text or "")


def letters(text: str) -> int:
    """How much text there is to tell a language by: its letters, a CJK character counting 3 (one carries about as
    much as a short word)."""
    cjk = len(re.findall(rf"[{_CJK}]", text))
    return sum(ch.isalpha() for ch in text) + 2 * cjk


def language_of(text: str, min_letters: int = MIN_LETTERS, min_probability: float = MIN_PROBABILITY) -> str | None:
    """The ISO 639-1 code of the text's language, or None when it is too short or unsure to tell."""
    text = prose(text)
    if letters(text) < min_letters:
        return None
    language, probability = _identifier().classify(text)
    if probability < min_probability:
        return None
    return SAME_LANGUAGE.get(language, language)


# Unicode script names (the first word of a letter's name) that one writing system shares.
_SCRIPT_GROUPS = {"CJK": "Han", "HIRAGANA": "Han", "KATAKANA": "Han", "HANGUL": "Hangul"}


def script_of(text: str, min_letters: int = 2) -> str | None:
    """The writing system most of the text's letters are in (Latin, Cyrillic, Han, Arabic, ...): even a question
    too short for its language tells its script."""
    counts: dict[str, int] = {}
    for ch in prose(text):
        if ch.isalpha():
            name = unicodedata.name(ch, "").split(" ")[0]
            if name:
                script = _SCRIPT_GROUPS.get(name, name.title())
                counts[script] = counts.get(script, 0) + 1
    if sum(counts.values()) < min_letters:
        return None
    return max(counts, key=counts.get)


def seed_languages(seed: str) -> tuple[str | None, dict[str, float] | None]:
    """What a seed question says of the dialogue's language: (its language, None) when it tells, else (None, the
    probability of each language given the seed) when it has 10 letters or more, else (None, None)."""
    text = prose(seed)
    if letters(text) < 10:
        return None, None
    plausible: dict[str, float] = {}
    for language, probability in _identifier().rank(text):
        code = SAME_LANGUAGE.get(language, language)
        plausible[code] = plausible.get(code, 0.0) + probability
    top = max(plausible, key=plausible.get)
    return (top, None) if plausible[top] >= MIN_PROBABILITY else (None, plausible)


def language_problem(messages: list[dict], expected: str | None, seed: str | None = None) -> str | None:
    """Why a dialogue leaves its language (None: it does not). `expected`: a language code, or "seed" for the seed
    question's language. A seed too short to tell still rules languages out (a turn in a language under 2 % likely
    given the seed) and tells its script (a Chinese question answered in Cyrillic); the first turn that tells then
    sets the language."""
    if not expected:
        return None
    plausible, want_script = None, None
    if expected == "seed":
        want, plausible = seed_languages(seed or "")
        want_script = script_of(seed or "")
    else:
        want = SAME_LANGUAGE.get(expected, expected)
    for number, message in enumerate(messages, 1):
        found = language_of(message["content"])
        unlikely = want is None and plausible is not None and plausible.get(found, 0.0) < 0.02
        if found is not None and ((want is not None and found != want) or unlikely):
            return f"turn {number} ({message['role']}) is in {found}, the dialogue in {want or 'another language'}"
        script = script_of(message["content"], min_letters=10)
        if want_script is not None and script is not None and script != want_script:
            return f"turn {number} ({message['role']}) is in {script} script, the seed in {want_script}"
        if want is None and found is not None:
            want = found
    return None


def words(text: str) -> list[str]:
    """Lower-cased words; each CJK character is a word (those scripts put no spaces between words)."""
    return _WORD.findall(text.lower())


def _tandem_repeat(tokens: list[str]) -> str | None:
    """A span of `period` tokens repeated back to back: 3 times (3+ tokens), 4 times (2), 8 times (1)."""
    copies_needed = {1: 8, 2: 4}
    for period in range(1, 41):
        needed = copies_needed.get(period, 3)
        run = 0  # positions i where tokens[i] == tokens[i + period], consecutively
        for i in range(len(tokens) - period):
            run = run + 1 if tokens[i] == tokens[i + period] else 0
            if run >= period * (needed - 1):
                span = " ".join(tokens[i - run + 1 : i - run + 1 + period])
                if any(ch.isalpha() for ch in span):  # rows of numbers (tables, matrices) repeat by design
                    return f"'{span[:60]}' repeated {needed}+ times in a row"
                run = 0
    return None


def repetition_problem(text: str) -> str | None:
    """Why a turn loops (None: it does not); see the module docstring for the three signs. Fenced code blocks are
    left out (code repeats itself by design); inline code stays (the same snippet 8 times in a row is a loop)."""
    text = _FENCED.sub(" ", text or "")
    tokens = words(text)
    found = _tandem_repeat(tokens)
    if found:
        return found
    sentences: dict[str, int] = {}
    for sentence in _SENTENCE_END.split(text):
        key = " ".join(words(sentence))
        if not any(ch.isalpha() for ch in key):  # numbers and table cells repeat by design
            continue
        sentences[key] = sentences.get(key, 0) + 1
        if sentences[key] >= (3 if len(key.split()) >= 2 else 4):
            return f"the sentence '{key[:60]}' {sentences[key]} times"
    if len(tokens) >= 60:
        grams = [tuple(tokens[i : i + 4]) for i in range(len(tokens) - 3)]
        distinct = len(set(grams)) / len(grams)
        if distinct < 0.5:
            return f"only {distinct:.0%} of its word 4-grams are distinct"
    return None


def dialogue_repetition(messages: list[dict]) -> str | None:
    for number, message in enumerate(messages, 1):
        problem = repetition_problem(message["content"])
        if problem:
            return f"turn {number} ({message['role']}): {problem}"
    return None
