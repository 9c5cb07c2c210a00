"""`steward sweep`: one sweep by hand, and `--dry-run` printing what is due without changing anything."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from steward.cli import main
from tests.factories import make_asset, make_grant, make_request, members, outbox_rows, row_counts
from tests.workers.conftest import take_messages
from workers.celery_app import make_celery, utc_now
from workers.tasks import DELIVER_OUTBOX, RUN_DUE
from workflows.db import make_engine
from workflows.policy import load_policy
from workflows.settings import Settings


def steward(*args: str) -> Result:
    """Run `steward <args>` in-process."""
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


@pytest.fixture
def home(cli_home: Path, monkeypatch: pytest.MonkeyPatch, fresh_celery) -> Path:
    """STEWARD_HOME in an empty working directory, a SQLite DATABASE_URL, nothing else set."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{(cli_home / 'sweep.db').as_posix()}")
    return cli_home / "home"


@pytest.fixture
def db(home: Path, tmp_path: Path) -> Iterator[Engine]:
    """The database migrated by `steward db upgrade`, with one item of each kind of work due now."""
    result = steward("db", "upgrade")
    assert result.exit_code == 0, result.output
    engine = make_engine(f"sqlite:///{(tmp_path / 'sweep.db').as_posix()}")
    # The command reads the wall clock, so the story is told relative to it.
    now, policy, who = utc_now(), load_policy(None), members()
    a, b, c, d = (make_asset(engine, policy=policy, now=now - timedelta(days=9), name=f"Dataset {n}")
                  for n in "abcd")
    make_request(engine, a, policy=policy, now=now - timedelta(hours=5), members_of=who)  # a reminder
    make_request(engine, b, policy=policy, now=now - timedelta(days=8), members_of=who)  # all three due
    make_grant(engine, c, policy=policy, now=now - timedelta(hours=49), duration_hours=48)  # ended
    make_grant(engine, d, policy=policy, now=now - timedelta(hours=1), duration_hours=24)  # ends within a day
    yield engine
    engine.dispose()


def test_dry_run_prints_what_is_due_and_changes_nothing(db, home):
    before_rows, before_outbox = row_counts(db), outbox_rows(db)

    result = steward("sweep", "--dry-run")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{len(before_outbox)} outbox message(s) due",
        "2 approval reminder(s) due",
        "1 escalation(s) due",
        "1 request expiry(ies) due",
        "1 grant expiry warning(s) due",
        "1 grant expiry(ies) due",
        "0 provisioning job(s) due",
        "0 audit anchor(s) due",
        "0 owner review nudge(s) to schedule due",
        "0 review nudge(s) due",
        "0 overdue review escalation(s) due",
        "0 recertification(s) to start due",
        "0 recertification escalation(s) due",
    ]
    assert row_counts(db) == before_rows
    assert outbox_rows(db) == before_outbox  # nothing claimed, nothing sent
    assert not (home / "broker").exists()  # no broker was touched


def test_sweep_enqueues_everything_due_on_the_broker(db, home):
    result = steward("sweep")

    assert result.exit_code == 0, result.output
    outbox = len(outbox_rows(db))
    assert result.stdout.splitlines() == [
        f"enqueued {outbox} outbox message(s)",
        "enqueued 2 approval reminder(s)",
        "enqueued 1 escalation(s)",
        "enqueued 1 request expiry(ies)",
        "enqueued 1 grant expiry warning(s)",
        "enqueued 1 grant expiry(ies)",
        "enqueued 0 provisioning job(s)",
        "enqueued 0 audit anchor(s)",
        "enqueued 0 owner review nudge(s) to schedule",
        "enqueued 0 review nudge(s)",
        "enqueued 0 overdue review escalation(s)",
        "enqueued 0 recertification(s) to start",
        "enqueued 0 recertification escalation(s)",
    ]
    messages = take_messages(make_celery(Settings(_env_file=None, steward_home=home)))
    due = sorted(m.decode()[0][0] for m in messages if m.headers["task"] == RUN_DUE)
    assert due == ["escalation", "grant_expiry", "grant_warning", "reminder", "reminder", "request_expiry"]
    delivered = [i for m in messages if m.headers["task"] == DELIVER_OUTBOX for i in m.decode()[0][0]]
    assert sorted(delivered) == [row.id for row in outbox_rows(db)]
    # Nothing has run them yet: a second sweep leaves them to the tasks already queued.
    again = steward("sweep")
    assert again.exit_code == 0, again.output
    assert all(line.startswith("enqueued 0 ") for line in again.stdout.splitlines()), again.stdout
    assert take_messages(make_celery(Settings(_env_file=None, steward_home=home))) == []


def test_sweep_without_a_broker_is_one_line(db, monkeypatch):
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")

    result = steward("sweep")

    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    assert "cannot reach the broker" in result.stderr and "Traceback" not in result.output
    # What it could not hand over is not left marked as queued: the next sweep takes all of it.
    dry = steward("sweep", "--dry-run")
    assert dry.stdout.splitlines()[:2] == [f"{len(outbox_rows(db))} outbox message(s) due",
                                           "2 approval reminder(s) due"]
