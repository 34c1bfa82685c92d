"""What happens on the simulated server without anyone asking: the background tasks.

Generated timeline notes at ``rate`` notes/s while a note-carrying connection exists (each made
for a connection that will accept it, from ``traffic.py``), and with ``ticks``: serverStats and
queueStats samples, ``main`` bursts for a connected user, ``noteUpdated`` events for captured
notes, occasional events on drive, chat, reversi and admin connections, and rare broadcasts.
Also the past: a first start fills the history with a few hundred notes of the last hours. Every
task only calls the engine's sending primitives, so none of this touches the server library.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from misskey_cli.core.jsoncodec import dumps, loads
from misskey_cli.core.notes import is_pure_renote
from misskey_cli.simulator.engine import STATS_LOG_MAX, Connection, Engine, Socket, channel_frame, encode_any
from misskey_cli.simulator.rules import NOTE_CHANNELS, Targets
from misskey_cli.simulator.traffic import NoteRequest, Traffic

SERVER_STATS_INTERVAL = 2.0
QUEUE_STATS_INTERVAL = 10.0
# Channels whose events are about the user's own things (files, chats, games, reports), not notes.
SIDE_CHANNELS = ("drive", "chatUser", "chatRoom", "reversi", "reversiGame", "admin")

HISTORY_SPAN_MS = 6 * 3_600_000  # a fresh server's history covers the last six hours


@dataclass
class Past:
    """What a server that has been running holds: notes (oldest first) and each account's notifications."""

    notes: list[dict[str, Any]]
    notifications: dict[str, list[dict[str, Any]]]  # username -> oldest first


