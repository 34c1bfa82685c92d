"""The house's layers, computed from the code: no import cycle, no arrow pointing up, one owner per library.

Every ``import`` counts, including the lazy ones inside functions (they are cycles all the same, only
later); imports under ``if TYPE_CHECKING:`` are annotations and do not.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "misskey_cli"

# The layers, from the top. A module may import its own package's modules and any lower layer's.
LAYERS = [
    "__main__",
    "cli",  # click: parse, build settings, call one entry point
    "relay",  # mkstream proxy: relays a client's traffic, built on run's pieces
    "doctor",  # mkstream doctor: checks built on everything below
    "run",  # one run: settings, app, the stream loop, backfill, replay
    "profiles",  # config.toml, login/logout
    "simulator",  # the Misskey-compatible server
    "recording",  # the recording format
    "output",  # formats, jq, the line view, notices, the writer
    "net",  # endpoints, transport, the socket, the HTTP API
    "core",  # pure Misskey knowledge (frames, channels, times, safe text, events) and JSON and file writing
    "errors",
    "__init__",
]
TOP_LEVEL_LIMIT = 10
MODULE_LINES_LIMIT = 900
# Waiting for their split (none: the simulator's content generator was split for issue 20).
SPLIT_PENDING: set[str] = set()

# third-party library -> the one module allowed to import it
OWNERS = {
    "click": "cli.*",
    "websocket": "net.session",
    "jq": "output.jqworker",
    "pygments": "output.render",
    "websockets": "simulator.engine",
    "wcwidth": "output.cells",
    "tomlkit": "profiles.config_edit",
    "orjson": "core.jsoncodec",
}


def modules() -> dict[str, Path]:
    """Every module by dotted name below the package: ``errors``, ``net.session``, ``cli`` (a package's face)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


@cache
def _tree(path: Path) -> ast.Module:
    """Each module parsed once for the whole file's tests (the graph is read by several)."""
    return ast.parse(path.read_text())


def imports_of(path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(package modules, third-party top-level names) that a module imports, outside TYPE_CHECKING."""
    tree = _tree(path)
    skip = _type_checking_lines(tree)
    package, third = set(), set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from misskey_cli.simulator import history` imports the submodule, not the package's face
            subs = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [sub for sub in subs if sub.removeprefix("misskey_cli.") in known] or [node.module]
        for name in names:
            if name == "misskey_cli" or name.startswith("misskey_cli."):
                dotted = name.removeprefix("misskey_cli").removeprefix(".") or "__init__"
                if dotted in known:
                    package.add(dotted)
            elif not name.startswith("misskey_cli"):
                third.add(name.split(".")[0])
    return package, third


@cache
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(path, set(found))[0] - {name} for name, path in found.items()}


def rank(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the import graph as a path (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_find_cycle_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_every_module_belongs_to_a_layer():
    strays = {name for name in modules() if name.split(".")[0] not in LAYERS}
    assert not strays, f"add a layer for {strays} to LAYERS"


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or ())


def test_imports_point_down_only():
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in targets
              if rank(b) < rank(a) or (rank(b) == rank(a) and a.split(".")[0] != b.split(".")[0])]
    assert not upward, upward


def test_each_library_lives_behind_one_module():
    found = modules()
    for name, path in found.items():
        _, third = imports_of(path, set(found))
        for library, owner in OWNERS.items():
            allowed = name.startswith(owner[:-1]) if owner.endswith("*") else name == owner
            assert library not in third or allowed, f"{name} imports {library}; only {owner} may"


def test_the_top_of_the_package_is_small_and_no_module_is_huge():
    top = [p for p in PACKAGE.glob("*.py")]
    assert len(top) <= TOP_LEVEL_LIMIT, [p.name for p in top]
    huge = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MODULE_LINES_LIMIT and name not in SPLIT_PENDING}
    assert not huge, huge
