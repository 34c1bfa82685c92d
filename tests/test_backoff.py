"""The reconnect policy, from tables: an injected random source, no sockets, no timers."""

from __future__ import annotations

import pytest

from misskey_cli.net.policy import Backoff, Reconnect


def delays(policy, n, jitter=1.0):
    backoff = Backoff(policy, random=lambda: jitter)
    return [backoff.failed() for _ in range(n)]


@pytest.mark.parametrize(("policy", "jitter", "expected"), [
    # Doubling from the first delay up to the cap; jitter 1.0 is the full delay, 0.0 half of it.
    (Reconnect(first_delay=0.5, cap=30), 1.0, [0.5, 1, 2, 4, 8, 16, 30, 30]),
    (Reconnect(first_delay=0.5, cap=30), 0.0, [0.25, 0.5, 1, 2, 4, 8, 15, 15]),
    (Reconnect(first_delay=1, cap=3), 1.0, [1, 2, 3, 3, 3, 3, 3, 3]),
    # Retries spent: None from then on.
    (Reconnect(max_retries=2), 1.0, [0.5, 1, None, None, None, None, None, None]),
    (Reconnect(max_retries=0), 1.0, [None] * 8),
    (Reconnect(enabled=False), 1.0, [None] * 8),
])
def test_delays(policy, jitter, expected):
    assert delays(policy, 8, jitter) == expected


def test_never_giving_up_means_never():
    # 2 ** 1024 overflows a float: the exponent is clamped, so hours of failures stay at the cap.
    assert delays(Reconnect(), 5000)[-3:] == [30, 30, 30]


@pytest.mark.parametrize(("lived", "next_delay"), [(4.9, 2), (5.0, 0.5), (3600, 0.5)])
def test_a_stable_connection_resets_the_backoff(lived, next_delay):
    backoff = Backoff(Reconnect(), random=lambda: 1.0)
    backoff.failed()
    backoff.failed()
    backoff.lived(lived)
    assert backoff.failed() == next_delay