def the_past(base_url: str, seed: int | None, count: int, usernames: Iterable[str], now_ms: int,
             span_ms: int = HISTORY_SPAN_MS) -> Past:
    """``count`` notes posted over the ``span_ms`` before ``now_ms``, with time-ordered aidx ids (made by
    "an earlier run" of the server: another node part) and createdAt to match, reactions and replies
    since; and for each account of ``usernames`` (who post among the cast) ``count // 15``
    notifications of the same hours.

    Drawn from their own generator (seeded from ``seed``), so a seeded simulator's live traffic is the
    same with or without a history.
    """
    rng = random.Random(None if seed is None else seed ^ 0x5EED)
    accounts = sorted(set(usernames))
    schedule = sorted([(now_ms - rng.randrange(60_000, span_ms), "") for _ in range(count)]
                      + [(now_ms - rng.randrange(60_000, span_ms), name) for name in accounts
                         for _ in range(count // 15)])
    moment = [0]
    past = Traffic(rng.getrandbits(32), base_url, clock=lambda: moment[0] / 1000)
    for username in accounts:
        past.account(username)
    made = Past([], {name: [] for name in accounts})
    for ms, username in schedule:  # in time order, so that every id is made at its own time
        moment[0] = ms
        if username:
            made.notifications[username] += [body for event, body in past.main_events(past.account(username))
                                             if event == "notification"]
            continue
        note = past.note(NoteRequest(visibility=rng.choice(("public",) * 8 + ("home", "followers"))))
        if not is_pure_renote(note):  # reacted to, replied to and renoted since
            past.add_reactions(note, rng.choice((0, 0, 0, 1, 1, 2, 3, 5, 8)))
            note["repliesCount"] = rng.choice((0, 0, 0, 1, 2))
            note["renoteCount"] = rng.choice((0, 0, 0, 0, 1, 3))
        made.notes.append(note)
    return made


# The past, made once per process for each (seed, count, accounts) and copied for every simulator with
# its own host and port: making it takes ~25 ms, and test suites start hundreds of simulators.
_HISTORY_HOST = "history.invalid"
_PAST: dict[tuple[int | None, int, tuple[str, ...]], bytes] = {}


def _copy_of_the_past(seed: int | None, count: int, usernames: tuple[str, ...], host_port: str,
                      now_ms: int) -> Past:
    key = (seed, count, usernames)
    made = _PAST.get(key)
    if made is None:
        past = the_past(f"http://{_HISTORY_HOST}", seed, count, usernames, now_ms)
        made = _PAST[key] = dumps({"notes": past.notes, "notifications": past.notifications})
    value, _ = loads(made.replace(_HISTORY_HOST.encode(), host_port.encode()))
    return Past(value["notes"], value["notifications"])


class Activity(Engine):
    """The engine plus its background activity."""

    _history_made = False

    def _listening(self) -> None:
        """A first start fills the history with the past hours' notes and notifications, as a running
        server has them."""
        super()._listening()
        if self._history_made or self.initial_history <= 0:
            return
        self._history_made = True
        usernames = tuple(sorted(set(self.tokens.values())))
        past = _copy_of_the_past(self.seed, self.initial_history, usernames, self.host_port,
                                 self.traffic.ids.now_ms())
        for note in past.notes:
            self.history.add(note)
            self.traffic.remember(note)
        for username, notifications in past.notifications.items():
            user_id = self.traffic.account(username).id
            for notification in notifications:
                self.notifications.add(user_id, notification)

    def _background(self) -> list[Coroutine[Any, Any, None]]:
        tasks = [*super()._background(), self._generate_notes()]
        if self.ticks:
            tasks += [
                self._every(SERVER_STATS_INTERVAL, lambda: self._stats_tick("serverStats")),
                self._every(QUEUE_STATS_INTERVAL, lambda: self._stats_tick("queueStats")),
                self._random_ticks(self._main_tick, 5.0, 8.0),
                self._random_ticks(self._capture_tick, 1.5, 3.0),
                self._random_ticks(self._side_channel_tick, 4.0, 8.0),
                self._occasional_broadcasts(),
            ]
        return tasks

    def _note_targets(self) -> list[tuple[Socket, Connection]]:
        return [(s, c) for s in self._open_sockets() if not s.frozen
                for c in s.connections.values() if c.channel in NOTE_CHANNELS and not c.inert]

    def _next_delay(self, first: bool) -> float:
        rng = self.traffic.rng
        if first:
            return rng.uniform(0.05, 0.5) / self.rate
        return min(max(rng.expovariate(self.rate), 0.02 / self.rate), 3.0 / self.rate)

    async def _generate_notes(self) -> None:
        """Timeline traffic at ``rate`` notes/s while a note-carrying connection exists."""
        assert self._wake_generator is not None
        rng = self.traffic.rng
        first = True
        while True:
            if self.rate <= 0 or not self._note_targets():
                self._wake_generator.clear()
                if self.rate <= 0 or not self._note_targets():
                    await self._wake_generator.wait()
                first = True
                continue
            await asyncio.sleep(self._next_delay(first))
            first = False
            candidates = self._note_targets()
            if not candidates or self.rate <= 0:
                continue
            try:
                sock, connection = rng.choice(candidates)
                note = self.traffic.note_for(connection.channel, connection.params, sock.user)
                self._route_note(note, self._random_targets(connection))
            except Exception as exc:  # noqa: BLE001 - keep generating
                self._record_error(exc)

    def _random_targets(self, chosen: Connection) -> Targets:
        """Which lists, antennas and roles a generated note belongs to: the chosen one, others at random."""
        rng = self.traffic.rng
        found: dict[str, set[str]] = {"listId": set(), "antennaId": set(), "roleId": set()}
        for _, connection in self._note_targets():
            for key, ids in found.items():
                value = connection.params.get(key)
                if isinstance(value, str) and (connection is chosen or rng.random() < 0.3):
                    ids.add(value)
        return Targets(tuple(found["listId"]), tuple(found["antennaId"]), tuple(found["roleId"]))

    async def _every(self, interval: float, action: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - a background task keeps running; the error is recorded
                self._record_error(exc)

    async def _random_ticks(self, action: Callable[[], object], mean_at_rate_1: float, mean_idle: float) -> None:
        rng = self.traffic.rng
        while True:
            mean = mean_at_rate_1 / self.rate if self.rate > 0 else mean_idle
            await asyncio.sleep(min(max(rng.expovariate(1.0 / mean), mean / 10), mean * 4))
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - a background task keeps running; the error is recorded
                self._record_error(exc)

    async def _occasional_broadcasts(self) -> None:
        # Rare and never early, whatever the rate: a demo's first records are the timeline's notes.
        rng = self.traffic.rng
        await asyncio.sleep(rng.uniform(30.0, 90.0))
        while True:
            try:
                self._broadcast_tick()
            except Exception as exc:  # noqa: BLE001 - a background task keeps running; the error is recorded
                self._record_error(exc)
            await asyncio.sleep(30.0 + rng.expovariate(1 / 60.0))

    def _stats_tick(self, channel: str) -> None:
        sample = self.traffic.server_stats() if channel == "serverStats" else self.traffic.queue_stats()
        log = self._stats_log[channel]
        log.insert(0, sample)
        del log[STATS_LOG_MAX:]
        self._channel_event(channel, "stats", sample)

    def _main_tick(self) -> None:
        viewers = {s.user.id: s.user for s in self._open_sockets() if s.user is not None and not s.frozen
                   and any(c.channel == "main" for c in s.connections.values())}
        if viewers:
            viewer = viewers[self.traffic.rng.choice(sorted(viewers))]
            for event, payload in self.traffic.main_events(viewer):
                self._main_event(viewer.id, event, payload)

    def _capture_tick(self) -> None:
        captured = sorted({note_id for s in self._open_sockets() if not s.frozen for note_id in s.captures})
        if captured:
            note_id = self.traffic.rng.choice(captured)
            event = self.traffic.note_event(note_id)
            if event is not None:
                self._note_updated(note_id, *event)

    def _broadcast_tick(self) -> None:
        if self._open_sockets():
            kind, body = self.traffic.broadcast()
            self._broadcast(kind, body)

    def _side_channel_tick(self, channel: str | None = None) -> int:
        """One event on a drive, chat, reversi or admin connection (of ``channel`` if given); how many got it."""
        candidates = [(s, c) for s in self._open_sockets() if not s.frozen for c in s.connections.values()
                      if c.channel in SIDE_CHANNELS and not c.inert and channel in (None, c.channel)
                      and (s.user is not None or c.channel == "reversiGame")]
        if not candidates:
            return 0
        traffic = self.traffic
        sock, connection = traffic.rng.choice(candidates)
        user = sock.user or traffic.cast[1]  # an anonymous reversiGame watcher sees two other players
        event: str
        body: Any
        main: Any = None  # what the user's main channel hears of it
        if connection.channel == "drive":
            event, body = traffic.drive_event(user)
        elif connection.channel == "chatUser":
            other_id = str(connection.params.get("otherId"))
            sender = traffic.user_by_id(other_id) or dataclasses.replace(traffic.rng.choice(traffic.cast), id=other_id)
            event, body = traffic.chat_event(f"{user.id}:{other_id}", sender, user.id, None)
            if event == "message":
                main = traffic.chat_message_for_main(body, sender, user)
        elif connection.channel == "chatRoom":
            room_id = str(connection.params.get("roomId"))
            sender = traffic.rng.choice([u for u in traffic.cast if u.host is None])
            event, body = traffic.chat_event(f"room:{room_id}", sender, None, room_id)
        elif connection.channel == "reversi":
            event, body = traffic.reversi_event(user)
        elif connection.channel == "reversiGame":
            event, body = traffic.reversi_game_event(str(connection.params.get("gameId")), user)
        else:
            event, body = "newAbuseUserReport", traffic.abuse_report()
        sent = int(self._send(sock, channel_frame(connection.id, event, encode_any(body))))
        if event == "fileCreated":  # an upload and a direct message are also announced on main (the recording)
            self._main_event(user.id, "driveFileCreated", body)
        elif main is not None:
            self._main_event(user.id, "newChatMessage", main)
        return sent
