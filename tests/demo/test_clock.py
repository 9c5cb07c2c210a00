"""The sandbox clock: every process reading the same file sees the same moved-on time; production reads
the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from freezegun import freeze_time

from workers.clock import SandboxClock, clock_for, utc_now
from workflows.settings import Settings

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_production_reads_the_wall_clock():
    assert clock_for(Settings(_env_file=None)) is utc_now


@freeze_time(START)
def test_two_readers_of_one_file_move_together(tmp_path: Path):
    settings = Settings(_env_file=None, steward_sandbox_clock=tmp_path / "clock")
    writer, reader = clock_for(settings), clock_for(settings)
    assert reader() == START, "no file yet: no offset"
    assert writer.advance(timedelta(days=6)) == START + timedelta(days=6)
    assert reader() == START + timedelta(days=6)


@freeze_time(START)
def test_set_to_never_moves_backwards(tmp_path: Path):
    clock = SandboxClock(tmp_path / "clock")
    clock.set_to(START + timedelta(hours=5))
    assert clock.set_to(START + timedelta(hours=1)) == START + timedelta(hours=5)
