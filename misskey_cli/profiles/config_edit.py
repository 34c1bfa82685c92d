"""Editing the config file (``config.toml``) and writing secrets beside it. The only user of tomlkit.

``mkstream login`` adds a ``[profiles.NAME]`` table and ``mkstream logout`` removes one; the
user's file is theirs, so everything else in it stays byte for byte: other tables, comments,
blank lines, key order. tomllib (which ``config_file.py`` reads with) cannot write, and a plain TOML
writer would drop every comment, hence tomlkit, behind this one module.

What removing a table keeps: comment lines that follow the table's last key belong to whatever
comes next (they usually describe the next table), so they stay; comments between the table's
own keys go with it. Files are replaced atomically (a temporary file in the same directory,
then ``os.replace``) so a crash never leaves half a config; a symlinked config is written
through the link; the file keeps its mode, and a new one is created 0600 because a profile may
hold a token. Every failure is a ``UsageError`` naming the file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError, TOMLKitError
from tomlkit.items import Comment, Table, Trivia, Whitespace
from tomlkit.toml_document import TOMLDocument

from misskey_cli.core.files import replace_atomically
from misskey_cli.errors import UsageError
from misskey_cli.profiles.config_file import MAX_CONFIG, too_deep, too_large

NEW_FILE_HEADER = (
    "mkstream config: pick a profile with --profile NAME (or MKSTREAM_PROFILE);",
    "'mkstream profiles --help' shows every key. Comments you add here are kept.",
)


class ConfigEdit:
    """A config file opened for editing: read (or empty when missing), changed, then ``save``d."""

    def __init__(self, path: str, document: TOMLDocument, existed: bool) -> None:
        self.path = path
        self.document = document
        self.existed = existed

    @classmethod
    def open(cls, path: str) -> ConfigEdit:
        path = os.path.expanduser(path)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read(MAX_CONFIG + 1)
        except FileNotFoundError:
            document = tomlkit.document()
            for line in NEW_FILE_HEADER:
                document.add(tomlkit.comment(line))
            return cls(path, document, existed=False)
        except UnicodeDecodeError:
            raise UsageError(f"config file {path} is not UTF-8 text") from None
        except OSError as exc:
            raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        if len(text) > MAX_CONFIG:
            raise UsageError(too_large(path))
        try:
            return cls(path, tomlkit.parse(text), existed=True)
        except ParseError as exc:
            raise UsageError(f"config file {path}, line {exc.line}: bad TOML (column {exc.col})") from None
        except RecursionError:  # tomlkit parses nested arrays and tables by recursion
            raise UsageError(too_deep(path)) from None

    # -- reading ----------------------------------------------------------------------------

    @property
    def default_profile(self) -> str | None:
        value = self.document.get("default_profile")
        return str(value) if value is not None else None

    def profile_names(self) -> list[str]:
        profiles = self.document.get("profiles")
        return [str(name) for name in profiles] if isinstance(profiles, Mapping) else []

    def profile(self, name: str) -> dict[str, Any] | None:
        profiles = self.document.get("profiles")
        if not isinstance(profiles, Mapping) or name not in profiles:
            return None
        table = profiles[name]
        return {str(k): _plain(v) for k, v in table.items()} if isinstance(table, Mapping) else None

    def text(self) -> str:
        return tomlkit.dumps(self.document)

    # -- changing ---------------------------------------------------------------------------

    def set_profile(self, name: str, values: Mapping[str, str], replace_keys: Iterable[str] = ()) -> None:
        """Add ``[profiles.NAME]`` with ``values``; an existing table keeps its place and comments,
        gets ``values``, and loses the ``replace_keys`` that ``values`` does not set."""
        profiles = self.document.get("profiles")
        if profiles is None:
            profiles = tomlkit.table(is_super_table=True)
            self.document.add("profiles", profiles)
        elif not isinstance(profiles, MutableMapping):
            raise UsageError(f"config file {self.path}: profiles must be tables: [profiles.NAME]")
        existing = profiles.get(name)
        if isinstance(existing, MutableMapping):
            for key in replace_keys:
                if key in existing and key not in values:
                    del existing[key]
            # New keys go after the last key, not after the comments that introduce the next table.
            trailing = _detach_trailing(existing) if isinstance(existing, Table) else []
            for key, value in values.items():
                existing[key] = value
            if isinstance(existing, Table):
                existing.value.body.extend((None, item) for item in trailing)
            return
        table = tomlkit.table()
        for key, value in values.items():
            table.add(key, value)
        profiles[name] = table

    def set_default_profile(self, name: str | None) -> None:
        """Set (or, with None, remove) ``default_profile``; a new key goes above every table."""
        if name is None:
            if "default_profile" in self.document:
                del self.document["default_profile"]
            return
        if "default_profile" in self.document:
            self.document["default_profile"] = name
            return
        # TOMLDocument.add puts a plain key before the first table, where TOML needs it.
        self.document.add("default_profile", name)

    def remove_profile(self, name: str) -> None:
        """Remove ``[profiles.NAME]``; the comment lines after its last key stay (see the module doc)."""
        profiles = self.document.get("profiles")
        if not isinstance(profiles, MutableMapping) or name not in profiles:
            raise UsageError(f"config file {self.path} has no profile {name!r}")
        table = profiles[name]
        kept = ""
        if isinstance(table, Table):
            # Comment lines above the header (moved there by an earlier removal) and after the last key.
            indent = table.trivia.indent
            kept = indent[:indent.rfind("\n") + 1] if indent.strip() else ""
            kept += "".join(item.as_string() for item in _detach_trailing(table))
        following = _next_table(profiles, name) if isinstance(profiles, Table) else None
        body = self.document.body
        after = next((i for i, (key, _) in enumerate(body) if key is not None and key.key == "profiles"),
                     len(body) - 1) + 1
        del profiles[name]
        if not self.profile_names() and isinstance(profiles, Table) and profiles.is_super_table():
            del self.document["profiles"]  # an implicit [profiles] with nothing left in it
            after -= 1
        if not kept:
            return
        if following is not None:
            # Rendered verbatim before the next table's header: the comments stay where they were.
            following.trivia.indent = kept + following.trivia.indent
        elif all(key is None for key, _ in body[after:]):
            # Right after the profiles, where the table was; only keyless items move, so tomlkit's
            # key index stays right.
            body[after:after] = [(None, item) for item in _as_comments(kept)]
        else:
            body.extend((None, item) for item in _as_comments(kept))

    # -- writing ----------------------------------------------------------------------------

    def save(self) -> None:
        """Replace the file atomically with the edited text, keeping its mode (new files: 0600)."""
        write_atomically(self.path, self.text(), mode=None if self.existed else 0o600)


def _plain(value: Any) -> Any:
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


def _detach_trailing(table: Table) -> list[Comment | Whitespace]:
    """Take the comment and blank lines after a table's last key (they introduce what follows) off its body.

    Only items at the end of the body, which have no key, are taken: tomlkit's key index stays right.
    """
    body = table.value.body
    taken: list[Comment | Whitespace] = []
    while body and body[-1][0] is None and isinstance(body[-1][1], (Comment, Whitespace)):
        item = body.pop()[1]
        assert isinstance(item, (Comment, Whitespace))
        taken.insert(0, item)
    return taken


def _as_comments(text: str) -> list[Comment | Whitespace]:
    """Comment and blank lines as tomlkit items, for the end of the document."""
    items: list[Comment | Whitespace] = []
    for line in text.splitlines(keepends=True):
        if line.strip():
            items.append(Comment(Trivia(comment_ws="", comment=line.rstrip("\n").strip(), trail="\n")))
        else:
            items.append(Whitespace(line))
    return items


def _next_table(profiles: Table, name: str) -> Table | None:
    """The table rendered right after ``[profiles.NAME]``, if it is a sibling."""
    names = [str(key.key) for key, _ in profiles.value.body if key is not None]
    if name not in names:
        return None
    position = names.index(name)
    for later in names[position + 1:]:
        item = profiles.get(later)
        if isinstance(item, Table):
            return item
    return None


# ----- files ----------------------------------------------------------------------------------


def ensure_private_dir(path: str) -> None:
    """Make ``path`` (and its parents) if missing; a directory made here is 0700."""
    if os.path.isdir(path):
        return
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)  # makedirs' mode is masked by the umask
    except OSError as exc:
        raise UsageError(f"cannot create the directory {path}: {exc.strerror or exc}") from None


def write_atomically(path: str, text: str, mode: int | None = 0o600) -> None:
    """Write ``text`` to ``path`` in one rename (``core.files.replace_atomically``), flushed to the disk.

    ``mode`` None keeps the mode of the file being replaced (0600 if there is none). A symlink is
    followed, so a config kept in a dotfiles repository stays a link.
    """
    target = os.path.realpath(os.path.expanduser(path))
    directory = os.path.dirname(target)
    ensure_private_dir(directory)
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except OSError:
            mode = 0o600
    try:
        replace_atomically(target, text.encode("utf-8"), mode=mode, sync=True)
    except (OSError, UnicodeEncodeError) as exc:
        raise UsageError(f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}") from None


def write_secret(path: str, secret: str) -> None:
    """A file holding only ``secret`` and a newline, readable by its owner alone (0600)."""
    write_atomically(path, secret + "\n", mode=0o600)


def remove_file(path: str) -> bool:
    """Delete ``path``; False when it was not there."""
    try:
        os.unlink(os.path.expanduser(path))
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UsageError(f"cannot delete {path}: {exc.strerror or exc}") from None
    return True


def check_toml(text: str, path: str) -> dict[str, Any]:
    """Parse ``text`` as TOML (what ``save`` would write), as plain data, for checking before writing."""
    try:
        return dict(tomlkit.parse(text).unwrap())
    except TOMLKitError as exc:  # pragma: no cover - tomlkit writes what it parses
        raise UsageError(f"config file {path}: the edit would not be valid TOML ({exc})") from None
