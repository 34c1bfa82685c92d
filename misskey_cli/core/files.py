"""How mkstream writes its own files: private (0600), whole, and replaced in one step.

Records, recordings, the state file, the config and token files carry what the user would not
share (``main`` events hold sign-in IPs, a token file the token itself), so every file mkstream
makes is made 0600. A file that is rewritten (the state, the config) is written beside itself
and renamed over its path, so a reader or a kill -9 sees the old file or the new one, never half
of one; the rename goes to the path's real target, so a symlink stays a symlink.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def open_private_append(path: str) -> int:
    """A descriptor appending to ``path``; a new file is made 0600. Raises OSError."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` (a short write goes on where it stopped). Raises OSError."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def replace_atomically(path: str, data: bytes, mode: int = 0o600, temporary: str | None = None,
                       sync: bool = False) -> None:
    """Make ``data`` the content of ``path`` (already resolved to its real target) in one rename.

    ``temporary`` is the name to write first, for a caller that holds a lock on ``path`` and so
    may use a fixed name (four system calls: the state file is saved per batch); without it a
    unique name is made beside ``path``. ``sync`` flushes the data to the disk before the rename
    (the config and token files, written once). Raises OSError, having removed the temporary file.
    """
    if temporary is None:
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.tmp-")
    else:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            if mode != 0o600:
                os.fchmod(fd, mode)
            write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
