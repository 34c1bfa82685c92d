"""What each server software offers: Misskey and its forks, told apart by nodeinfo.

Forks add channels (Sharkey's ``bubbleTimeline``) and lack others (Iceshrimp has no ``hashtag``);
Misskey itself gained the chat channels in 2025.4. Pure data and judgement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Software:
    label: str
    fork: bool
    adds: tuple[str, ...] = ()
    lacks: tuple[str, ...] = ()
    detailed: bool = True  # False: a fork whose channels mkstream does not know in detail


# docs/protocol.md §9. Forks listed without details are recognised, but their channels are not known.
SOFTWARE: dict[str, Software] = {
    "misskey": Software("Misskey", False),
    "sharkey": Software("Sharkey", True, adds=("bubbleTimeline",)),
    "cherrypick": Software("CherryPick", True, adds=("mediaTimeline", "catTimeline")),
    "iceshrimp": Software("Iceshrimp", True, adds=("recommendedTimeline",),
                          lacks=("hashtag", "roleTimeline", "chatUser", "chatRoom")),
    **{name: Software(label, True, detailed=False) for name, label in (
        ("firefish", "Firefish"), ("calckey", "Calckey"), ("foundkey", "FoundKey"), ("catodon", "Catodon"),
        ("meisskey", "Meisskey"), ("magnetar", "Magnetar"), ("yojo-art", "yojo-art"))},
}
CHAT_SINCE = (2025, 4)  # chatUser and chatRoom came with Misskey 2025.4


def parse_version(text: str) -> tuple[int, ...] | None:
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part) for part in match.groups() if part is not None) if match else None


@dataclass(frozen=True)
class ServerKind:
    """What nodeinfo said: the software's name and version (None: not known)."""

    name: str | None = None
    version: str | None = None

    @property
    def software(self) -> Software | None:
        return SOFTWARE.get(self.name) if self.name else None

    @property
    def label(self) -> str:
        software = self.software
        return f"{software.label if software else self.name} {self.version or ''}".strip()

    def lacks(self, channel: str) -> str | None:
        """Why this software is known not to have ``channel``, or None."""
        software = self.software
        if software is None:
            return None
        if channel in software.lacks:
            return f"{self.label} has no {channel} channel"
        version = parse_version(self.version or "")
        if self.name == "misskey" and channel in ("chatUser", "chatRoom") and version and version[:2] < CHAT_SINCE:
            return f"{self.label} is older than 2025.4, which brought {channel}"
        return None

    def adds(self, channel: str) -> bool:
        software = self.software
        return software is not None and channel in software.adds
