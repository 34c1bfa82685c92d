"""Config profiles: ``$XDG_CONFIG_HOME/mkstream/config.toml``, read and checked.

Pure apart from reading the file. A config names servers and the defaults to use with them::

    default_profile = "work"

    [profiles.work]
    host = "misskey.example"
    token_file = "~/.config/mkstream/work.token"
    format = "ndjson"

Every error is a ``UsageError`` naming the file and, where it can be found, the line. The values
are only checked for shape here (known key, string or boolean); ``cli/options.py`` feeds them to click as
defaults, so a flag or an environment variable still wins over the profile.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from misskey_cli.core.channels import did_you_mean
from misskey_cli.core.choices import AUTH_MODES
from misskey_cli.core.choices import PROFILE_KEYS as PROFILE_KEY_TABLE
from misskey_cli.errors import UsageError
from misskey_cli.net.endpoint import loose_permissions

CONFIG_NAME = os.path.join("mkstream", "config.toml")

# Paths (PATH_KEYS) are expanded (~, and relative to the config file's directory) so a profile
# works from any working directory.
TOP_KEYS = ("default_profile", "profiles")

# The profile key table's view that loading needs: key -> TOML type; keys whose value is a path.
PROFILE_KEYS: dict[str, type] = {key: kind for key, kind, _, _ in PROFILE_KEY_TABLE}
PATH_KEYS = ("token_file", "ca_file")


@dataclass(frozen=True)
class Profile:
    name: str
    values: dict[str, str | bool]
    # Where each key was set, for errors about values found later (by click's types).
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def auth(self) -> str:
        value = self.values.get("auth", AUTH_MODES[0])
        return value if isinstance(value, str) else AUTH_MODES[0]


@dataclass(frozen=True)
class Config:
    path: str
    default_profile: str | None
    profiles: dict[str, Profile]

    @property
    def holds_token(self) -> bool:
        return any("token" in p.values for p in self.profiles.values())

    def where(self, profile: Profile | None = None, key: str | None = None) -> str:
        """``config file PATH, line N`` for messages; the line when it is known."""
        line = profile.lines.get(key) if profile is not None and key is not None else None
        return f"config file {self.path}" + (f", line {line}" if line else "")

    def select(self, name: str | None) -> Profile | None:
        """The profile named (by --profile or MKSTREAM_PROFILE), else the default one, else none."""
        wanted = name or self.default_profile
        if not wanted:
            return None
        if wanted not in self.profiles:
            known = ", ".join(self.profiles) or "none"
            origin = "" if name else " (its default_profile)"
            hint = did_you_mean(wanted, list(self.profiles))
            raise UsageError(f"{self.where()}{origin}: no profile {wanted!r}{hint}; it has: {known}")
        return self.profiles[wanted]


def default_config_path(environ: Mapping[str, str]) -> str:
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, CONFIG_NAME)


def choose_profile(config_path: str | None, name: str | None,
                   environ: Mapping[str, str]) -> tuple[Config | None, Profile | None]:
    """The config (``--config``, else the XDG path, which need not exist) and the profile to use."""
    path = config_path or default_config_path(environ)
    if config_path is None and not os.path.exists(path):
        if name:
            raise UsageError(f"no config file at {path}, so no profile {name!r} "
                             "(see 'mkstream profiles --help' for the format)")
        return None, None
    config = load_config(path)
    return config, config.select(name)


def permission_warnings(config: Config) -> list[str]:
    if config.holds_token and loose_permissions(config.path):
        return [f"config file {config.path} holds a token and is readable by others: chmod 600 {config.path}"]
    return []


# A config is a few profiles: one far larger is not a config (/dev/zero, a log) and is not read to its end.
MAX_CONFIG = 1 << 20


def too_large(path: str) -> str:
    return f"config file {path} is larger than {MAX_CONFIG >> 20} MB: it is not an mkstream config"


def too_deep(path: str) -> str:
    return f"config file {path}: values nested too deeply (an mkstream config nests two tables deep)"


def load_config(path: str) -> Config:
    """Read and check a config file; raises UsageError naming the file (and line) for any fault."""
    import tomllib

    try:
        with open(os.path.expanduser(path), "rb") as handle:
            raw = handle.read(MAX_CONFIG + 1)
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG:
        raise UsageError(too_large(path))
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise UsageError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(_toml_error(path, str(exc), len(text.splitlines()) or 1)) from None
    except RecursionError:  # tomllib parses nested arrays and tables by recursion
        raise UsageError(too_deep(path)) from None
    return parse_config(path, data, text)


def parse_config(path: str, data: dict[str, object], text: str = "") -> Config:
    """Check the shape of parsed TOML (``text`` is only used to find line numbers)."""
    lines = _key_lines(text)

    def fail(table: str, key: str, message: str) -> UsageError:
        line = lines.get((table, key))
        return UsageError(f"config file {path}{f', line {line}' if line else ''}: {message}")

    for key in data:
        if key not in TOP_KEYS:
            raise fail("", key, f'unknown key "{key}"{did_you_mean(key, list(TOP_KEYS))}; '
                                'a config holds default_profile and [profiles.NAME] tables')
    default = data.get("default_profile")
    if default is not None and not isinstance(default, str):
        raise fail("", "default_profile", "default_profile must be a string (a profile name)")
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise fail("", "profiles", "profiles must be tables: [profiles.NAME]")
    base = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    profiles = {}
    for name, table in tables.items():
        section = f"profiles.{name}"
        if not isinstance(table, dict):
            raise fail("profiles", name, f"profiles.{name} must be a table: [profiles.{name}]")
        values = {key: _profile_value(section, key, value, base, fail) for key, value in table.items()}
        if "token" in values and "token_file" in values:
            raise fail(section, "token_file", f"[{section}] has both token and token_file: keep one")
        found = {key: line for (table_name, key), line in lines.items() if table_name == section}
        profiles[name] = Profile(name, values, found)
    return Config(path, default, profiles)


def _profile_value(section: str, key: str, value: object, base: str,
                   fail: Callable[[str, str, str], UsageError]) -> str | bool:
    expected = PROFILE_KEYS.get(key)
    if expected is None:
        raise fail(section, key, f'unknown key "{key}" in [{section}]{did_you_mean(key, list(PROFILE_KEYS))}')
    if not isinstance(value, expected):
        kind = "true or false" if expected is bool else "a string"
        raise fail(section, key, f"{key} in [{section}] must be {kind}, not {value!r}")
    if key in PATH_KEYS:
        return os.path.join(base, os.path.expanduser(str(value)))
    return value  # type: ignore[return-value]  # a str or bool, as PROFILE_KEYS says


def profile_hosts(path: str) -> dict[str, str]:
    """Profile name -> host, for shell completion: empty when the file is missing or broken."""
    try:
        profiles = load_config(path).profiles
    except UsageError:
        return {}
    return {name: str(profile.values.get("host", "")) for name, profile in profiles.items()}


def profile_table(config: Config) -> str:
    """``mkstream profiles``: name, host, auth mode and where the token comes from; never the token."""
    rows = [("PROFILE", "HOST", "AUTH", "TOKEN")]
    for name, profile in config.profiles.items():
        if "token" in profile.values:
            token = "token: set"
        elif "token_file" in profile.values:
            token = f"token_file: {profile.values['token_file']}"
        else:
            token = "none (anonymous)"
        marker = " *" if name == config.default_profile else ""
        rows.append((name + marker, str(profile.values.get("host", "-")), profile.auth, token))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"config: {config.path}", ""]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3] for row in rows]
    if config.default_profile:
        lines += ["", "* = default_profile (used when neither --profile nor MKSTREAM_PROFILE is given)"]
    return "\n".join(lines)


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """(table, key) -> line number, for the plain ``[table]`` / ``key = value`` forms."""
    found: dict[tuple[str, str], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            parts = [part.strip().strip("\"'") for part in header[1].split(".")]
            for depth in range(len(parts)):  # [profiles.work] also sets the key "profiles"
                found.setdefault((".".join(parts[:depth]), parts[depth]), number)
            table = ".".join(parts)
            continue
        key = _KEY.match(line)
        if key:
            found.setdefault((table, key[1].strip("\"'")), number)
    return found


def _toml_error(path: str, message: str, last_line: int) -> str:
    # tomllib (3.11) reports "... (at line 3, column 5)"; say it in our own form.
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match:
        return f"config file {path}, line {match[1]}: bad TOML: {message[:match.start()]} (column {match[2]})"
    match = re.search(r"\s*\(at end of document\)$", message)
    if match:
        return f"config file {path}, line {last_line}: bad TOML: {message[:match.start()]} (at the end of the file)"
    return f"config file {path}: bad TOML: {message}"
