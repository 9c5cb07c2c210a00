"""Break-glass through Slack: the Emergency checkbox (and `--emergency`), access granted at once for the
policy's hours, the alert to the security channel, and the owner's review (Looks right or Revoke) redrawn
in place; never for prohibited systems, never without a justification."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml
from sqlmodel import select

from bot.forms import metadata
from bot.views.access import request_modal
from bot.views.emergency import EmergencyFacts, emergency_filed
from tests.bot.access_helpers import (
    block, buttons, classify, file_request, limited_model, requests, slack_accepts, text_of,
)
from tests.bot.conftest import CHANNEL, GOVERNANCE, block_action, outbox, rendered, submission
from tests.factories import ADMIN, OTHER, OWNER, make_asset
from workflows.db import transaction
from workflows.enums import AccessLevel
from workflows.models import AccessRequest, Decision, Grant
from workflows.policy import Policy, default_policy_text, parse_policy

SECURITY = "C0SECURITY"
JUSTIFICATION = "Prod incident INC-42 <!channel> & <@U0ADMIN1>"


@pytest.fixture
def bot_policy() -> Policy:
    """The bot tests' policy, with a security channel to alert (overrides conftest's)."""
    data = yaml.safe_load(default_policy_text())
    data["groups"]["admins"] = [ADMIN]
    data["groups"]["governance"] = [GOVERNANCE]
    data["channels"]["security"] = SECURITY
    return parse_policy(yaml.safe_dump(data))


def _open(harness, text="request fraud-scorer --emergency", user=OTHER):
    harness.command(text, user=user)
    return harness.opened_view()


def _submit(harness, view, *, user=OTHER, **values):
    fields = {"level": "use", "duration_hours": "168", "justification": JUSTIFICATION, "emergency": ["emergency"]}
    fields.update(values)
    response = harness.interact(submission(view, fields, user=user))
    return json.loads(response.body) if response.body else {}


def _glass(harness, engine, bot_policy, now):
    """Break glass on the fraud scorer as OTHER; returns the request and its grant."""
    limited_model(engine, policy=bot_policy, now=now)
    assert _submit(harness, _open(harness)) == {}
    [request] = requests(engine)
    with transaction(engine) as session:
        grant = session.exec(select(Grant).where(Grant.request_id == request.id)).one()
    return request, grant


def _grants(engine):
    with transaction(engine) as session:
        return list(session.exec(select(Grant)).all())


def _decisions(engine):
    with transaction(engine) as session:
        return list(session.exec(select(Decision)).all())


def _ticked(view) -> bool:
    return bool(block(view, "emergency")["element"].get("initial_options"))


# ---- the form --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, ticked", [
    ("request fraud-scorer", False),
    ("request fraud-scorer --emergency", True),
    ("request fraud-scorer emergency", True),
])
def test_the_modal_has_an_emergency_checkbox_ticked_by_the_flag(harness, engine, bot_policy, now, text, ticked):
    limited_model(engine, policy=bot_policy, now=now)
    view = _open(harness, text)
    checkbox = block(view, "emergency")
    assert checkbox["optional"] is True and checkbox["element"]["type"] == "checkboxes"
    assert [o["value"] for o in checkbox["element"]["options"]] == ["emergency"]
    assert "Emergency (break-glass)" in text_of(checkbox["element"]["options"])
    hint = checkbox["hint"]["text"]
    assert "at most 4 hours" in hint and "alerts security" in hint and "owner to review" in hint
    assert _ticked(view) is ticked
    assert not harness.fake.last("views.open").failed


def test_no_emergency_checkbox_for_a_prohibited_system(harness, engine, bot_policy, now):
    banned = make_asset(engine, policy=bot_policy, now=now, kind="system", name="Social score")
    classify(engine, banned, "prohibited", policy=bot_policy, now=now)
    with transaction(engine) as session:
        stored = session.get(type(banned), banned.id)
        view = request_modal(asset=stored, durations_days=[1], approval_steps=["owner"], metadata="{}",
                             emergency_hours=4, emergency=True)
    assert "emergency" not in {b.get("block_id") for b in view["blocks"]}
    harness.command("request social-score --emergency", user=OTHER)
    assert "prohibited AI system; access is refused" in harness.last_reply_text()
    assert not harness.fake.calls_to("views.open")


# ---- granting --------------------------------------------------------------------------------------


def test_submitting_grants_at_once_for_the_policy_hours_alerts_security_and_asks_the_owner(
        harness, engine, bot_policy, now):
    request, grant = _glass(harness, engine, bot_policy, now)
    # The duration select (7 days) is ignored: break-glass lasts the policy's 4 hours.
    assert (request.emergency, request.status, request.duration_hours, request.level) == (True, "approved", 4, "use")
    assert (grant.emergency, grant.status, grant.grantee_id) == (True, "active", OTHER)
    assert grant.expires_at == now + timedelta(hours=4)

    [alert] = outbox(engine, template="emergency_alert")
    assert (alert.method, alert.channel) == ("post", SECURITY)
    text = text_of(rendered(engine, alert))
    assert f"<@{OTHER}> used break-glass to take *use* access to" in text and "`fraud-scorer`" in text
    assert ":large_orange_circle: Limited" in text and "Internal" in text  # tier and sensitivity
    assert f"It lasts until <!date^{int(grant.expires_at.timestamp())}^" in text
    assert f"Waiting for the review by the owner, <@{OWNER}>" in text
    assert buttons(rendered(engine, alert)) == []

    [review] = outbox(engine, template="emergency_review")
    assert (review.method, review.user) == ("dm", OWNER)
    content = rendered(engine, review)
    assert "Security has been alerted" in text_of(content) and "*use* access to" in text_of(content)
    found = {b["action_id"]: b for b in buttons(content)}
    assert found["access_emergency_confirm"]["value"] == str(request.id)
    assert found["access_emergency_confirm"]["text"]["text"] == "Looks right"
    assert found["access_revoke_open"]["value"] == str(grant.id) and found["access_revoke_open"]["style"] == "danger"

    [filed] = outbox(engine, template="request_filed")
    assert (filed.method, filed.channel, filed.user) == ("ephemeral", CHANNEL, OTHER)
    receipt = text_of(rendered(engine, filed))
    assert "is granted. It lasts until" in receipt and "Security has been alerted" in receipt and f"<@{OWNER}>" in receipt

    assert {alert.id, review.id, filed.id} <= set(harness.enqueued)
    assert outbox(engine, template="approval_request") == []  # nobody is asked first
    for row in (alert, review, filed):
        assert slack_accepts(harness.fake, rendered(engine, row))


def test_the_justification_is_escaped_everywhere(harness, engine, bot_policy, now):
    _glass(harness, engine, bot_policy, now)
    for template in ("emergency_alert", "emergency_review"):
        [row] = outbox(engine, template=template)
        content = rendered(engine, row)
        text = text_of(content)
        assert "<!channel>" not in text
        assert "&lt;!channel&gt; &amp; &lt;@U0ADMIN1&gt;" in text
        assert "<!channel>" not in content["text"]


def test_without_a_security_channel_the_receipt_does_not_claim_an_alert(engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    request = AccessRequest(id=7, asset_id=asset.id, requester_id=OTHER, level=AccessLevel.READ, duration_hours=4,
                            justification="x", emergency=True, created_at=now)
    text = text_of(emergency_filed(EmergencyFacts(request=request, asset=asset, grant=None, alerted=False)))
    assert "Security" not in text and f"The owner <@{OWNER}> will review it" in text


# ---- bad input -------------------------------------------------------------------------------------


def test_a_prohibited_system_is_refused_on_submit_and_nothing_is_written(harness, engine, bot_policy, now):
    banned = make_asset(engine, policy=bot_policy, now=now, kind="system", name="Social score")
    form = request_modal(asset=banned, durations_days=[1], approval_steps=["owner"], emergency_hours=4,
                         metadata=metadata(asset_id=banned.id, channel=CHANNEL))
    assert block(form, "emergency")  # offered while it was unclassified
    classify(engine, banned, "prohibited", policy=bot_policy, now=now)
    before = len(outbox(engine))
    body = _submit(harness, form)
    assert body["response_action"] == "errors"
    assert "prohibited AI system; access is refused" in body["errors"]["level"]
    assert requests(engine) == [] and _grants(engine) == [] and len(outbox(engine)) == before


@pytest.mark.parametrize("justification", ["", "   "])
def test_an_empty_justification_is_a_field_error(harness, engine, bot_policy, now, justification):
    limited_model(engine, policy=bot_policy, now=now)
    before = len(outbox(engine))
    body = _submit(harness, _open(harness), justification=justification)
    assert body == {"response_action": "errors",
                    "errors": {"justification": "Say why you need emergency access: security and the owner read it."}}
    assert requests(engine) == [] and _grants(engine) == [] and len(outbox(engine)) == before


def test_a_pending_request_for_the_same_level_is_an_error_on_the_level(harness, engine, bot_policy, now):
    model = limited_model(engine, policy=bot_policy, now=now)
    file_request(engine, model, policy=bot_policy, now=now, level="use")
    body = _submit(harness, _open(harness))
    assert "already have a pending use request for fraud-scorer" in body["errors"]["level"]
    assert _grants(engine) == [] and outbox(engine, template="emergency_alert") == []


def test_unticked_the_form_files_a_normal_request(harness, engine, bot_policy, now):
    limited_model(engine, policy=bot_policy, now=now)
    assert _submit(harness, _open(harness, "request fraud-scorer"), emergency=[]) == {}
    [request] = requests(engine)
    assert (request.emergency, request.status, request.duration_hours) == (False, "pending", 168)
    assert _grants(engine) == [] and outbox(engine, template="emergency_alert") == []


# ---- the owner's review ----------------------------------------------------------------------------


def test_looks_right_by_the_owner_records_the_review_and_redraws_alert_and_dm(harness, engine, bot_policy, now):
    request, _ = _glass(harness, engine, bot_policy, now)
    [alert] = outbox(engine, template="emergency_alert")
    [review] = outbox(engine, template="emergency_review")
    harness.interact(block_action("access_emergency_confirm", str(request.id), user=OWNER,
                                  response_url=harness.fake.response_url("review")))
    assert harness.replies() == []
    [decision] = _decisions(engine)
    assert (decision.request_id, decision.approver_id, decision.outcome) == (request.id, OWNER, "confirm")

    updates = [r for r in outbox(engine) if r.method == "update"]
    assert {r.updates_id for r in updates} >= {alert.id, review.id}
    assert {r.id for r in updates} <= set(harness.enqueued)
    for row in (alert, review):
        content = rendered(engine, row)
        assert f"Reviewed by <@{OWNER}>" in text_of(content) and "Waiting for the review" not in text_of(content)
        assert buttons(content) == []
        assert slack_accepts(harness.fake, content)

    # A second click (a double click, a retry) records nothing more and says who reviewed it.
    harness.interact(block_action("access_emergency_confirm", str(request.id), user=OWNER,
                                  response_url=harness.fake.response_url("review")))
    reply = harness.replies()[-1]
    assert reply["response_type"] == "ephemeral" and f"Already decided by <@{OWNER}>" in text_of(reply)
    assert len(_decisions(engine)) == 1


@pytest.mark.parametrize("who", [OTHER, GOVERNANCE])
def test_looks_right_by_anyone_else_is_refused_ephemerally(harness, engine, bot_policy, now, who):
    request, _ = _glass(harness, engine, bot_policy, now)
    before = len(outbox(engine))
    harness.interact(block_action("access_emergency_confirm", str(request.id), user=who,
                                  response_url=harness.fake.response_url("forged")))
    reply = harness.replies()[-1]
    assert reply["response_type"] == "ephemeral" and reply["replace_original"] is False
    assert "Only the owner of fraud-scorer or a Steward admin reviews its emergency access." in text_of(reply)
    assert _decisions(engine) == [] and len(outbox(engine)) == before


def test_looks_right_on_a_normal_request_or_a_forged_value_is_refused(harness, engine, bot_policy, now):
    model = limited_model(engine, policy=bot_policy, now=now)
    normal = file_request(engine, model, policy=bot_policy, now=now)
    for value in (str(normal.id), "999", "abc"):
        harness.interact(block_action("access_emergency_confirm", value, user=OWNER,
                                      response_url=harness.fake.response_url("forged")))
        assert harness.replies()[-1]["response_type"] == "ephemeral"
    assert _decisions(engine) == []


def test_an_admin_may_review_too(harness, engine, bot_policy, now):
    request, _ = _glass(harness, engine, bot_policy, now)
    harness.interact(block_action("access_emergency_confirm", str(request.id), user=ADMIN,
                                  response_url=harness.fake.response_url("review")))
    [decision] = _decisions(engine)
    assert decision.approver_id == ADMIN
    [alert] = outbox(engine, template="emergency_alert")
    assert f"Reviewed by <@{ADMIN}>" in text_of(rendered(engine, alert))


def test_revoke_from_the_review_ends_the_grant_and_redraws_alert_and_dm(harness, engine, bot_policy, now):
    _, grant = _glass(harness, engine, bot_policy, now)
    [alert] = outbox(engine, template="emergency_alert")
    [review] = outbox(engine, template="emergency_review")
    [revoke] = [b for b in buttons(rendered(engine, review)) if b["action_id"] == "access_revoke_open"]
    harness.interact(block_action(revoke["action_id"], revoke["value"], user=OWNER,
                                  response_url=harness.fake.response_url("review")))
    view = harness.opened_view()
    assert view["callback_id"] == "access_revoke"
    shown = harness.submit(view, {"reason": "Incident over <!here>"}, user=OWNER)
    assert "access has ended" in text_of(shown)

    with transaction(engine) as session:
        stored = session.get(Grant, grant.id)
    assert (stored.status, stored.ended_by) == ("revoked", OWNER)
    [notice] = outbox(engine, template="grant_revoked")
    assert notice.user == OTHER

    updates = [r for r in outbox(engine) if r.method == "update"]
    assert {r.updates_id for r in updates} >= {alert.id, review.id}
    assert {r.id for r in updates} <= set(harness.enqueued)
    for row in (alert, review):
        content = rendered(engine, row)
        text = text_of(content)
        assert f"Revoked by <@{OWNER}>" in text and "Incident over &lt;!here&gt;" in text and "<!here>" not in text
        assert "Waiting for the review" not in text
        assert buttons(content) == []
        assert slack_accepts(harness.fake, content)


def test_someone_else_cannot_revoke_from_a_forwarded_review(harness, engine, bot_policy, now):
    _, grant = _glass(harness, engine, bot_policy, now)
    harness.interact(block_action("access_revoke_open", str(grant.id), user=GOVERNANCE,
                                  response_url=harness.fake.response_url("forged")))
    assert "Only the owner of fraud-scorer or a Steward admin can revoke access." in harness.last_reply_text()
    assert not harness.fake.calls_to("views.open")[1:]  # only the request modal was ever opened
    with transaction(engine) as session:
        assert session.get(Grant, grant.id).status == "active"
