"""Recording a live run: ``RecordingSource`` stands between a frame source (a ``Session``, a replay)
and the stream, hands on every event unchanged, and has the ``Recorder`` write the frames, the
reconnects and every change of what is subscribed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from misskey_cli.core.events import Frames, Reconnected
from misskey_cli.recording.format import named_captures, subscriptions_of
from misskey_cli.recording.writer import Recorder

if TYPE_CHECKING:
    from misskey_cli.core.events import Counters, Event


class RecordingSource:
    """A frame source that records what another one delivers: frames, reconnects, subscription changes.

    ``source`` is a live ``Session`` (or a replay, to re-record a selection); its ``connections``
    and ``captures`` are compared before every wait, so a ``--stdin`` connect, disconnect, sub or
    unsub is a ``subscriptions`` line ahead of the first frame it brings. ``host`` is called once,
    when the header is written (on ``open``); ``redact`` cleans the reconnect cause; ``clock`` gives
    the time of event lines (a replay's clock is its recorded time).

    With ``one_by_one`` (a run that stops after ``-n`` records), the frames of a batch are handed
    on, and recorded, one at a time: the stream stops in the middle of a batch, and the recording
    then ends where the output does instead of holding the rest of the batch.
    """

    def __init__(self, source: Any, recorder: Recorder, host: Callable[[], str | None],
                 redact: Callable[[str], str] = str, clock: Callable[[], float] = time.time,
                 one_by_one: bool = False) -> None:
        self.source = source
        self.recorder = recorder
        self.host = host
        self.redact = redact
        self.clock = clock
        self.one_by_one = one_by_one
        self.counters: Counters = source.counters  # the same object: the source updates it
        self._keys: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._held: list[Any] = []  # one_by_one: the rest of the last batch, not handed on yet

    def open(self) -> None:
        self.source.open()
        if not self.recorder.started:
            self.recorder.header(self.host(), subscriptions_of(self.source), self.clock())
            self._keys = self._current_keys()

    def _current_keys(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return tuple(self.source.connections), named_captures(self.source)

    def next(self, deadline: float | None, watch: Sequence[int]) -> Event:
        if not self.recorder.started:
            self.open()
        elif self._current_keys() != self._keys:
            self._keys = self._current_keys()
            self.recorder.event("subscriptions", self.clock(), **subscriptions_of(self.source).to_json())
        if self._held:
            return self._hand_on(self._held)
        event: Event = self.source.next(deadline, watch)
        if isinstance(event, Frames):
            return self._hand_on(event.items) if self.one_by_one else self._record(event)
        if isinstance(event, Reconnected):
            self.recorder.event("reconnected", self.clock(), down_since=round(event.down_since, 6),
                                down_for=round(event.down_for, 3), cause=self.redact(event.cause))
        return event

    def _record(self, event: Any) -> Event:
        self.recorder.frames(event.items)
        result: Event = event
        return result

    def _hand_on(self, items: list[Any]) -> Event:
        first, self._held = items[:1], items[1:]
        return self._record(Frames(first))

    def close(self) -> None:
        self.source.close()

    def abort(self) -> None:
        self.source.abort()
