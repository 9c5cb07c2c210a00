"""Living with access: `/steward access` with Release and Cancel, Extend from the expiry warning,
Revoke from the asset card; each refused for anyone the button was not meant for."""

from __future__ import annotations

import json

from bot.views.forms import problems_shown
from tests.bot.access_helpers import (
    block, buttons, classify, file_request, grant_access, grant_row, requests, slack_accepts, text_of,
)
from tests.bot.conftest import CHANNEL, GOVERNANCE, block_action, outbox, rendered, submission
from tests.factories import ADMIN, OTHER, OWNER, make_asset
from workflows.db import transaction
from workflows.deadlines import warn_grant


def _mine(harness, user=OTHER):
    harness.command("access", user=user)
    return harness.replies()[-1]


# ---- /steward access -------------------------------------------------------------------------------


def test_access_lists_my_grants_and_pending_requests_with_ids_on_the_buttons(harness, engine, bot_policy, now):
    held = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    wanted = make_asset(engine, policy=bot_policy, now=now, name="Payments")
    grant = grant_access(engine, held, policy=bot_policy, now=now, level="use", hours=7 * 24)
    request = file_request(engine, wanted, policy=bot_policy, now=now, level="admin", hours=24)
    file_request(engine, wanted, policy=bot_policy, now=now, requester=ADMIN)  # someone else's
    reply = _mine(harness)
    text = text_of(reply)
    assert reply["response_type"] == "ephemeral"
    assert "*Your access* (1)" in text and "`churn-events`" in text and "*use* until" in text
    assert "*Your pending requests* (1)" in text and "`payments`" in text and "*admin* for 1 day" in text
    found = {b["action_id"]: b["value"] for b in buttons(reply)}
    assert found == {"access_release": str(grant.id), "access_cancel": str(request.id)}


def test_access_with_nothing_says_how_to_ask(harness):
    text = text_of(_mine(harness))
    assert "You hold no access through Steward." in text and "/steward request &lt;slug&gt;" in text


