"""`steward audit verify [--anchors]` and `steward audit anchor`, as operators and auditors see them:
exit 0 with the count and head hash, or exit 1 with one line naming the first bad entry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text
from sqlmodel import select

from bot.views.messages import render_outbox
from steward.cli import main
from tests.test_cli import assert_one_line_error
from tests.workers.conftest import take_messages
from tests.workflows.test_audit import _append, _entries, _forge, _shift, _swap, _tamper
from workers.celery_app import WorkerContext, make_celery, utc_now
from workers.delivery import Outcome
from workers.tasks import DELIVER_OUTBOX, deliver_batch
from workflows import audit
from workflows.anchors import create_anchor
from workflows.db import make_engine, transaction
from workflows.models import AuditAnchor
from workflows.policy import Policy, default_policy_text, load_policy
from workflows.schema import upgrade_database
from workflows.settings import Settings

AUDIT_CHANNEL = "C0AUDIT01"


def steward(*args: str) -> Result:
    """Run `steward <args>` in-process, stdout and stderr kept apart."""
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


@pytest.fixture
def home(cli_home: Path, fresh_celery) -> Path:
    """STEWARD_HOME in an empty working directory, none of Steward's other variables set."""
    return cli_home / "home"


def _use(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("DATABASE_URL", url)
    engine = make_engine(url)
    upgrade_database(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_db(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """DATABASE_URL: a SQLite file under tmp_path, migrated to head."""
    yield from _use(f"sqlite:///{(tmp_path / 'audit.db').as_posix()}", monkeypatch)


@pytest.fixture
def postgres_db(home: Path, fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """DATABASE_URL: a PostgreSQL database of the test's own, migrated to head."""
    yield from _use(fresh_postgres_url, monkeypatch)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request) -> Engine:
    """The migrated database the command reads, once per backend."""
    return request.getfixturevalue(f"{request.param if request.param == 'sqlite' else 'postgres'}_db")


@pytest.fixture
def audit_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    """STEWARD_POLICY: the default policy with an audit channel."""
    path = tmp_path / "policy.yaml"
    path.write_text(default_policy_text().replace('audit: ""', f'audit: "{AUDIT_CHANNEL}"', 1))
    monkeypatch.setenv("STEWARD_POLICY", str(path))
    assert load_policy(path).channels.audit == AUDIT_CHANNEL
    return path


def _anchor(engine: Engine, now) -> AuditAnchor:
    data = load_policy(None).model_dump(mode="json")
    data["channels"]["audit"] = AUDIT_CHANNEL
    with transaction(engine) as session:
        return create_anchor(session=session, now=now, policy=Policy.model_validate(data))


# ---- verify -----------------------------------------------------------------------------------------


def test_an_empty_log_verifies(db):
    result = steward("audit", "verify")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok: 0 entries, head hash {audit.GENESIS_HASH}\n"


def test_an_intact_log_prints_its_count_and_head_hash(db, now):
    _append(db, now, 7)
    head = _entries(db)[-1].hash

    result = steward("audit", "verify")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok: 7 entries, head hash {head}\n" and result.stderr == ""


def _modify(engine, now):
    if engine.dialect.name == "postgresql":
        _tamper(engine, "UPDATE decision_log SET after = CAST(:v AS JSON) WHERE seq = 3", v=json.dumps({"n": 9}))
    else:
        _tamper(engine, "UPDATE decision_log SET after = :v WHERE seq = 3", v=json.dumps({"n": 9}))


def _insert(engine, now):
    _shift(engine, from_seq=3, by=1)
    _forge(engine, seq=3, prev_hash=_entries(engine)[1].hash, at=now)


TAMPERING = {
    "modified": (_modify, "entry 3: modified"),
    "deleted": (lambda engine, now: _tamper(engine, "DELETE FROM decision_log WHERE seq = 3"), "entry 3: missing"),
    "inserted": (_insert, "entry 3: inserted"),
    "reordered": (lambda engine, now: _swap(engine, 3, 5), "entry 3: out of order"),
    "first deleted": (lambda engine, now: _tamper(engine, "DELETE FROM decision_log WHERE seq = 1"),
                      "entry 1: missing"),
}


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_tampering_exits_1_with_one_line_naming_the_first_bad_entry(sqlite_db, now, kind):
    _append(sqlite_db, now, 6)
    tamper, expected = TAMPERING[kind]
    tamper(sqlite_db, now)

    result = steward("audit", "verify")

    assert result.exit_code == 1
    assert_one_line_error(result, f"Error: {expected}")
    assert result.stdout == ""


@pytest.mark.parametrize("kind", ["modified", "deleted", "reordered"])
def test_tampering_on_postgresql_exits_1_too(postgres_db, now, kind):
    _append(postgres_db, now, 6)
    tamper, expected = TAMPERING[kind]
    tamper(postgres_db, now)

    result = steward("audit", "verify", "--anchors")

    assert result.exit_code == 1
    assert_one_line_error(result, f"Error: {expected}")


def test_truncation_passes_verify_but_not_verify_anchors(db, now):
    _append(db, now, 5)
    _anchor(db, now)
    _tamper(db, "DELETE FROM decision_log WHERE seq > 3")

    plain = steward("audit", "verify")
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.startswith("ok: 3 entries")

    anchored = steward("audit", "verify", "--anchors")
    assert anchored.exit_code == 1
    assert_one_line_error(anchored, "Error: entry 4: missing: the log ends at entry 3", "truncated")


def test_a_rewrite_after_truncation_fails_verify_anchors(db, now):
    _append(db, now, 5)
    _anchor(db, now)
    _tamper(db, "DELETE FROM decision_log WHERE seq > 2")
    _append(db, now + timedelta(hours=1), 4, actor="U0MALLORY")

    assert steward("audit", "verify").exit_code == 0
    result = steward("audit", "verify", "--anchors")

    assert result.exit_code == 1
    assert_one_line_error(result, "Error: entry 5: rewritten", "entries 1-5")


def test_verify_anchors_says_how_many_anchors_match(db, now):
    _append(db, now, 3)
    _anchor(db, now)
    _append(db, now, 1)

    result = steward("audit", "verify", "--anchors")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"ok: 4 entries, head hash {_entries(db)[-1].hash}",
        "ok: matches 1 anchor(s), 0 confirmed by Slack, the latest of 2026-03-02 09:00 UTC",
    ]


def test_verify_refuses_an_unmigrated_database(home, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{(tmp_path / 'empty.db').as_posix()}")
    result = steward("audit", "verify")
    assert_one_line_error(result, "steward db upgrade")


# ---- anchor -----------------------------------------------------------------------------------------


def test_anchor_posts_the_head_now_through_the_outbox(sqlite_db, audit_policy, home, fake, client):
    _append(sqlite_db, utc_now() - timedelta(minutes=1), 3)
    head = _entries(sqlite_db)[-1].hash

    result = steward("audit", "anchor")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"anchored entry 3 (3 entries, head hash {head}); a worker posts it to {AUDIT_CHANNEL}\n"
    with transaction(sqlite_db) as session:
        (anchor,) = session.exec(select(AuditAnchor)).all()
    settings = Settings(_env_file=None, steward_home=home)
    (message,) = take_messages(make_celery(settings))
    assert message.headers["task"] == DELIVER_OUTBOX and message.decode()[0] == [[anchor.outbox_id]]

    # What the worker then does: post it, and Slack's ts lands on the anchor.
    context = WorkerContext(engine=sqlite_db, client=client, settings=settings, renderer=render_outbox,
                            policy=load_policy(audit_policy))
    assert deliver_batch(context=context, message_ids=[anchor.outbox_id]) == [Outcome.SENT]
    (posted,) = fake.messages(AUDIT_CHANNEL)
    assert f"`{head}`" in posted["text"]
    verified = steward("audit", "verify", "--anchors")
    assert verified.exit_code == 0, verified.output
    assert "1 confirmed by Slack" in verified.stdout


def test_anchor_needs_an_audit_channel(sqlite_db, now):
    _append(sqlite_db, now, 1)
    result = steward("audit", "anchor")
    assert_one_line_error(result, "channels.audit")
    with sqlite_db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_anchor")).scalar_one() == 0


def test_anchor_refuses_an_empty_log(sqlite_db, audit_policy):
    assert_one_line_error(steward("audit", "anchor"), "empty")
