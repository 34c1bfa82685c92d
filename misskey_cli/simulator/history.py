"""What the HTTP API's timelines read: the simulator's ordered note and notification history.

Pure data structures: a bounded history of every note the simulator routed or a test posted
(with the lists, antennas and roles it belongs to), a bounded per-user history of notifications,
and Misskey's pagination rule (``makePaginationQuery``): ``sinceId``/``untilId`` bounds are
exclusive and compared as strings (aidx ids sort by time); ``sinceId`` alone (or ``sinceDate``
alone) answers oldest first, anything else newest first, and the id bounds win over the dates.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from misskey_cli.simulator.corpus import aidx_ms
from misskey_cli.simulator.rules import NO_TARGETS, Targets


@dataclass(frozen=True)
class Entry:
    note: dict[str, Any]
    targets: Targets


@dataclass(frozen=True)
class Page:
    """The pagination params of a timeline request (already validated)."""

    limit: int = 10
    since_id: str | None = None
    until_id: str | None = None
    since_date: int | None = None  # epoch milliseconds
    until_date: int | None = None


def _created_ms(item_id: str) -> int | None:
    try:
        return aidx_ms(item_id)
    except ValueError:
        return None


def _after_date(item_id: str, date: int) -> bool:
    ms = _created_ms(item_id)
    return ms is not None and ms > date


def _before_date(item_id: str, date: int) -> bool:
    ms = _created_ms(item_id)
    return ms is not None and ms < date


def _bounds(page: Page) -> tuple[list[Callable[[str], bool]], bool]:
    """(the id tests an item must pass, whether the answer is oldest first)."""
    if page.since_id is not None or page.until_id is not None:
        since, until = page.since_id, page.until_id
        tests: list[Callable[[str], bool]] = []
        if since is not None:
            tests.append(lambda i: i > since)
        if until is not None:
            tests.append(lambda i: i < until)
        return tests, until is None
    tests = []
    since_date, until_date = page.since_date, page.until_date
    if since_date is not None:
        tests.append(lambda i: _after_date(i, since_date))
    if until_date is not None:
        tests.append(lambda i: _before_date(i, until_date))
    return tests, since_date is not None and until_date is None


def paginate(ids_oldest_first: Iterable[str], page: Page, keep: Callable[[str], bool]) -> list[str]:
    """The ids a timeline request answers, in the order the server answers them."""
    tests, ascending = _bounds(page)
    ordered = sorted(ids_oldest_first, reverse=not ascending)
    out: list[str] = []
    for item_id in ordered:
        if all(test(item_id) for test in tests) and keep(item_id):
            out.append(item_id)
            if len(out) >= page.limit:
                break
    return out


class NoteHistory:
    """The last ``size`` notes, by id (a re-posted id replaces its note)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, note: dict[str, Any], targets: Targets = NO_TARGETS) -> None:
        note_id = note.get("id")
        if not isinstance(note_id, str):
            return
        self._entries.pop(note_id, None)
        self._entries[note_id] = Entry(note, targets)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def get(self, note_id: str) -> Entry | None:
        return self._entries.get(note_id)

    def remove(self, note_id: str) -> None:
        self._entries.pop(note_id, None)

    def notes(self) -> list[dict[str, Any]]:
        """Every note held, oldest first."""
        return [entry.note for entry in self._entries.values()]

    def query(self, page: Page, keep: Callable[[Entry], bool]) -> list[Entry]:
        ids = paginate(self._entries, page, lambda i: keep(self._entries[i]))
        return [self._entries[i] for i in ids]


class NotificationHistory:
    """Each user's last ``size`` notifications (the bodies of their ``notification`` events)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._by_user: dict[str, OrderedDict[str, dict[str, Any]]] = {}

    def add(self, user_id: str, notification: dict[str, Any]) -> None:
        notification_id = notification.get("id")
        if not isinstance(notification_id, str):
            return
        items = self._by_user.setdefault(user_id, OrderedDict())
        items.pop(notification_id, None)
        items[notification_id] = notification
        while len(items) > self.size:
            items.popitem(last=False)

    def query(self, user_id: str, page: Page, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        items = self._by_user.get(user_id, OrderedDict())
        return [items[i] for i in paginate(items, page, lambda i: keep(items[i]))]
