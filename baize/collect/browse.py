"""browse.html: what a collection kept and dropped, and why, as one static page any browser opens (no server, no
install): the counts by reason, then the dropped dialogues with their reason and detail, then a sample of the kept
ones. Written beside train.jsonl at the end of every run; left out of pushes like the other run files."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from baize.io.jsonl import open_atomically

BROWSE_FILE = "browse.html"
SHOWN = {"dropped": 2000, "kept": 300}  # rows per section: the page stays light for a 100,000-dialogue folder

STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;
width:100%}td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}th{background:#f3f3f3}
details{margin:0}.reason{font-weight:600}.turn{margin:2px 0}.user{color:#1a4d8f}.assistant{color:#2f6b2f}"""


def dialogue_html(messages: list[dict]) -> str:
    turns = "".join(
        f'<div class="turn {m["role"]}"><b>{"Human" if m["role"] == "user" else "AI"}:</b> {html.escape(m["content"])}</div>'
        for m in messages if m["role"] in ("user", "assistant")
    )  # fmt: skip
    return f"<details><summary>{len(messages) // 2} exchanges</summary>{turns}</details>"


class BrowsePage:
    """The page, filled as the journal streams by for the outputs (`watch`), written at the end (`write`); at most
    SHOWN rows per section."""

    def __init__(self, title: str):
        self.title = title
        self.counts: Counter = Counter()
        self.sections: dict[str, list[dict]] = {"dropped": [], "kept": []}

    def watch(self, entries: Iterable[dict]) -> Iterator[dict]:
        for entry in entries:
            status = entry["status"]
            self.counts[entry.get("reason") or "kept"] += 1
            if len(self.sections[status]) < SHOWN[status]:
                self.sections[status].append(entry)
            yield entry

    def write(self, folder: Path) -> Path:
        title, counts = html.escape(self.title), self.counts
        path = Path(folder) / BROWSE_FILE
        with open_atomically(path) as page:
            page.write(f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
                       f"<style>{STYLE}</style></head><body><h1>{title}</h1>")  # fmt: skip
            page.write("<h2>Counts</h2><table><tr><th>outcome</th><th>dialogues</th></tr>")
            page.writelines(f"<tr><td>{html.escape(k)}</td><td>{n:,}</td></tr>" for k, n in counts.most_common())
            page.write("</table>")
            for status in ("dropped", "kept"):
                shown = self.sections[status]
                total = sum(n for k, n in counts.items() if (k == "kept") == (status == "kept"))
                page.write(f"<h2>{status.capitalize()} ({len(shown):,} of {total:,} shown)</h2>"
                           "<table><tr><th>seed</th><th>reason</th><th>detail</th><th>dialogue</th></tr>")  # fmt: skip
                page.writelines(row_html(entry) for entry in shown)
                page.write("</table>")
            page.write("</body></html>\n")
        return path


def row_html(entry: dict) -> str:
    if entry.get("messages"):
        dialogue = dialogue_html(entry["messages"])
    elif entry.get("raw"):
        dialogue = f"<details><summary>raw reply</summary><pre>{html.escape(entry['raw'])}</pre></details>"
    else:
        dialogue = ""
    return (f"<tr><td>{html.escape(entry['seed'])}</td><td class='reason'>{html.escape(entry.get('reason') or 'kept')}"
            f"</td><td>{html.escape(entry.get('detail') or entry.get('stop') or '')}</td><td>{dialogue}</td></tr>")  # fmt: skip
