"""The access Block Kit builders as data: no Slack, no database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.views.access import (
    RequestFacts, approval_message, decision_refused_message, duration_label, outcome_text, quote, request_modal,
)
from workflows.enums import AccessLevel, AssetKind, RequestStatus
from workflows.models import AccessRequest, ApprovalStep, Asset

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _asset(**fields) -> Asset:
    base = {"id": 3, "slug": "fraud-scorer", "kind": AssetKind.MODEL, "name": "Fraud <scorer>",
            "owner_id": "U0OWNER1", "created_by": "U0OWNER1", "created_at": NOW, "updated_at": NOW}
    return Asset(**{**base, **fields})


def _request(**fields) -> AccessRequest:
    base = {"id": 9, "asset_id": 3, "requester_id": "U0OTHER1", "level": AccessLevel.USE, "duration_hours": 168,
            "justification": "Because", "created_at": NOW, "expires_at": NOW}
    return AccessRequest(**{**base, **fields})


def _steps(*approved: str) -> list[ApprovalStep]:
    groups = [("owner", ["U0OWNER1"]), ("governance", ["U0GOVERN1", "U0GOVERN2"])]
    return [ApprovalStep(id=n, request_id=9, position=n, group=g, approvers=a,
                         approved_by=approved[n] if n < len(approved) else "",
                         approved_at=NOW if n < len(approved) and approved[n] else None)
            for n, (g, a) in enumerate(groups)]


@pytest.mark.parametrize("hours, label", [(24, "1 day"), (168, "7 days"), (4, "4 hours"), (1, "1 hour")])
def test_durations_read_as_days_or_hours(hours, label):
    assert duration_label(hours) == label


@pytest.mark.parametrize("status, resolved_by, note, expected", [
    (RequestStatus.APPROVED, "U0GOVERN1", "", "Approved by <@U0GOVERN1>"),
    (RequestStatus.APPROVED, "U0OTHER1", "auto", "Approved automatically"),
    (RequestStatus.DENIED, "U0OWNER1", "No <b>", "Denied by <@U0OWNER1>: No &lt;b&gt;"),
    (RequestStatus.CANCELLED, "U0OTHER1", "cancelled", "Cancelled"),
    (RequestStatus.EXPIRED, "steward", "no decision in time", "Expired"),
])
def test_outcomes_name_who_decided(status, resolved_by, note, expected):
    assert expected in outcome_text(_request(status=status, resolved_by=resolved_by, resolution_note=note))


@pytest.mark.parametrize("message, decided_by, expected", [
    ("This request was already decided.", "U0OWNER1", "Already decided by <@U0OWNER1>."),
    ("This request is already expired.", "steward", "This request is already expired."),
    ("You are not an approver <of> this.", "", "You are not an approver &lt;of&gt; this."),
])
def test_a_refused_decision_says_who_decided_or_why(message, decided_by, expected):
    assert decision_refused_message(message=message, decided_by=decided_by)["text"] == expected


def test_only_an_approver_with_an_open_step_gets_buttons():
    def actions_for(approver, steps, **request):
        content = approval_message(RequestFacts(request=_request(**request), asset=_asset(), steps=steps),
                                   approver=approver)
        return [e["action_id"] for b in content["blocks"] if b["type"] == "actions" for e in b["elements"]]

    assert actions_for("U0OWNER1", _steps()) == ["access_approve", "access_deny_open", "asset_show"]
    assert actions_for("U0OWNER1", _steps("U0OWNER1")) == []           # already approved their step
    assert actions_for("U0GOVERN2", _steps("", "U0GOVERN1")) == []     # a colleague took the step
    assert actions_for("U0GOVERN1", _steps("U0OWNER1")) != []
    assert actions_for("U0GOVERN1", _steps(), status=RequestStatus.DENIED, resolved_by="U0OWNER1",
                       resolution_note="no") == []


def test_a_reminder_says_so_and_user_text_is_escaped():
    facts = RequestFacts(request=_request(justification="<!channel>\nsecond line"), asset=_asset(), steps=_steps())
    content = approval_message(facts, approver="U0OWNER1", reminder=True)
    head = content["blocks"][0]["text"]["text"]
    assert head.startswith(":alarm_clock: *Reminder:*") and "Fraud &lt;scorer&gt;" in head
    assert ">&lt;!channel&gt;\n>second line" in content["blocks"][2]["text"]["text"]
    assert "<scorer>" not in content["text"]


def test_quote_handles_empty_text():
    assert quote("") == ">"


def test_the_request_modal_offers_the_given_durations_and_a_required_justification():
    view = request_modal(asset=_asset(), durations_days=[1, 7], approval_steps=["owner", "data_owners"],
                         metadata="{}")
    assert view["title"]["text"] == "Request access" and view["callback_id"] == "access_request"
    inputs = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert list(inputs) == ["level", "duration_hours", "justification"]
    assert [o["value"] for o in inputs["duration_hours"]["element"]["options"]] == ["24", "168"]
    assert inputs["justification"]["element"]["max_length"] == 1000
    assert "owner, then data owners" in view["blocks"][0]["text"]["text"]
