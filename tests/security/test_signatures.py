"""Slack's request signature, for every kind of request: a missing, wrong or stale signature, a body
altered after signing, or a body replayed outside the five-minute window gets 401, and nothing runs.

Each request would change something if it ran (the owner retiring their asset, the owner's account
reported deactivated, the owner's edit form opening), so "nothing runs" is checked on the database and on
the fake Slack, not only on the status.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from bot.app import EVENTS_PATH, wsgi_app
from bot.ids import Action
from steward.sandbox import signing
from tests.bot.conftest import SECRET, Harness, block_action
from tests.security.scenario import PEOPLE, build_scenario, guarded_state, load
from workflows.authorization import Role
from workflows.enums import AssetStatus
from workflows.models import Asset

OWNER = PEOPLE[Role.OWNER]
Signed = tuple[str, dict[str, str]]


def _command(h: Harness, secret: str, timestamp: int | None) -> Signed:
    return signing.slash_command(text="edit loan-approval", secret=secret, user_id=OWNER, timestamp=timestamp,
                                 response_url=h.fake.response_url("sig"))


def _click(h: Harness, secret: str, timestamp: int | None) -> Signed:
    payload = block_action(Action.RETIRE_ASSET, "1", user=OWNER, response_url=h.fake.response_url("sig"))
    return signing.interaction(payload, secret=secret, timestamp=timestamp)


def _event(h: Harness, secret: str, timestamp: int | None) -> Signed:
    inner = {"type": "user_change", "user": {"id": OWNER, "deleted": True}}
    return signing.event(signing.event_callback(inner), secret=secret, timestamp=timestamp)


KINDS: dict[str, Callable[[Harness, str, int | None], Signed]] = {
    "slash command": _command, "button click": _click, "event": _event,
}


def _without_signature(body: str, headers: dict[str, str]) -> Signed:
    return body, {k: v for k, v in headers.items() if k != "X-Slack-Signature"}


def _without_timestamp(body: str, headers: dict[str, str]) -> Signed:
    return body, {k: v for k, v in headers.items() if k != "X-Slack-Request-Timestamp"}


def _altered(body: str, headers: dict[str, str]) -> Signed:
    # The same length and shape, one id changed: what a man in the middle would try.
    return body.replace(OWNER, "U0OWNER2"), headers


def _not_v0(body: str, headers: dict[str, str]) -> Signed:
    return body, {**headers, "X-Slack-Signature": headers["X-Slack-Signature"].replace("v0=", "v1=")}


TAMPERING: dict[str, tuple[str, int, Callable[[str, dict[str, str]], Signed]]] = {
    # name: (secret it is signed with, seconds its timestamp is off, what is done to it afterwards)
    "missing signature": (SECRET, 0, _without_signature),
    "missing timestamp": (SECRET, 0, _without_timestamp),
    "wrong secret": ("not-the-signing-secret", 0, lambda b, h: (b, h)),
    "other signature version": (SECRET, 0, _not_v0),
    "stale by six minutes": (SECRET, -6 * 60, lambda b, h: (b, h)),
    "six minutes in the future": (SECRET, 6 * 60, lambda b, h: (b, h)),
    "body altered after signing": (SECRET, 0, _altered),
}


@pytest.fixture
def engine(sqlite_engine):
    """Bolt checks signatures before anything reads the database, so SQLite alone is enough here."""
    return sqlite_engine


@pytest.fixture
def world(harness, now):
    """The matrix's world, and what it looks like before anything is sent."""
    scenario = build_scenario(harness.ctx.engine, policy=harness.ctx.policy, now=now)
    return scenario, guarded_state(harness.ctx.engine)


def assert_nothing_ran(h: Harness, before, queued_before: int) -> None:
    """No table changed, Slack was not called, and nothing was queued for delivery or decision."""
    assert guarded_state(h.ctx.engine) == before
    assert h.fake.calls == [] and h.decisions == [] and len(h.enqueued) == queued_before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tampering", TAMPERING)
def test_a_request_with_a_bad_signature_gets_401_and_runs_nothing(harness, world, figures, kind, tampering):
    _, before = world
    secret, skew, spoil = TAMPERING[tampering]
    body, headers = spoil(*KINDS[kind](harness, secret, int(datetime.now(UTC).timestamp()) + skew))

    assert harness.dispatch(body, headers).status == 401
    assert_nothing_ran(harness, before, queued_before=0)
    figures["requests_refused"] += 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_body_replayed_after_the_window_gets_401(harness, world, kind):
    _, before = world
    body, headers = KINDS[kind](harness, SECRET, None)
    with freeze_time(datetime.now(UTC) + timedelta(minutes=5, seconds=1)):
        assert harness.dispatch(body, headers).status == 401
    assert_nothing_ran(harness, before, queued_before=0)


def test_a_click_replayed_inside_the_window_acts_once(harness, world):
    # Slack itself retries within the window, so a replay there is accepted; the decision still happens
    # exactly once, and the second delivery is answered, not repeated.
    scenario, _ = world
    body, headers = _click(harness, SECRET, None)
    assert harness.dispatch(body, headers).status == 200
    retired = guarded_state(harness.ctx.engine)
    assert load(harness.ctx.engine, Asset, scenario.asset_id).status == AssetStatus.RETIRED

    assert harness.dispatch(body, headers).status == 200
    assert guarded_state(harness.ctx.engine) == retired
    assert "already retired" in harness.last_reply_text()


def _post(application, body: str, headers: dict[str, str]) -> int:
    raw = body.encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": EVENTS_PATH, "QUERY_STRING": "",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.input": io.BytesIO(raw), "CONTENT_LENGTH": str(len(raw)),
               "CONTENT_TYPE": headers.get("Content-Type", "")}
    environ.update({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "Content-Type"})
    status: list[str] = []
    b"".join(application(environ, lambda line, response_headers, exc_info=None: status.append(line)))
    return int(status[0].split()[0])


def test_over_http_a_bad_signature_is_a_401_an_unreadable_body_a_400_and_a_good_one_a_200(harness, world):
    scenario, before = world
    application = wsgi_app(harness.app)
    body, headers = _click(harness, "not-the-signing-secret", None)
    assert _post(application, body, headers) == 401
    assert guarded_state(harness.ctx.engine) == before

    # Bolt reads the body before it checks the signature: an unreadable one is a 400, signed or not.
    assert _post(application, "payload=%7Bnot+json", {"Content-Type": signing.FORM_CONTENT_TYPE}) == 400
    assert guarded_state(harness.ctx.engine) == before

    body, headers = _click(harness, SECRET, None)
    assert _post(application, body, headers) == 200
    assert load(harness.ctx.engine, Asset, scenario.asset_id).status == AssetStatus.RETIRED
    assert json.loads(json.dumps(harness.replies()[-1]))["response_type"] == "ephemeral"
