"""The shape of the package (README's Layout): stage entry points at the top, the core grouped by concern in
sub-packages that form layers (no cycle between them, none importing a stage), no module over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "baize"
CORE = ("io", "hub", "llm", "modeling", "data", "judging")
STAGES = ("collect", "sdf", "evaluate", "train", "dpo", "chat", "web", "merge", "export", "push", "pull", "convert",
          "curate", "cli")  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    """Every baize module `path` imports (at the top or inside a function; not under TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("baize."):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("baize."))
    return found


def test_the_top_holds_the_entry_points_and_the_core_is_grouped():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= 20, top
    for package in CORE:
        assert (PACKAGE / package / "__init__.py").exists(), package
    too_long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500
    }
    assert not too_long, too_long


def test_core_packages_are_layers_that_never_import_a_stage():
    edges: dict[str, set[str]] = {package: set() for package in CORE}
    for package in CORE:
        for path in (PACKAGE / package).glob("*.py"):
            for module in imported_modules(path):
                parts = module.split(".")
                assert parts[1] not in STAGES, f"{path.relative_to(REPO)} imports the stage {module}"
                if parts[1] in CORE and parts[1] != package:
                    edges[package].add(parts[1])
    # no cycle between core packages: a topological order exists
    order, left = [], dict(edges)
    while left:
        ready = [package for package, needs in left.items() if needs <= set(order)]
        assert ready, f"a cycle among the core packages: { {p: sorted(n) for p, n in left.items()} }"
        order += sorted(ready)
        for package in ready:
            del left[package]
    assert order.index("io") < order.index("llm") < order.index("judging")
