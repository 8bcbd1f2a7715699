"""A Hugging Face Space that runs `baize web` on a released adapter: the files `baize push --space` uploads.

The Space gets `app.py` (three lines: `baize web ADAPTER` on the Space's port), `requirements.txt` (baize's own
pinned requirements, as installed here), a copy of the `baize` package (the Space has no other way to get it),
and a README whose metadata makes it a Gradio Space that names the adapter and its base.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import SpaceCard, SpaceCardData

import baize

APP_TEMPLATE = '''"""Baize chat demo for {adapter}: `baize web` on a Hugging Face Space (written by `baize push --space`)."""

from baize.web import cli

cli([{adapter!r}, "--host", "0.0.0.0", "--port", "7860", "--title", {title!r}{extra}])
'''

SPACE_README = """
# {title}

The [Baize](https://arxiv.org/abs/2304.01196) chat demo for [`{adapter}`](https://huggingface.co/{adapter}){base}:
replies stream in, Stop ends one, and the chat's buttons regenerate, undo and clear. Settings hold the original
demo's controls (top-p, temperature, max new tokens, max history tokens) and a guardrail toggle.

The same app runs locally:

```bash
baize web {adapter}
```
"""


def pinned_requirements() -> list[str]:
    """baize's own requirements (no extras), pinned as tested: what `pip install baize` would install."""
    requirements = importlib.metadata.requires("baize") or []
    return [r for r in requirements if "extra ==" not in r]


def write_space(
    folder: Path, adapter: str, *, base_model: str | None = None, title: str | None = None,
    license: str | None = None, load_in_8bit: bool = False
) -> SpaceCard:  # fmt: skip
    """Write the Space's files into `folder` and return its card (also written as README.md)."""
    import gradio

    title = title or f"Baize chat: {adapter.split('/')[-1]}"
    extra = ', "--load_in_8bit"' if load_in_8bit else ""
    (folder / "app.py").write_text(APP_TEMPLATE.format(adapter=adapter, title=title, extra=extra))
    (folder / "requirements.txt").write_text("\n".join(pinned_requirements()) + "\n")
    package = Path(baize.__file__).parent
    shutil.copytree(package, folder / "baize", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    data = SpaceCardData(
        title=title[:60],
        emoji="🐉",
        colorFrom="indigo",
        colorTo="green",
        sdk="gradio",
        sdk_version=gradio.__version__,
        python_version="3.11",
        app_file="app.py",
        pinned=False,
        license=license or "other",
        models=[m for m in (adapter, base_model) if m],
        tags=["baize", "chat", "lora"],
        short_description=f"Chat with the Baize adapter {adapter}"[:60],
    )
    base = f", a LoRA adapter on [`{base_model}`](https://huggingface.co/{base_model})" if base_model else ""
    card = SpaceCard(f"---\n{data.to_yaml()}\n---\n" + SPACE_README.format(title=title, adapter=adapter, base=base))
    card.save(folder / "README.md")
    return card


def space_staging(adapter: str, **kwargs) -> tuple[Path, SpaceCard]:
    """A temporary folder with the Space's files (the caller removes it after the push)."""
    folder = Path(tempfile.mkdtemp(prefix="baize-space-"))
    return folder, write_space(folder, adapter, **kwargs)
