"""Asking for access through Slack: the command and the card button, the modal's field errors, the
approver DMs, and the whole story of a two-step approval decided through the (synchronous) queue."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from slack_sdk import WebClient
from sqlmodel import select

from bot.app import create_app
from bot.context import BotContext, members_from
from bot.forms import metadata
from bot.views.access import request_modal
from bot.views.messages import render_outbox
from tests.bot.access_helpers import (
    block, buttons, classify, file_request, limited_model, members, requests, slack_accepts, text_of,
)
from tests.bot.conftest import (
    CHANNEL, GOVERNANCE, SECRET, TOKEN, Harness, QueuedDecision, block_action, outbox, rendered, submission,
)
from tests.factories import ADMIN, OTHER, OWNER, make_asset, retire
from workers.directory import Directory
from workflows import access
from workflows.db import make_engine, transaction
from workflows.deadlines import escalate, expire_request, remind
from workflows.inventory import Actor
from workflows.models import AccessRequest, ApprovalStep, Decision, Grant
from workflows.settings import Settings

JUSTIFICATION = "Investigating a fraud spike <!channel> & <@U0ADMIN1>"


def _open_request(harness, slug="fraud-scorer", user=OTHER):
    harness.command(f"request {slug}", user=user)
    return harness.opened_view()


def _submit(harness, view, *, user=OTHER, **values):
    fields = {"level": "use", "duration_hours": "168", "justification": JUSTIFICATION}
    fields.update(values)
    response = harness.interact(submission(view, fields, user=user))
    return json.loads(response.body) if response.body else {}


def _access_rows(engine):
    return [r for r in outbox(engine) if r.topic.startswith(("request:", "outcome:", "grant:"))]


# ---- asking ----------------------------------------------------------------------------------------


def test_the_command_opens_a_modal_with_levels_and_the_tiers_durations(harness, engine, bot_policy, now):
    model = limited_model(engine, policy=bot_policy, now=now)
    view = _open_request(harness)
    assert view["callback_id"] == "access_request"
    assert json.loads(view["private_metadata"]) == {"asset_id": model.id, "channel": CHANNEL}
    levels = block(view, "level")["element"]["options"]
    assert [o["value"] for o in levels] == ["read", "use", "admin"]
    durations = block(view, "duration_hours")["element"]["options"]
    # The limited tier allows at most 90 days.
    assert [(o["text"]["text"], o["value"]) for o in durations] == [
        ("1 day", "24"), ("7 days", "168"), ("30 days", "720"), ("90 days", "2160")]
    justification = block(view, "justification")
    assert justification["element"]["max_length"] == 1000 and justification["element"]["multiline"] is True
    assert not justification.get("optional")
    assert "owner, then governance" in text_of(view["blocks"][0])


def test_submitting_files_the_request_and_dms_every_approver(harness, engine, bot_policy, now):
    model = limited_model(engine, policy=bot_policy, now=now)
    assert _submit(harness, _open_request(harness)) == {}
    [request] = requests(engine)
    assert (request.asset_id, request.requester_id, request.level, request.duration_hours, request.status) == (
        model.id, OTHER, "use", 168, "pending")
    with transaction(engine) as session:
        steps = session.exec(select(ApprovalStep).where(ApprovalStep.request_id == request.id)
                             .order_by(ApprovalStep.position)).all()
    assert [(s.group, s.approvers) for s in steps] == [("owner", [OWNER]), ("governance", [GOVERNANCE])]
    dms = outbox(engine, template="approval_request")
    assert sorted(r.user for r in dms) == sorted([OWNER, GOVERNANCE])
    [filed] = outbox(engine, template="request_filed")
    assert (filed.method, filed.channel, filed.user) == ("ephemeral", CHANNEL, OTHER)
    assert {r.id for r in dms} | {filed.id} <= set(harness.enqueued)
    receipt = text_of(rendered(engine, filed))
    assert f"<@{OWNER}>" in receipt and f"<@{GOVERNANCE}>" in receipt


def test_the_approver_dm_shows_who_what_why_risk_lineage_and_buttons(harness, engine, bot_policy, now):
    limited_model(engine, policy=bot_policy, now=now)
    _submit(harness, _open_request(harness))
    [request] = requests(engine)
    dm = next(r for r in outbox(engine, template="approval_request") if r.user == OWNER)
    content = rendered(engine, dm)
    text = text_of(content)
    assert f"<@{OTHER}> asks for *use* access to" in text and "`fraud-scorer`" in text and "Model" in text
    assert "*7 days*" in text
    assert ":large_orange_circle: Limited" in text
    assert "`loan-history` (restricted · personal data), owner <@U0ADMIN1>" in text
    assert "1. *Owner*: :hourglass_flowing_sand: waiting for <@U0OWNER1>" in text
    assert "2. *Governance*: :hourglass_flowing_sand: waiting for <@U0GOVERN1>" in text
    # The justification is shown, escaped: it pings no one.
    assert "<!channel>" not in text and "<@U0ADMIN1>" not in text.replace("owner <@U0ADMIN1>", "")
    assert "&lt;!channel&gt; &amp; &lt;@U0ADMIN1&gt;" in text
    found = {b["action_id"]: b for b in buttons(content)}
    assert found["access_approve"]["value"] == str(request.id) and found["access_approve"]["style"] == "primary"
    assert found["access_deny_open"]["value"] == str(request.id) and found["access_deny_open"]["style"] == "danger"
    assert "<!channel>" not in content["text"]
    assert slack_accepts(harness.fake, content)


def test_the_card_offers_request_access_to_others_and_the_button_opens_the_modal(harness, engine, bot_policy,
                                                                                  now):
    model = limited_model(engine, policy=bot_policy, now=now)
    harness.command("asset fraud-scorer", user=OWNER)
    assert "access_request_open" not in harness.last_reply_text()
    harness.command("asset fraud-scorer", user=OTHER)
    [button] = [b for b in buttons(harness.replies()[-1]) if b["action_id"] == "access_request_open"]
    assert button["value"] == str(model.id)
    harness.interact(block_action("access_request_open", button["value"], user=OTHER,
                                  response_url=harness.fake.response_url("card")))
    view = harness.opened_view()
    assert view["callback_id"] == "access_request"
    assert json.loads(view["private_metadata"]) == {"asset_id": model.id, "channel": CHANNEL}
    assert _submit(harness, view, level="read") == {}
    assert [(r.level, r.requester_id) for r in requests(engine)] == [("read", OTHER)]


def test_request_access_from_an_app_home_card_is_pushed_onto_the_modal(harness, engine, bot_policy, now):
    model = limited_model(engine, policy=bot_policy, now=now)
    harness.interact(block_action("asset_show", str(model.id), user=OTHER))
    card = harness.fake.last("views.open").args["view"]
    harness.interact(block_action("access_request_open", str(model.id), user=OTHER, view=card))
    assert harness.fake.last("views.push").args["view"]["callback_id"] == "access_request"


def test_no_request_button_for_retired_or_prohibited_assets(harness, engine, bot_policy, now):
    old = make_asset(engine, policy=bot_policy, now=now, name="Old data")
    retire(engine, old, policy=bot_policy, now=now)
    banned = make_asset(engine, policy=bot_policy, now=now, kind="system", name="Social score")
    classify(engine, banned, "prohibited", policy=bot_policy, now=now)
    for slug in ("old-data", "social-score"):
        harness.command(f"asset {slug}", user=OTHER)
        assert "access_request_open" not in harness.last_reply_text()


# ---- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("justification, message", [
    ("   ", "This field is required."),
    ("x" * 1001, "Keep this to 1000 characters or fewer."),
])
def test_a_bad_justification_is_a_field_error_and_nothing_is_written(harness, engine, bot_policy, now,
                                                                     justification, message):
    limited_model(engine, policy=bot_policy, now=now)
    before = len(outbox(engine))
    body = _submit(harness, _open_request(harness), justification=justification)
    assert body == {"response_action": "errors", "errors": {"justification": message}}
    assert requests(engine) == [] and len(outbox(engine)) == before


def test_a_second_pending_request_for_the_same_level_is_an_error_on_the_level(harness, engine, bot_policy, now):
    limited_model(engine, policy=bot_policy, now=now)
    _submit(harness, _open_request(harness))
    body = _submit(harness, _open_request(harness))
    assert body["response_action"] == "errors"
    assert "already have a pending use request for fraud-scorer" in body["errors"]["level"]
    assert len(requests(engine)) == 1
    # Another level is a different request.
    assert _submit(harness, _open_request(harness), level="read") == {}
    assert len(requests(engine)) == 2


def test_a_forged_duration_over_the_tiers_maximum_is_an_error_on_the_duration(harness, engine, bot_policy, now):
    limited_model(engine, policy=bot_policy, now=now)
    body = _submit(harness, _open_request(harness), duration_hours=str(365 * 24))
    assert body["errors"] == {"duration_hours": "At most 90 days for this asset."}
    body = _submit(harness, _open_request(harness), duration_hours="forever")
    assert "duration_hours" in body["errors"]
    assert requests(engine) == []


def test_a_prohibited_system_is_refused_with_nothing_written(harness, engine, bot_policy, now):
    banned = make_asset(engine, policy=bot_policy, now=now, kind="system", name="Social score")
    form = request_modal(asset=banned, durations_days=[1], approval_steps=["owner"],
                         metadata=metadata(asset_id=banned.id, channel=CHANNEL))
    classify(engine, banned, "prohibited", policy=bot_policy, now=now)
    before = len(outbox(engine))
    harness.command("request social-score", user=OTHER)
    assert "prohibited AI system; access is refused" in harness.last_reply_text()
    assert not harness.fake.calls_to("views.open")
    # A modal opened before the system was classified is refused on submit, too.
    body = _submit(harness, form, duration_hours="24")
    assert "prohibited AI system; access is refused" in body["errors"]["level"]
    assert requests(engine) == [] and len(outbox(engine)) == before


def test_unknown_and_retired_assets_and_a_missing_slug_get_clear_answers(harness, engine, bot_policy, now):
    old = make_asset(engine, policy=bot_policy, now=now, name="Old data")
    retire(engine, old, policy=bot_policy, now=now)
    harness.command("request old-dta", user=OTHER)
    assert "No asset is called `old-dta`" in harness.last_reply_text() and "`old-data`" in harness.last_reply_text()
    harness.command("request old-data", user=OTHER)
    assert "old-data is retired; nobody can be granted access to it." in harness.last_reply_text()
    harness.command("request", user=OTHER)
    assert "Which asset?" in harness.last_reply_text()
    assert not harness.fake.calls_to("views.open")


def test_a_failure_after_the_ack_is_told_to_the_requester(harness, engine, bot_policy, now):
    """No one left to approve (the owner asks, governance is empty): the modal has closed, so Steward says so."""
    harness.ctx.members_of = lambda group: frozenset()
    limited_model(engine, policy=bot_policy, now=now)
    assert _submit(harness, _open_request(harness, user=OWNER), user=OWNER) == {}
    told = harness.fake.last("chat.postEphemeral").args
    assert told["channel"] == CHANNEL and told["user"] == OWNER
    assert "not filed: No one is left who may approve this request" in told["text"]
    assert requests(engine) == []


def test_help_lists_request_and_access(harness):
    harness.command("help")
    text = harness.last_reply_text()
    assert "/steward request &lt;slug&gt;" in text and "/steward access" in text


# ---- deciding --------------------------------------------------------------------------------------


def test_the_whole_story_two_steps_then_a_grant_and_every_message_redrawn(harness, engine, bot_policy, now):
    model = limited_model(engine, policy=bot_policy, now=now)
    _submit(harness, _open_request(harness))
    [request] = requests(engine)
    approver_dms = outbox(engine, template="approval_request")

    # The owner clicks Approve in their DM: the click is queued with ids only.
    response = harness.interact(block_action("access_approve", str(request.id), user=OWNER,
                                             response_url=harness.fake.response_url("dm-owner")))
    assert response.status == 200
    assert harness.decisions == [QueuedDecision(request.id, OWNER, "approve", "", CHANNEL)]
    assert harness.replies() == []
    assert harness.run_decisions() == ["decided"]

    owner_dm = next(r for r in approver_dms if r.user == OWNER)
    governance_dm = next(r for r in approver_dms if r.user == GOVERNANCE)
    after_one = rendered(engine, owner_dm)
    assert buttons(after_one) == []
    assert "You approved step 1" in text_of(after_one)
    still_open = rendered(engine, governance_dm)
    assert {b["action_id"] for b in buttons(still_open)} >= {"access_approve", "access_deny_open"}
    assert "1. *Owner*: :white_check_mark: approved by <@U0OWNER1>" in text_of(still_open)

    # Governance approves the second step: access is granted.
    harness.interact(block_action("access_approve", str(request.id), user=GOVERNANCE,
                                  response_url=harness.fake.response_url("dm-gov")))
    assert harness.run_decisions() == ["decided"]
    with transaction(engine) as session:
        grant = session.exec(select(Grant).where(Grant.request_id == request.id)).one()
        stored = session.get(AccessRequest, request.id)
    assert (grant.grantee_id, grant.asset_id, grant.level, grant.status) == (OTHER, model.id, "use", "active")
    assert stored.status == "approved"

    # The requester is told, with who approved.
    [news] = outbox(engine, template="request_approved")
    assert news.user == OTHER
    told = text_of(rendered(engine, news))
    assert "was approved by <@U0OWNER1>, <@U0GOVERN1>" in told and "It lasts until" in told

    # Every approver message is redrawn from current state: the outcome, no buttons.
    updates = [r for r in outbox(engine) if r.method == "update"]
    assert {r.updates_id for r in updates} >= {r.id for r in approver_dms}
    for row in approver_dms + updates:
        content = rendered(engine, row)
        assert "Approved by <@U0GOVERN1>" in text_of(content)
        assert buttons(content) == []
        assert slack_accepts(harness.fake, content)


def test_the_requester_cannot_approve_their_own_request(harness, engine, bot_policy, now):
    limited_model(engine, policy=bot_policy, now=now)
    _submit(harness, _open_request(harness))
    [request] = requests(engine)
    harness.interact(block_action("access_approve", str(request.id), user=OTHER,
                                  response_url=harness.fake.response_url("dm")))
    assert harness.run_decisions() == ["refused"]
    [refusal] = outbox(engine, template="decision_refused")
    assert (refusal.method, refusal.user, refusal.channel) == ("ephemeral", OTHER, CHANNEL)
    assert "You cannot approve your own request." in text_of(rendered(engine, refusal))
    with transaction(engine) as session:
        assert session.get(AccessRequest, request.id).status == "pending"
        assert session.exec(select(Decision)).all() == []


def test_a_forged_request_id_and_a_non_approver_are_refused(harness, engine, bot_policy, now):
    limited_model(engine, policy=bot_policy, now=now)
    _submit(harness, _open_request(harness))
    [request] = requests(engine)
    harness.interact(block_action("access_approve", str(request.id), user=ADMIN))
    harness.interact(block_action("access_approve", "424242", user=OWNER))
    assert harness.run_decisions() == ["refused", "refused"]
    texts = [text_of(rendered(engine, r)) for r in outbox(engine, template="decision_refused")]
    assert "You are not an approver of this request." in texts[0]
    assert "No access request has id 424242." in texts[1]
    harness.interact(block_action("access_approve", "not-an-id", user=OWNER,
                                  response_url=harness.fake.response_url("dm")))
    assert "no longer points at a request" in harness.last_reply_text()
    assert harness.decisions == []


def test_a_double_click_and_a_late_click_say_who_decided(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")  # one step: the owner
    request = file_request(engine, asset, policy=bot_policy, now=now)
    for _ in range(2):
        harness.interact(block_action("access_approve", str(request.id), user=OWNER))
    assert harness.run_decisions() == ["decided", "refused"]
    [refusal] = outbox(engine, template="decision_refused")
    assert "Already decided by <@U0OWNER1>." in text_of(rendered(engine, refusal))
    with transaction(engine) as session:
        assert len(session.exec(select(Grant)).all()) == 1
        assert len(session.exec(select(Decision)).all()) == 1


def test_approve_acks_without_touching_the_database(fake, bot_policy, now):
    settings = Settings(slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_api_url=fake.url)
    client = WebClient(token=TOKEN, base_url=fake.url)
    directory = Directory(client)
    ctx = BotContext(settings=settings, engine=make_engine("postgresql://postgres@127.0.0.1:1/nowhere"),
                     policy=bot_policy, directory=directory, enqueue_delivery=lambda ids: None,
                     clock=lambda: now, members_of=members_from(directory, bot_policy))
    down = Harness(app=None, fake=fake, ctx=ctx)
    ctx.enqueue_decision = down.enqueue_decision
    down.app = create_app(ctx, client=client)
    response = down.interact(block_action("access_approve", "7", user=OWNER,
                                          response_url=fake.response_url("dm")))
    assert response.status == 200
    assert down.decisions == [QueuedDecision(7, OWNER, "approve", "", CHANNEL)]
    assert down.replies() == []  # no "database cannot be reached": it was never asked


def test_when_the_queue_is_down_the_approver_is_told_to_try_again(harness, engine, bot_policy, now):
    harness.queue_accepts = False
    harness.interact(block_action("access_approve", "1", user=OWNER, response_url=harness.fake.response_url("dm")))
    reply = harness.replies()[-1]
    assert reply["response_type"] == "ephemeral" and reply["replace_original"] is False
    assert "Steward is busy, try again" in reply["text"]


def test_deny_opens_a_reason_modal_and_its_submission_queues_the_denial(harness, engine, bot_policy, now):
    limited_model(engine, policy=bot_policy, now=now)
    _submit(harness, _open_request(harness))
    [request] = requests(engine)
    harness.interact(block_action("access_deny_open", str(request.id), user=GOVERNANCE,
                                  response_url=harness.fake.response_url("dm")))
    view = harness.opened_view()
    assert view["callback_id"] == "access_deny"
    assert json.loads(view["private_metadata"]) == {"request_id": request.id, "channel": CHANNEL}
    reason = block(view, "reason")
    assert reason["element"]["max_length"] == 1000 and not reason.get("optional")

    body = json.loads(harness.interact(submission(view, {"reason": "  "}, user=GOVERNANCE)).body)
    assert body["errors"] == {"reason": "Say why you deny it."}
    body = json.loads(harness.interact(submission(view, {"reason": "y" * 1001}, user=GOVERNANCE)).body)
    assert body["errors"] == {"reason": "Keep this to 1000 characters or fewer."}
    assert harness.decisions == []

    response = harness.interact(submission(view, {"reason": "Read is enough <!here>"}, user=GOVERNANCE))
    assert response.body == ""
    assert harness.decisions == [QueuedDecision(request.id, GOVERNANCE, "deny", "Read is enough <!here>", CHANNEL)]
    assert harness.run_decisions() == ["decided"]

    with transaction(engine) as session:
        assert session.get(AccessRequest, request.id).status == "denied"
    [news] = outbox(engine, template="request_denied")
    told = text_of(rendered(engine, news))
    assert "<@U0GOVERN1> denied your request" in told and "Read is enough &lt;!here&gt;" in told
    for row in outbox(engine, template="approval_request"):
        content = rendered(engine, row)
        assert "Denied by <@U0GOVERN1>: Read is enough &lt;!here&gt;" in text_of(content)
        assert "<!here>" not in text_of(content) and buttons(content) == []


def test_a_deny_submitted_while_the_queue_is_down_is_answered(harness, engine, bot_policy, now):
    harness.interact(block_action("access_deny_open", "5", user=OWNER, response_url=harness.fake.response_url("dm")))
    view = harness.opened_view()
    harness.queue_accepts = False
    assert harness.interact(submission(view, {"reason": "No"}, user=OWNER)).body == ""
    told = harness.fake.last("chat.postEphemeral").args
    assert told["user"] == OWNER and "Steward is busy" in told["text"]


def test_approver_messages_show_cancelled_and_expired_outcomes(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    request = file_request(engine, asset, policy=bot_policy, now=now)
    with transaction(engine) as session:
        access.cancel_request(session=session, request_id=request.id, actor=Actor(OTHER), now=now)
    [dm] = outbox(engine, template="approval_request")
    assert "Cancelled" in text_of(rendered(engine, dm)) and buttons(rendered(engine, dm)) == []
    second = file_request(engine, asset, policy=bot_policy, now=now)
    with transaction(engine) as session:
        assert expire_request(session=session, request_id=second.id, now=second.expires_at)
    dm = outbox(engine, template="approval_request")[-1]
    assert "Expired" in text_of(rendered(engine, dm)) and buttons(rendered(engine, dm)) == []
    [news] = outbox(engine, template="request_expired")
    assert "in time, so it expired" in text_of(rendered(engine, news))


def test_app_home_lists_pending_approvals_with_approve_and_deny(harness, engine, bot_policy, now):
    limited_model(engine, policy=bot_policy, now=now)
    _submit(harness, _open_request(harness))
    [request] = requests(engine)
    harness.event({"type": "app_home_opened", "user": OWNER, "tab": "home", "channel": "D1"})
    view = harness.fake.last("views.publish").args["view"]
    text = text_of(view)
    assert "*Pending approvals* (1)" in text and "<@U0OTHER1> asks for *use* access" in text
    assert "`fraud-scorer`" in text
    found = {b["action_id"]: b["value"] for b in buttons(view)}
    assert found["access_approve"] == found["access_deny_open"] == str(request.id)
    # Approve from App Home: no conversation, so any refusal comes as a DM.
    harness.interact(block_action("access_approve", str(request.id), user=OWNER,
                                  view={"type": "home", "blocks": []}))
    assert harness.decisions == [QueuedDecision(request.id, OWNER, "approve", "", "")]
    harness.run_decisions()
    harness.event({"type": "app_home_opened", "user": OWNER, "tab": "home", "channel": "D1"})
    assert "*Pending approvals* (0)" in text_of(harness.fake.last("views.publish").args["view"])
    harness.event({"type": "app_home_opened", "user": OTHER, "tab": "home", "channel": "D1"})
    assert "*Pending approvals* (0)" in text_of(harness.fake.last("views.publish").args["view"])


def test_outbox_rows_of_every_access_template_render(harness, engine, bot_policy, now):
    """Everything the access workflow writes to the outbox renders, and Slack would accept it."""
    limited_model(engine, policy=bot_policy, now=now)
    _submit(harness, _open_request(harness))
    [request] = requests(engine)
    harness.interact(block_action("access_approve", str(request.id), user=OWNER))
    harness.interact(block_action("access_approve", str(request.id), user=GOVERNANCE))
    harness.interact(block_action("access_approve", str(request.id), user=GOVERNANCE))
    harness.run_decisions()
    rows = _access_rows(engine) + outbox(engine, template="decision_refused")
    assert {r.payload["template"] for r in rows} >= {"approval_request", "request_filed", "redraw",
                                                    "request_approved", "decision_refused"}
    for row in rows:
        assert slack_accepts(harness.fake, rendered(engine, row))


def test_a_redraw_row_is_never_rendered_by_itself(harness, engine, bot_policy, now):
    with transaction(engine) as session, pytest.raises(ValueError, match="redraw"):
        render_outbox(session, {"template": "redraw"})


def test_a_row_about_a_deleted_request_renders_a_short_note(engine):
    with transaction(engine) as session:
        content = render_outbox(session, {"template": "approval_request", "request_id": 999, "approver": OWNER})
    assert "no longer exists" in content["text"]


def test_reminders_and_escalations_render_for_approvers_and_requester(harness, engine, bot_policy, now):
    limited_model(engine, policy=bot_policy, now=now)
    _submit(harness, _open_request(harness))
    [request] = requests(engine)
    with transaction(engine) as session:
        assert remind(session=session, request_id=request.id, now=now + timedelta(hours=4), policy=bot_policy)
        assert escalate(session=session, request_id=request.id, now=now + timedelta(hours=48), policy=bot_policy,
                        members_of=members(bot_policy))
    reminders = outbox(engine, template="approval_reminder")
    assert sorted(r.user for r in reminders) == sorted([OWNER, GOVERNANCE])
    content = rendered(engine, reminders[0])
    assert ":alarm_clock: *Reminder:*" in text_of(content) and buttons(content)
    [escalated] = outbox(engine, template="request_escalated")
    told = text_of(rendered(engine, escalated))
    assert escalated.user == OTHER and "had no decision in time" in told and "<@U0GOVERN1>" in told
    dm = next(r for r in outbox(engine, template="approval_request") if r.user == OWNER)
    assert "Escalated: no decision in time." in text_of(rendered(engine, dm))
