"""Every request must carry Slack's signature: a bad one is refused with 401 and runs nothing."""

import time

from steward.sandbox import signing
from tests.bot.conftest import SECRET


def test_a_correctly_signed_command_is_answered(harness):
    response = harness.command("help")
    assert response.status == 200
    assert "Steward keeps your AI assets under control" in harness.last_reply_text()


def test_a_wrong_signature_gets_401_and_runs_nothing(harness):
    body, headers = signing.slash_command(text="help", secret="not-the-secret",
                                          response_url=harness.fake.response_url("cmd"))
    response = harness.dispatch(body, headers)
    assert response.status == 401
    assert harness.fake.calls == []


def test_a_missing_signature_gets_401(harness):
    body, headers = signing.slash_command(text="help", secret=SECRET, response_url=harness.fake.response_url("c"))
    headers.pop("X-Slack-Signature")
    assert harness.dispatch(body, headers).status == 401
    assert harness.fake.calls == []


def test_a_request_older_than_five_minutes_gets_401(harness):
    stale = int(time.time()) - 6 * 60
    body, headers = signing.slash_command(text="help", secret=SECRET, timestamp=stale,
                                          response_url=harness.fake.response_url("cmd"))
    assert harness.dispatch(body, headers).status == 401
    assert harness.fake.calls == []


def test_a_tampered_body_gets_401(harness):
    body, headers = signing.slash_command(text="help", secret=SECRET, response_url=harness.fake.response_url("c"))
    assert harness.dispatch(body.replace("help", "mine"), headers).status == 401
