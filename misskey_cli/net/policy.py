"""When to reconnect, when to give up, when a path is dead: pure policies and their settings.

Exponential backoff with jitter: the first retry after about ``first_delay``, doubling up to
``cap``; a connection that lived ``stable_after`` seconds resets it, so a server that keeps
dropping sockets gets quick reconnects and one that refuses them gets ever slower ones. The
exponent is clamped, so "never give up" means never (no overflow after a thousand failures).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Liveness:
    ping_interval: float = 30.0
    ping_timeout: float = 60.0
    ack_timeout: float = 5.0
    require_ack: bool = False
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class Reconnect:
    enabled: bool = True
    max_retries: int | None = None  # None = never give up
    first_delay: float = 0.5
    cap: float = 30.0
    # A connection that lived this long resets the backoff (reconnecting-websocket, which the
    # official client builds on, uses 5 s too).
    stable_after: float = 5.0

    @property
    def retry_first_connect(self) -> bool:
        """Retries given explicitly apply to the first connection too; by default it fails at once."""
        return self.max_retries is not None


# 2 ** 40 times any sane first delay is far past any cap: enough to reach it, small enough to stay finite.
_MAX_EXPONENT = 40


@dataclass
class Backoff:
    policy: Reconnect
    random: Callable[[], float] = field(default=random.random)
    failures: int = 0  # failed attempts (or lost connections) in a row

    def failed(self) -> float | None:
        """Count one failure; the delay before the next attempt, or None when retries are spent."""
        self.failures += 1
        if not self.policy.enabled:
            return None
        if self.policy.max_retries is not None and self.failures > self.policy.max_retries:
            return None
        exponent = min(self.failures - 1, _MAX_EXPONENT)
        base = min(self.policy.cap, self.policy.first_delay * 2.0 ** exponent)
        # Jitter keeps a crowd of clients that lost the same server from retrying in step.
        return base * (0.5 + 0.5 * self.random())

    def lived(self, seconds: float) -> None:
        """A connection that was up this long ended: a stable one resets the count."""
        if seconds >= self.policy.stable_after:
            self.failures = 0
