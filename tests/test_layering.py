"""House rule 1 and 2: layers point one way, and each third-party library lives in one module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "misskey_cli"

# module -> the package modules it may import. From the top: cli (click) builds settings and calls
# app; app assembles a run from session (the socket), stream (the loop), output (formats, jq,
# pygments) and writer (the file); below them the pure pieces: protocol, channels, config.
ALLOWED = {
    "__main__": {"cli"},
    # The commands, loaded when one runs: the same layer as cli.py (click lives in both).
    "cli_commands": {"cli", "app", "settings", "channels", "config", "errors", "output", "timeparse", "simulator",
                     "catalogue_view", "profiles", "choices", "protocol", "notices", "login", "doctor",
                     "recording", "replay"},
    "cli": {"app", "settings", "channels", "config", "errors", "output", "timeparse", "simulator",
            "catalogue_view", "profiles", "choices", "protocol", "notices", "login", "doctor", "__version__",
            "recording", "replay", "cli_commands"},
    "app": {"settings", "config", "errors", "notices", "output", "session", "stream", "writer", "simulator", "api",
            "backfill", "recording"},
    "stream": {"commands", "protocol", "channels", "errors", "notices", "output", "session", "settings", "writer",
               "backfill"},
    "backfill": {"errors"},
    "jqfast": set(),
    # replay runs a recording through the stream with app's pieces; recording is the format, the
    # writer and the reader (its RecordingSource names session's event types, imported lazily).
    "replay": {"app", "errors", "notices", "protocol", "recording", "session", "settings", "stream"},
    "recording": {"errors", "session", "timeparse", "__version__"},
    "session": {"protocol", "config", "errors", "wsframes", "backoff", "settings"},
    "backoff": {"settings"},
    "writer": {"errors"},
    "output": {"errors", "choices", "protocol", "safetext", "lineformat", "jqfast"},
    "lineformat": {"safetext"},
    "safetext": set(),
    "notices": {"config", "safetext"},
    "settings": {"config", "choices", "recording"},
    "profiles": {"errors", "config", "choices", "settings"},
    "commands": {"channels", "protocol"},
    "catalogue_view": {"channels"},
    "channels": {"protocol"},
    "config": {"errors"},
    "wsframes": set(),
    "choices": set(),
    "protocol": set(),
    "errors": set(),
    "timeparse": set(),
    "simulator": {"protocol", "channels", "recording"},  # the package misskey_cli/simulator/, as one layer
    "api": {"errors", "config"},
    # login and doctor are entry points beside app: cli calls them, they use app's Environment and token reading.
    "login": {"api", "config", "configwrite", "errors", "notices", "profiles"},
    "doctor": {"api", "app", "channels", "config", "errors", "login", "notices", "output", "safetext", "session",
               "settings", "simulator"},
    "configwrite": {"errors"},
    "__init__": set(),
}

# third-party library -> the one module allowed to import it
# (the command line is two modules: the group in cli.py, the commands, loaded late, in cli_commands.py)
OWNERS = {"click": ("cli", "cli_commands"), "websocket": "session", "jq": "output", "pygments": "output",
          "websockets": "simulator.engine", "wcwidth": "lineformat", "tomlkit": "configwrite"}


def modules() -> dict[str, Path]:
    """Every module of the package: ``cli``, ``simulator.engine`` (a subpackage's modules are dotted)."""
    found = {p.stem: p for p in PACKAGE.glob("*.py")}
    for path in PACKAGE.glob("*/*.py"):
        name = path.parent.name if path.stem == "__init__" else f"{path.parent.name}.{path.stem}"
        found[name] = path
    return found


def layer(module: str) -> str:
    return module.split(".")[0]


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
    layers = {layer(name) for name in modules()}
    assert layers <= set(ALLOWED), f"add {layers - set(ALLOWED)} to ALLOWED"


def test_imports_point_down_only():
    for name, path in modules().items():
        package, _ = imports_of(path)
        unexpected = package - ALLOWED[layer(name)] - {layer(name)}
        assert not unexpected, f"{name} imports {unexpected}"
        if name not in ("__main__", "cli_commands"):
            assert "cli" not in package, f"{name} imports cli.py"


def test_each_library_lives_behind_one_module():
    for name, path in modules().items():
        _, third = imports_of(path)
        for library, owner in OWNERS.items():
            owners = owner if isinstance(owner, tuple) else (owner,)
            if library in third:
                assert name in owners, f"{name} imports {library}; only {owner} may"
