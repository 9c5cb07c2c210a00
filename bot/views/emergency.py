"""Break-glass in Slack: the alert to the security channel, the owner's review DM, and the requester's
receipt.

Like every message builder, these draw from records as they are now, so a message redrawn after the
owner's review (or a revoke) shows who reviewed or revoked it, and loses its buttons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workflows.enums import GrantStatus
from workflows.models import AccessRequest, Asset, Decision, Grant

from bot.ids import Action
from bot.views.access import quote
from bot.views.assets import asset_line
from bot.views.common import (
    Block, actions, button, context, date_time, escape, fields_section, section, sensitivity_label, tier_badge, user,
)


@dataclass(frozen=True)
class EmergencyFacts:
    """One break-glass request with its grant and the owner's review, read in one go at render time."""

    request: AccessRequest
    asset: Asset
    grant: Grant | None
    review: Decision | None = None  # the first "looks right", if any
    alerted: bool = False           # whether an alert went to the security channel


def emergency_alert(facts: EmergencyFacts) -> dict[str, Any]:
    """The security channel's alert: who took what, why and until when, and how the review went."""
    request, asset = facts.request, facts.asset
    head = (f":rotating_light: *Emergency access* {user(request.requester_id)} used break-glass to take "
            f"*{request.level.value}* access to {asset_line(asset)}.{_until(facts)}")
    blocks: list[Block] = [section(head), _facts_fields(facts),
                           section(f"*Justification*\n{quote(request.justification)}"),
                           section(status_text(facts))]
    return {"text": f"Emergency access: {request.level.value} access to {escape(asset.name)} "
                    f"(#{request.id}){_text_outcome(facts)}", "blocks": blocks}


def emergency_review(facts: EmergencyFacts) -> dict[str, Any]:
    """The owner's review DM: the same facts, with Looks right and Revoke until it is reviewed or revoked."""
    request, asset = facts.request, facts.asset
    alerted = " Security has been alerted." if facts.alerted else ""
    head = (f":rotating_light: *Emergency access to review* {user(request.requester_id)} used break-glass to "
            f"take *{request.level.value}* access to {asset_line(asset)}.{_until(facts)}{alerted}")
    blocks: list[Block] = [section(head), _facts_fields(facts),
                           section(f"*Justification*\n{quote(request.justification)}")]
    if awaiting_review(facts):
        elements = [button("Looks right", Action.CONFIRM_EMERGENCY, str(request.id), style="primary")]
        if facts.grant is not None and facts.grant.status == GrantStatus.ACTIVE:
            elements.append(button("Revoke", Action.REVOKE_OPEN, str(facts.grant.id), style="danger"))
        blocks.append(actions(*elements, block_id=f"emergency:{request.id}"))
        blocks.append(context("Please review it: *Looks right* records that the access was justified; "
                              "*Revoke* ends it now and tells them why."))
    else:
        blocks.append(section(status_text(facts)))
    return {"text": f"Review emergency access: {request.level.value} access to {escape(asset.name)} "
                    f"(#{request.id}){_text_outcome(facts)}", "blocks": blocks}


def emergency_filed(facts: EmergencyFacts) -> dict[str, Any]:
    """The requester's receipt: access is granted now, until when, and who was told."""
    request, asset = facts.request, facts.asset
    told = ("Security has been alerted and the owner " if facts.alerted else "The owner ")
    text = (f":rotating_light: Emergency *{request.level.value}* access to {asset_line(asset)} is granted."
            f"{_until(facts)} {told}{user(asset.owner_id)} will review it.")
    if facts.grant is not None and facts.grant.status != GrantStatus.ACTIVE:
        text += f"\n{status_text(facts)}"
    blocks = [section(text), context("`/steward access` lists your access and lets you release it early.")]
    return {"text": f"Emergency access granted (request #{request.id})", "blocks": blocks}


def awaiting_review(facts: EmergencyFacts) -> bool:
    """Whether the owner still has to review: nobody has confirmed it and nobody has revoked it."""
    return facts.review is None and not _revoked_by_other(facts)


def status_text(facts: EmergencyFacts) -> str:
    """Where the review stands: reviewed by, revoked by (with the reason), expired, or waiting."""
    grant, lines = facts.grant, []
    if facts.review is not None:
        lines.append(f":white_check_mark: Reviewed by {user(facts.review.approver_id)} "
                     f"{date_time(facts.review.decided_at)}: looks right.")
    if grant is not None and _revoked_by_other(facts):
        lines.append(f":lock: Revoked by {user(grant.ended_by)} {date_time(grant.ended_at)}:\n"
                     f"{quote(grant.end_reason)}")
    elif grant is not None and grant.status == GrantStatus.REVOKED:
        lines.append(f":lock: Released by {user(grant.grantee_id)} {date_time(grant.ended_at)}.")
    elif grant is not None and grant.status == GrantStatus.EXPIRED:
        lines.append(f":hourglass: Expired {date_time(grant.ended_at or grant.expires_at)}.")
    elif grant is not None and grant.status == GrantStatus.PROVISIONING:
        lines.append(":gear: The access is being set up by its provisioning connector; Steward tells the "
                     "requester when it is ready.")
    if awaiting_review(facts):
        lines.append(f":hourglass_flowing_sand: Waiting for the review by the owner, {user(facts.asset.owner_id)}.")
    return "\n".join(lines)


def _revoked_by_other(facts: EmergencyFacts) -> bool:
    grant = facts.grant
    return bool(grant and grant.status == GrantStatus.REVOKED and grant.ended_by != grant.grantee_id)


def _facts_fields(facts: EmergencyFacts) -> Block:
    request, asset = facts.request, facts.asset
    return fields_section([
        ("Risk tier", tier_badge(asset.effective_tier)),
        ("Sensitivity", sensitivity_label(asset.sensitivity, asset.contains_personal_data)),
        ("Owner", user(asset.owner_id)),
        ("Request", f"#{request.id}, at {date_time(request.created_at)}"),
    ])


def _until(facts: EmergencyFacts) -> str:
    if facts.grant is None or facts.grant.status == GrantStatus.PROVISIONING:
        return ""  # its time runs from when it is set up
    return f" It lasts until {date_time(facts.grant.expires_at)}."


def _text_outcome(facts: EmergencyFacts) -> str:
    if _revoked_by_other(facts):
        return ", revoked"
    return ", reviewed" if facts.review is not None else ""
