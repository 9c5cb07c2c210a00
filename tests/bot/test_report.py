"""/steward report through signed requests: who may see it, the headline numbers, and the button that
DMs the HTML page (uploaded through the fake Slack's files_upload_v2 endpoints)."""

from __future__ import annotations

import json

import pytest

from bot.ids import Action
from bot.views.report import HTML_VALUE
from tests.bot.conftest import GOVERNANCE, block_action
from tests.factories import ADMIN, OTHER, OWNER
from tests.report_seed import seed_report


@pytest.fixture
def seeded(harness, engine, bot_policy, now):
    """The report's known database, as of six hours in (nothing past expiry)."""
    from tests.report_seed import CLEAN

    seed_report(engine, policy=bot_policy, t0=now - CLEAN)
    return harness


@pytest.mark.parametrize("user", [ADMIN, GOVERNANCE])
def test_admins_and_governance_get_the_headline_numbers(seeded, user):
    seeded.command("report", user=user)
    reply = seeded.replies()[-1]
    text = json.dumps(reply, ensure_ascii=False)
    assert reply["response_type"] == "ephemeral"
    assert "Governance report" in text
    assert "9 assets, 4 unclassified (1 AI system(s) not classified)" in text
    assert "7 on time, 1 due, 1 overdue" in text
    assert "3 high or limited asset(s)" in text
    assert "6 (High 1, Minimal 1, Unclassified 4)" in text
    assert "median 3h 00m, p95 5h 00m" in text
    assert "2, 1 not reviewed" in text
    assert "Grants past expiry, not revoked: 0 (OK)" in text
    (buttons,) = [b for b in reply["blocks"] if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in buttons["elements"]] == [(Action.REPORT_HTML, HTML_VALUE)]
    assert not seeded.fake.uploads(completed=False)


@pytest.mark.parametrize("user", [OWNER, OTHER])
def test_everyone_else_is_refused(seeded, user):
    seeded.command("report", user=user)
    reply = seeded.replies()[-1]
    text = json.dumps(reply, ensure_ascii=False)
    assert reply["response_type"] == "ephemeral"
    assert "Only members of the `admins` or `governance` group(s)" in text
    assert "Governance report" not in text and "assets" not in text


def test_a_failure_shows_in_the_summary(harness, engine, bot_policy, now):
    from tests.report_seed import FAILING

    seed_report(engine, policy=bot_policy, t0=now - FAILING)
    harness.command("report", user=ADMIN)
    assert ":red_circle: *FAILURE: 3 grants past expiry but not revoked (must be 0)*" in harness.last_reply_text()


def test_the_button_dms_the_html_page_to_the_clicker(seeded):
    seeded.interact(block_action(Action.REPORT_HTML, HTML_VALUE, user=GOVERNANCE,
                                 response_url=seeded.fake.response_url("click")))
    (upload,) = seeded.fake.uploads()
    page = upload["content"].decode("utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Steward governance report" in page
    assert 'id="chart-inventory"' in page and "Grants past expiry, not revoked: 0 (OK)" in page
    assert upload["filename"].startswith("steward-report-") and upload["filename"].endswith(".html")
    assert seeded.fake.last("conversations.open").args["users"] == GOVERNANCE
    assert upload["channel_id"] == f"D{GOVERNANCE}"  # the fake's DM channel with the clicker
    assert "Sent `steward-report-" in seeded.last_reply_text()


def test_the_button_is_reauthorised(seeded, engine):
    # A forged or stale click by someone outside the groups uploads nothing.
    seeded.interact(block_action(Action.REPORT_HTML, HTML_VALUE, user=OTHER,
                                 response_url=seeded.fake.response_url("click")))
    assert seeded.fake.uploads(completed=False) == []
    assert not seeded.fake.calls_to("files.getUploadURLExternal")
    assert "Only members of the `admins` or `governance` group(s)" in seeded.last_reply_text()


def test_the_fake_slack_takes_a_files_upload_v2(fake):
    from slack_sdk import WebClient

    client = WebClient(token="xoxb-test", base_url=fake.url)
    answer = client.files_upload_v2(channel="D0ONE", content=b"<p>hi</p>", filename="a.html", title="A page")
    assert answer["file"]["name"] == "a.html"
    (upload,) = fake.uploads()
    assert (upload["content"], upload["channel_id"], upload["title"]) == (b"<p>hi</p>", "D0ONE", "A page")
