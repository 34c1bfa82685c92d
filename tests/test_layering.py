"""House rule 1 and 2: layers point one way, and each third-party library lives in one module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "misskey_cli"

# module -> the package modules it may import
ALLOWED = {
    "cli": {"channels", "config", "errors", "output", "timeparse", "stream", "session", "simulator",
            "catalogue_view", "profiles", "choices", "__version__"},
    "stream": {"commands", "protocol", "channels", "errors", "output", "session"},
    "session": {"protocol", "channels", "config", "errors", "wsframes"},
    "wsframes": set(),
    "output": {"errors", "choices"},
    "choices": set(),
    "config": {"errors"},
    "profiles": {"errors", "config", "choices"},
    "commands": {"channels", "protocol"},
    "channels": set(),
    "protocol": set(),
    "errors": set(),
    "timeparse": set(),
    "catalogue_view": {"channels"},
    "simulator": {"protocol", "channels", "traffic"},
    "traffic": {"protocol", "channels"},
    "__main__": {"cli"},
    "__init__": set(),
}

# third-party library -> the one module allowed to import it
OWNERS = {"click": "cli", "websocket": "session", "jq": "output", "pygments": "output", "websockets": "simulator"}


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    tree = ast.parse(path.read_text())
    package, third = set(), set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module == "misskey_cli":
                names = [f"misskey_cli.{alias.name}" for alias in node.names]
        for name in names:
            if name.startswith("misskey_cli."):
                package.add(name.split(".")[1])
            else:
                third.add(name.split(".")[0])
    return package, third


def test_every_module_is_in_the_layer_table():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules <= set(ALLOWED), f"add {modules - set(ALLOWED)} to ALLOWED"


def test_imports_point_down_only():
    for path in PACKAGE.glob("*.py"):
        package, _ = imports_of(path)
        unexpected = package - ALLOWED[path.stem] - {path.stem}
        assert not unexpected, f"{path.name} imports {unexpected}"
        if path.stem != "__main__":
            assert "cli" not in package, f"{path.name} imports cli.py"


def test_each_library_lives_behind_one_module():
    for path in PACKAGE.glob("*.py"):
        _, third = imports_of(path)
        for library, owner in OWNERS.items():
            if library in third:
                assert path.stem == owner, f"{path.name} imports {library}; only {owner}.py may"
