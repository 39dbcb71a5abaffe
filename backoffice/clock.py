"""The application clock: the only place the back-office reads the time.

Everything is UTC. ``clock_at`` replays domain code at another moment (the demo seeder
uses it to create past activity); tests move the clock the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime

#: set only by :func:`clock_at`
_clock_override: ContextVar[datetime | None] = ContextVar("clock_override", default=None)


def utcnow() -> datetime:
    """The current time, aware, in UTC: the only clock the application reads."""
    return _clock_override.get() or datetime.now(UTC)


@contextmanager
def clock_at(moment: datetime) -> Iterator[None]:
    """Run domain code as if it were ``moment`` (aware UTC), e.g. to seed past activity."""
    token = _clock_override.set(moment.astimezone(UTC))
    try:
        yield
    finally:
        _clock_override.reset(token)


def today() -> date:
    """Today's date in UTC."""
    return utcnow().date()