def test_release_ends_my_grant_and_redraws_the_list(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    grant = grant_access(engine, asset, policy=bot_policy, now=now)
    harness.interact(block_action("access_release", str(grant.id), user=OTHER,
                                  response_url=harness.fake.response_url("list")))
    reply = harness.replies()[-1]
    assert reply["replace_original"] is True and "*Your access* (0)" in text_of(reply)
    stored = grant_row(engine, grant.id)
    assert (stored.status, stored.ended_by) == ("revoked", OTHER)
    [notice] = outbox(engine, template="grant_revoked")
    assert "You released your *read* access" in text_of(rendered(engine, notice))


def test_cancel_withdraws_my_request_and_redraws_the_approver_message(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    request = file_request(engine, asset, policy=bot_policy, now=now)
    harness.interact(block_action("access_cancel", str(request.id), user=OTHER,
                                  response_url=harness.fake.response_url("list")))
    reply = harness.replies()[-1]
    assert reply["replace_original"] is True and "*Your pending requests* (0)" in text_of(reply)
    assert requests(engine)[0].status == "cancelled"
    [dm] = outbox(engine, template="approval_request")
    redraws = [r for r in outbox(engine) if r.updates_id == dm.id]
    assert redraws and {r.id for r in redraws} <= set(harness.enqueued)
    assert "Cancelled" in text_of(rendered(engine, redraws[-1]))


def test_release_and_cancel_are_refused_for_anyone_else(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    other = make_asset(engine, policy=bot_policy, now=now, name="Payments")
    grant = grant_access(engine, asset, policy=bot_policy, now=now)
    request = file_request(engine, other, policy=bot_policy, now=now)
    harness.interact(block_action("access_release", str(grant.id), user=OWNER,
                                  response_url=harness.fake.response_url("forged")))
    assert "Only the person who holds this access can release it." in harness.last_reply_text()
    harness.interact(block_action("access_cancel", str(request.id), user=ADMIN,
                                  response_url=harness.fake.response_url("forged")))
    assert "Only the person who asked can cancel a request." in harness.last_reply_text()
    assert harness.replies()[-1]["replace_original"] is False
    assert grant_row(engine, grant.id).status == "active"
    assert [r.status for r in requests(engine)][-1] == "pending"


def test_a_second_release_is_answered_and_changes_nothing(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    grant = grant_access(engine, asset, policy=bot_policy, now=now)
    for _ in range(2):
        harness.interact(block_action("access_release", str(grant.id), user=OTHER,
                                      response_url=harness.fake.response_url("list")))
    reply = harness.replies()[-1]
    # The domain's wording ("An revoked grant cannot become revoked.") is its own; the point is the refusal.
    assert reply["replace_original"] is False and "revoked" in reply["text"]
    assert len(outbox(engine, template="grant_revoked")) == 1


# ---- Extend ----------------------------------------------------------------------------------------


def test_the_expiry_warning_has_extend_which_files_a_renewal(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    grant = grant_access(engine, asset, policy=bot_policy, now=now, hours=24)
    with transaction(engine) as session:
        assert warn_grant(session=session, grant_id=grant.id, now=now, policy=bot_policy)
    [warning] = outbox(engine, template="grant_expiring")
    content = rendered(engine, warning)
    assert "Your *read* access to" in text_of(content) and "ends" in text_of(content)
    [extend] = buttons(content)
    assert (extend["action_id"], extend["value"]) == ("access_extend", str(grant.id))

    # Someone else pressing it (a forged value) is refused.
    harness.interact(block_action("access_extend", str(grant.id), user=ADMIN,
                                  response_url=harness.fake.response_url("dm")))
    assert "Only the person who holds this access can extend it." in harness.last_reply_text()

    harness.interact(block_action("access_extend", str(grant.id), user=OTHER,
                                  response_url=harness.fake.response_url("dm")))
    renewal = requests(engine)[-1]
    assert (renewal.renews_grant_id, renewal.requester_id, renewal.status) == (grant.id, OTHER, "pending")
    assert f"request #{renewal.id}" in harness.last_reply_text()
    [dm] = [r for r in outbox(engine, template="approval_request") if r.payload["request_id"] == renewal.id]
    assert f"Extends grant #{grant.id}" in text_of(rendered(engine, dm))

    # The owner approves through the queue; the same grant lasts longer.
    harness.interact(block_action("access_approve", str(renewal.id), user=OWNER))
    assert harness.run_decisions() == ["decided"]
    assert grant_row(engine, grant.id).expires_at > grant.expires_at

    # A second Extend while the first renewal is pending would be a duplicate.
    harness.interact(block_action("access_extend", str(grant.id), user=OTHER,
                                  response_url=harness.fake.response_url("dm")))
    harness.interact(block_action("access_extend", str(grant.id), user=OTHER,
                                  response_url=harness.fake.response_url("dm")))
    assert "already have a pending read request" in harness.last_reply_text()


def test_the_expiry_warning_loses_its_button_once_access_has_ended(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    grant = grant_access(engine, asset, policy=bot_policy, now=now, hours=24)
    with transaction(engine) as session:
        warn_grant(session=session, grant_id=grant.id, now=now, policy=bot_policy)
    harness.interact(block_action("access_release", str(grant.id), user=OTHER,
                                  response_url=harness.fake.response_url("list")))
    [warning] = outbox(engine, template="grant_expiring")
    assert buttons(rendered(engine, warning)) == []


# ---- Revoke ----------------------------------------------------------------------------------------


def _revoke_button(harness, user):
    harness.command("asset churn-events", user=user)
    return [b for b in buttons(harness.replies()[-1]) if b["action_id"] == "access_revoke_open"]


def test_the_owner_sees_who_has_access_and_revokes_with_a_reason(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    grant = grant_access(engine, asset, policy=bot_policy, now=now, level="use")
    assert _revoke_button(harness, OTHER) == []
    assert "Who has access" not in harness.last_reply_text()
    [revoke] = _revoke_button(harness, OWNER)
    assert revoke["value"] == str(grant.id)
    assert f"<@{OTHER}> · *use* until" in harness.last_reply_text()

    harness.interact(block_action("access_revoke_open", revoke["value"], user=OWNER,
                                  response_url=harness.fake.response_url("card")))
    view = harness.opened_view()
    assert view["callback_id"] == "access_revoke"
    assert json.loads(view["private_metadata"]) == {"grant_id": grant.id, "channel": CHANNEL}
    body = json.loads(harness.interact(submission(view, {"reason": " "}, user=OWNER)).body)
    assert body["errors"] == {"reason": "Say why you revoke it."}
    assert grant_row(engine, grant.id).status == "active"

    shown = harness.submit(view, {"reason": "Moved team <!channel>"}, user=OWNER)
    assert "access has ended" in text_of(shown)
    stored = grant_row(engine, grant.id)
    assert (stored.status, stored.ended_by, stored.end_reason) == ("revoked", OWNER, "Moved team <!channel>")
    [notice] = outbox(engine, template="grant_revoked")
    told = text_of(rendered(engine, notice))
    assert notice.user == OTHER and "<@U0OWNER1> revoked your *use* access" in told
    assert "Moved team &lt;!channel&gt;" in told and "<!channel>" not in told
    assert notice.id in harness.enqueued


def test_an_admin_can_revoke_too(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    grant = grant_access(engine, asset, policy=bot_policy, now=now)
    [revoke] = _revoke_button(harness, ADMIN)
    harness.interact(block_action("access_revoke_open", revoke["value"], user=ADMIN,
                                  response_url=harness.fake.response_url("card")))
    harness.interact(submission(harness.opened_view(), {"reason": "Audit finding"}, user=ADMIN))
    assert grant_row(engine, grant.id).ended_by == ADMIN


def test_revoke_is_refused_for_anyone_else_on_click_and_on_submit(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    grant = grant_access(engine, asset, policy=bot_policy, now=now)
    harness.interact(block_action("access_revoke_open", str(grant.id), user=GOVERNANCE,
                                  response_url=harness.fake.response_url("forged")))
    assert "Only the owner of churn-events or a Steward admin can revoke access." in harness.last_reply_text()
    assert not harness.fake.calls_to("views.open")
    # A modal the owner opened, submitted by someone else, is refused on the server.
    harness.interact(block_action("access_revoke_open", str(grant.id), user=OWNER,
                                  response_url=harness.fake.response_url("card")))
    shown = harness.submit(harness.opened_view(), {"reason": "Mine now"}, user=OTHER)
    assert "Only the owner of churn-events" in problems_shown(shown)["reason"]
    assert grant_row(engine, grant.id).status == "active"
    harness.interact(block_action("access_revoke_open", "12345", user=OWNER,
                                  response_url=harness.fake.response_url("forged")))
    assert "No grant has id 12345." in harness.last_reply_text()


def test_revoking_ended_access_is_answered(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    grant = grant_access(engine, asset, policy=bot_policy, now=now)
    harness.interact(block_action("access_revoke_open", str(grant.id), user=OWNER,
                                  response_url=harness.fake.response_url("card")))
    view = harness.opened_view()
    harness.interact(block_action("access_release", str(grant.id), user=OTHER,
                                  response_url=harness.fake.response_url("list")))
    shown = harness.submit(view, {"reason": "Too late"}, user=OWNER)
    assert "revoked" in problems_shown(shown)["reason"]
    harness.interact(block_action("access_revoke_open", str(grant.id), user=OWNER,
                                  response_url=harness.fake.response_url("card")))
    assert "already been revoked" in harness.last_reply_text()


# ---- Block Kit limits ------------------------------------------------------------------------------


def test_long_lists_stay_within_block_kit_limits(harness, engine, bot_policy, now):
    assets = [make_asset(engine, policy=bot_policy, now=now, name=f"Table {n:02d}") for n in range(26)]
    for asset in assets[:25]:
        grant_access(engine, asset, policy=bot_policy, now=now)
    for asset in assets:
        file_request(engine, asset, policy=bot_policy, now=now, level="admin", justification="<&>" * 333)
    reply = _mine(harness)
    assert len(reply["blocks"]) <= 50 and "…and 5 more." in text_of(reply)
    assert slack_accepts(harness.fake, {"text": reply["text"], "blocks": reply["blocks"]})
    # Someone holding access to many assets' worth of approvals still gets a valid App Home.
    harness.event({"type": "app_home_opened", "user": OWNER, "tab": "home", "channel": "D1"})
    publish = harness.fake.last("views.publish")
    assert not publish.failed and "*Pending approvals* (26)" in text_of(publish.args["view"])
    # An asset with many grants keeps its card within the limits.
    for user in [f"U0USER{n:03d}" for n in range(15)]:
        grant_access(engine, assets[0], policy=bot_policy, now=now, grantee=user)
    harness.command("asset table-00", user=OWNER)
    card = harness.replies()[-1]
    assert len(card["blocks"]) <= 50
    assert slack_accepts(harness.fake, {"text": "card", "blocks": card["blocks"]})


def test_a_busy_request_dm_stays_within_block_kit_limits(harness, engine, bot_policy, now):
    """A high-risk model built from 30 sensitive datasets, each with its own owner, and a justification
    that grows fivefold when escaped."""
    datasets = [make_asset(engine, policy=bot_policy, now=now, kind="dataset", name=f"Source {n:02d}",
                           owner_id=f"U0DATA{n:03d}", sensitivity="restricted") for n in range(30)]
    model = make_asset(engine, policy=bot_policy, now=now, kind="model", name="Hiring ranker",
                       lineage={"trained_on": [d.id for d in datasets]})
    system = make_asset(engine, policy=bot_policy, now=now, kind="system", name="Hiring",
                        lineage={"uses": [model.id]})
    classify(engine, system, "high", policy=bot_policy, now=now)
    harness.command("request hiring-ranker", user=OTHER)
    view = harness.opened_view()
    assert [o["value"] for o in block(view, "duration_hours")["element"]["options"]] == ["24", "168", "720"]
    body = harness.interact(submission(view, {"level": "read", "duration_hours": "24",
                                              "justification": "&" * 1000}, user=OTHER)).body
    assert body == ""
    dms = outbox(engine, template="approval_request")
    assert len(dms) == 32  # the owner, governance (for the empty security group), and 30 data owners
    content = rendered(engine, dms[0])
    text = text_of(content)
    assert "…and 22 more." in text and "and 25 more" in text
    assert "went to governance" in text
    assert slack_accepts(harness.fake, content)
    [filed] = outbox(engine, template="request_filed")
    assert slack_accepts(harness.fake, rendered(engine, filed))
