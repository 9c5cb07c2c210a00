"""A data scientist asks for access to a high-risk model trained on restricted data; the owner, security
and the data's owner approve it; a day before it ends they extend it; later the owner revokes it.

Everything goes over real HTTP to `steward serve`, decisions and messages run on a real Celery worker
on real Redis, and the deadlines are swept by `steward sweep` as cron would run it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from bot.ids import Action
from tests.e2e.conftest import (
    APPROVERS,
    REQUESTER,
    Stack,
    approve_all,
    buttons,
    register_high_risk_model,
    wait_for,
)
from tests.factories import OWNER

pytestmark = pytest.mark.e2e


def test_request_approve_warn_extend_and_revoke(access_stack: Stack):
    stack = access_stack
    register_high_risk_model(stack)

    # The requester asks for a week of `use` access; the modal says who will approve it.
    form = stack.open_modal("request churn-model", user=REQUESTER)
    assert "owner, then security, then data owners" in json.dumps(form)
    response = stack.submit(form, {"level": "use", "duration_hours": str(7 * 24),
                                   "justification": "Score the Q3 retention campaign"}, user=REQUESTER)
    assert response.text == ""

    # Each approver (owner, security, the dataset's owner) gets a DM with Approve and Deny, and approves;
    # the requester got a receipt where they asked.
    first = approve_all(stack, request_no=1)
    receipt = wait_for(lambda: stack.fake.calls_to("chat.postEphemeral"), what="the requester's receipt")
    assert any(c.args["user"] == REQUESTER and "for approval" in json.dumps(c.args) for c in receipt)

    # Granted: one grant, for a week; the requester is told, and every approver's message now shows
    # the outcome instead of buttons.
    grant_id, expires_at = wait_for(lambda: stack.sql(
        "SELECT id, expires_at FROM access_grant WHERE status = 'active'"), what="the grant")[0]
    assert timedelta(days=6, hours=23) < expires_at - now(stack) <= timedelta(days=7)
    news = wait_for(lambda: [m for m in stack.dms(REQUESTER) if "was approved" in json.dumps(m)],
                    what="the requester's news")
    assert len(news) == 1
    stack.wait_delivered()
    for approver, message in first.items():
        redrawn = current(stack, approver, message["ts"])
        assert "edited" in redrawn, f"{approver}'s message was never redrawn"
        assert buttons(redrawn) == [] and "Approved by" in json.dumps(redrawn), redrawn
        assert redrawn["text"].startswith("Access request #1 (approved)")

    # Time travel by moving deadlines: the bot, the worker and the sweep read the wall clock, so instead
    # of waiting six days the grant's end is moved to an hour from now.
    stack.sql("UPDATE access_grant SET expires_at = now() + interval '1 hour' WHERE id = :id", id=grant_id)
    assert "enqueued 1 grant expiry warning(s)" in stack.sweep()
    warning = wait_for(lambda: [m for m in stack.dms(REQUESTER) if Action.EXTEND_GRANT in buttons(m)],
                       what="the expiry warning with Extend")[0]
    assert "ends" in json.dumps(warning)

    # Extend files a renewal, which goes to the same approvers.
    stack.click(warning, Action.EXTEND_GRANT, user=REQUESTER)
    answer = wait_for(lambda: [c for c in stack.fake.calls_to("response_url")
                               if c.name == f"click-{Action.EXTEND_GRANT}-{REQUESTER}"], what="Extend's answer")[0]
    assert "Asked for an extension" in json.dumps(answer.args)
    approve_all(stack, request_no=2)

    # The same grant now lasts a week past its old end; no second grant was made.
    def extended():
        rows = stack.sql("SELECT id, status, expires_at, warned_at FROM access_grant")
        return rows if rows[0].expires_at > now(stack) + timedelta(days=7) else None
    rows = wait_for(extended, what="the grant to be extended")
    assert [(r.id, r.status, r.warned_at) for r in rows] == [(grant_id, "active", None)]
    assert timedelta(days=7) < rows[0].expires_at - now(stack) <= timedelta(days=7, hours=1)

    # The owner revokes it from the asset card, with a reason; the grantee is told.
    stack.command("asset churn-model", user=OWNER)
    card = wait_for(lambda: [c.args for c in stack.fake.calls_to("response_url") if c.name == "cmd-asset"],
                    what="the asset card")[-1]
    assert Action.REVOKE_OPEN in buttons(card) and f"<@{REQUESTER}>" in json.dumps(card)
    opened = len(stack.fake.views_opened())
    stack.click(card, Action.REVOKE_OPEN, user=OWNER, ephemeral=True)
    modal = wait_for(lambda: stack.fake.views_opened()[opened:], what="the revoke modal")[0]
    result = stack.slack.save(modal, {"reason": "The campaign is over"}, user=OWNER)
    assert "access has ended" in json.dumps(result)
    assert stack.sql("SELECT status, ended_by, end_reason FROM access_grant")[0] == (
        "revoked", OWNER, "The campaign is over")
    told = wait_for(lambda: [m for m in stack.dms(REQUESTER) if "revoked your" in json.dumps(m)],
                    what="the grantee's notice")
    assert "The campaign is over" in json.dumps(told[0])

    # Nothing was sent twice: one DM per approver per request (redrawn in place), one piece of news per
    # outcome for the requester; and no Slack call failed on the way.
    stack.wait_delivered()
    for approver in APPROVERS:
        assert len(stack.dms(approver)) == 2, stack.dms(approver)
    assert [m["text"] for m in stack.dms(REQUESTER)] == [
        "Access request #1: approved",      # the news
        "Your use access to Churn model",   # the expiry warning, with Extend
        "Access request #2 sent",           # the extension's receipt (Extend was clicked in a DM)
        "Access request #2: approved",
        "Your use access to Churn model",   # revoked
    ]
    assert not [c for c in stack.fake.calls if c.failed], [c for c in stack.fake.calls if c.failed]
    # And every step is in the decision log: two requests (the second the extension), three approvals
    # each, two grants (the second extends the first), and the revocation.
    actions = [row.action for row in stack.sql("SELECT action FROM decision_log ORDER BY seq")]
    counts = {action: actions.count(action) for action in
              ("access.requested", "access.approved_step", "access.granted", "grant.revoked")}
    assert counts == {"access.requested": 2, "access.approved_step": 6, "access.granted": 2,
                      "grant.revoked": 1}, actions


def current(stack: Stack, approver: str, ts: str) -> dict[str, Any]:
    """An approver's DM as it looks now."""
    return next(m for m in stack.dms(approver) if m["ts"] == ts)


def now(stack: Stack):
    """The database's clock (the same wall clock the subprocesses read)."""
    return stack.sql("SELECT now()")[0][0]
