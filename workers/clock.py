"""The clock every process reads: the wall clock, or the sandbox's shared clock that the demo moves on.

Only the edges read the time (the domain takes `now` as an argument). In production that is the wall
clock. `steward demo` sets STEWARD_SANDBOX_CLOCK to a file holding an offset in seconds, and every
process of its stack (bot, worker, scheduler) then reads wall time plus that offset, so the demo can
move days ahead and watch the real stack notice reminders, expiries and reviews fall due.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from workflows.settings import Settings

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock as an aware UTC datetime."""
    return datetime.now(UTC)


def clock_for(settings: Settings) -> Clock:
    """The clock these settings ask for: the wall clock unless a sandbox clock file is configured."""
    if settings.steward_sandbox_clock is None:
        return utc_now
    return SandboxClock(settings.steward_sandbox_clock)


class SandboxClock:
    """Wall time plus the offset written in a file, re-read on each call so every process moves together."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> datetime:
        return utc_now() + timedelta(seconds=self.offset_seconds())

    def offset_seconds(self) -> float:
        """The current offset; 0 before anything was written."""
        try:
            return float(self.path.read_text(encoding="utf-8").strip() or 0)
        except FileNotFoundError:
            return 0.0

    def advance(self, delta: timedelta) -> datetime:
        """Move every process's clock `delta` ahead; the new time."""
        offset = self.offset_seconds() + delta.total_seconds()
        # Written whole then renamed, so a reader never sees half a number.
        scratch = self.path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(repr(offset), encoding="utf-8")
        scratch.replace(self.path)
        return self()

    def set_to(self, moment: datetime) -> datetime:
        """Move the clock to `moment` (never backwards); the new time."""
        return self.advance(max(timedelta(0), moment - self()))
