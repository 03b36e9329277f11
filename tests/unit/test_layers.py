"""The layers import one way only, and nothing imports in a circle.

extensions and entry points (cogs/, bot.client, bot.cli, bot.__main__)
  -> services (bot.services)
  -> presentation (bot.presentation) | core (bot.core; never discord)
  -> adapters (bot.adapters; never discord)
  -> config and errors

Every import counts: module level, inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE = {"bot.config", "bot.errors", "bot.logging_setup", "bot"}
RANKS = (("bot.adapters", 1), ("bot.core", 2), ("bot.presentation", 2), ("bot.services", 3))
TOP = 4  # cogs, bot.client, bot.cli, bot.__main__
NO_DISCORD = ("bot.core", "bot.adapters", "bot.config", "bot.errors")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    files = [*ROOT.joinpath("bot").rglob("*.py"), *ROOT.joinpath("cogs").rglob("*.py")]
    return {module_name(p): p for p in files if "__pycache__" not in p.parts}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every name imported, resolved to the most specific project module (or a top package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in modules else node.module)
    return found


def layer(module: str) -> tuple[str, int]:
    if module in BASE:
        return "base", 0
    for prefix, rank in RANKS:
        if module == prefix or module.startswith(prefix + "."):
            return prefix, rank
    return "top", TOP


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {
        name: {m for m in imports_of(path, modules) if m in modules and m != name}
        for name, path in modules.items()
    }


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    problems = []
    for name, targets in edges.items():
        mine, my_rank = layer(name)
        for target in targets:
            theirs, their_rank = layer(target)
            if their_rank > my_rank or (their_rank == my_rank and mine != theirs):
                problems.append(f"{name} ({mine}) imports {target} ({theirs})")
    return problems


def test_no_layer_imports_a_higher_one_or_a_sibling() -> None:
    assert upward_imports(graph()) == []


def test_core_and_adapters_never_import_discord() -> None:
    modules = project_modules()
    offenders = [
        name
        for name, path in modules.items()
        if within(name, NO_DISCORD)
        and any(m == "discord" or m.startswith("discord.") for m in imports_of(path, modules))
    ]
    assert offenders == []


def test_bot_never_imports_cogs() -> None:
    offenders = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        if name.startswith("bot")
        for target in targets
        if target.startswith("cogs")
    ]
    assert offenders == []


def test_no_import_cycles() -> None:
    edges = graph()
    # A package's __init__ re-exporting its own submodules is not a cycle between layers.
    for name, targets in edges.items():
        edges[name] = {t for t in targets if not name.startswith(t + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_check_sees_upward_and_sideways_imports(tmp_path: Path) -> None:
    """The checker itself, on a module that breaks every rule (imports inside a function
    and under TYPE_CHECKING included)."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from bot.presentation import targets\n"
        "def f():\n    from bot.services.generation import Generator\n    import discord\n"
    )
    modules = project_modules()
    found = {m for m in imports_of(bad, modules) if m in modules or m == "discord"}
    assert found == {"bot.presentation.targets", "bot.services.generation", "discord"}
    problems = upward_imports({"bot.core.fake": found - {"discord"}})
    assert len(problems) == 2
