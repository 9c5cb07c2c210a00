"""Access requests in Slack: the request, deny and revoke modals, the approver's message, the requester's
news (including whether access is still being set up by a provisioning connector), grant notices,
`/steward access`, and the pending approvals on App Home.

Every builder draws from records as they are now, so a message redrawn after a decision shows the
outcome. Buttons carry only a record id; the server re-checks every click.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from workflows.enums import AccessLevel, GrantStatus, ProvisioningAction, ProvisioningStatus, RequestStatus, RiskTier
from workflows.models import AccessRequest, ApprovalStep, Asset, Grant, ProvisioningJob
from workflows.policy import DATA_OWNERS, OWNER

from bot.ids import AccessBlock, Action, Callback
from bot.views.assets import asset_line
from bot.views.common import (
    Block, actions, button, clip, confirm_dialog, context, date, date_time, divider, escape, fields_section,
    option, plain, section, sensitivity_label, tier_badge, user,
)
from bot.views.provisioning import job_status_line

REASON_MAX = 1000
EMERGENCY = "emergency"  # the value of the ticked break-glass checkbox
APPROVERS_SHOWN = 5
UPSTREAM_SHOWN = 8
LIST_SHOWN = 20
HOME_APPROVALS_SHOWN = 10
LEVEL_HELP = {
    AccessLevel.READ: "See it, its data and its documentation",
    AccessLevel.USE: "Run, query or call it",
    AccessLevel.ADMIN: "Change, deploy or manage it",
}
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class RequestFacts:
    """One request with everything its messages show, read in one go at render time."""

    request: AccessRequest
    asset: Asset
    steps: list[ApprovalStep]
    upstream: list[Asset] = field(default_factory=list)  # sensitive datasets it was built from
    grant: Grant | None = None                            # the grant it produced or extended
    jobs: list[ProvisioningJob] = field(default_factory=list)  # provisioning of the grant it produced

    @property
    def grant_job(self) -> ProvisioningJob | None:
        """The job setting up the grant this request produced, if a connector sets it up."""
        return next((j for j in self.jobs if j.action == ProvisioningAction.GRANT), None)


# ---- modals ----------------------------------------------------------------------------------------


def request_modal(*, asset: Asset, durations_days: list[int], approval_steps: list[str],
                  metadata: str, emergency_hours: int | None = None, emergency: bool = False) -> dict[str, Any]:
    """The request form: level, a duration the asset's tier allows, and a justification; with
    `emergency_hours`, also the break-glass checkbox (ticked when `emergency`), never for prohibited assets."""
    levels = [option(level.value.capitalize(), level.value, LEVEL_HELP[level]) for level in AccessLevel]
    durations = [option(duration_label(days * 24), str(days * 24)) for days in durations_days]
    steps = ", then ".join(step_label(s).lower() for s in approval_steps) or "nobody (granted at once)"
    blocks: list[Block] = [
        section(f"{asset_line(asset)}\nOwner {user(asset.owner_id)} · approved by {steps}"),
        _select(AccessBlock.LEVEL, "Access level", levels),
        _select(AccessBlock.DURATION, "For how long", durations),
        _reason_input(AccessBlock.JUSTIFICATION, "Justification",
                      "What you need it for, and why at this level."),
    ]
    if emergency_hours and asset.effective_tier != RiskTier.PROHIBITED:
        blocks.append(emergency_checkbox(emergency_hours, ticked=emergency))
    return {
        "type": "modal", "callback_id": Callback.REQUEST_ACCESS, "title": plain("Request access", 24),
        "submit": plain("Request", 24), "close": plain("Cancel", 24), "private_metadata": metadata,
        "blocks": blocks,
    }


def emergency_checkbox(hours: int, *, ticked: bool = False) -> Block:
    """The break-glass checkbox of the request form, with what ticking it does."""
    choice = option("Emergency (break-glass)", EMERGENCY)
    element: dict[str, Any] = {"type": "checkboxes", "action_id": Action.VALUE, "options": [choice]}
    if ticked:
        element["initial_options"] = [choice]
    hint = (f"Grants access at once for at most {duration_label(hours)} (the duration above is ignored), "
            "alerts security and asks the owner to review it. Only for a real emergency; say why above.")
    return {"type": "input", "block_id": AccessBlock.EMERGENCY, "optional": True, "label": plain("Emergency", 2000),
            "element": element, "hint": plain(hint, 2000)}


def deny_modal(*, request_id: int, metadata: str) -> dict[str, Any]:
    """Ask an approver why they deny a request."""
    return {
        "type": "modal", "callback_id": Callback.DENY, "title": plain("Deny request", 24),
        "submit": plain("Deny", 24), "close": plain("Cancel", 24), "private_metadata": metadata,
        "blocks": [
            section(f"Deny access request #{request_id}? The requester sees your reason."),
            _reason_input(AccessBlock.REASON, "Reason", "For example: read access is enough for this."),
        ],
    }


def revoke_modal(*, grant: Grant, asset: Asset, metadata: str) -> dict[str, Any]:
    """Ask the owner or an admin why they end someone's access."""
    return {
        "type": "modal", "callback_id": Callback.REVOKE, "title": plain("Revoke access", 24),
        "submit": plain("Revoke", 24), "close": plain("Cancel", 24), "private_metadata": metadata,
        "blocks": [
            section(f"Revoke {user(grant.grantee_id)}'s *{grant.level.value}* access to {asset_line(asset)}? "
                    f"It would otherwise last until {date_time(grant.expires_at)}. They see your reason."),
            _reason_input(AccessBlock.REASON, "Reason", "For example: they moved to another team."),
        ],
    }


def revoked_modal(*, grant: Grant) -> dict[str, Any]:
    """What the revoke modal turns into once access has ended."""
    return {"type": "modal", "title": plain("Access revoked", 24), "close": plain("Done", 24),
            "blocks": [section(f":lock: {user(grant.grantee_id)}'s *{grant.level.value}* access has ended. "
                               "They have been told.")]}


# ---- the approver's message ------------------------------------------------------------------------


def approval_message(facts: RequestFacts, *, approver: str, reminder: bool = False) -> dict[str, Any]:
    """The DM to one approver: who asks for what and why, the asset's risk, the steps, and either the
    Approve and Deny buttons (while this approver can still decide) or the outcome."""
    request, asset = facts.request, facts.asset
    pending = request.status == RequestStatus.PENDING
    lead = ":alarm_clock: *Reminder:* " if reminder and pending else ":key: "
    head = (f"{lead}{user(request.requester_id)} asks for *{request.level.value}* access to {asset_line(asset)} "
            f"for *{duration_label(request.duration_hours)}*.")
    blocks: list[Block] = [section(head + _flags(request)), fields_section([
        ("Risk tier", tier_badge(asset.effective_tier)),
        ("Sensitivity", sensitivity_label(asset.sensitivity, asset.contains_personal_data)),
        ("Owner", user(asset.owner_id)),
        ("Request", f"#{request.id}, asked {date_time(request.created_at)}"),
    ])]
    blocks.append(section(f"*Justification*\n{quote(request.justification)}"))
    blocks.append(section(upstream_text(facts.upstream)))
    blocks.append(section(steps_text(facts.steps, pending=pending)))
    if pending and can_decide(facts.steps, approver):
        blocks.append(actions(
            button("Approve", Action.APPROVE, str(request.id), style="primary"),
            button("Deny", Action.DENY_OPEN, str(request.id), style="danger"),
            button("View asset", Action.SHOW_ASSET, str(asset.id)),
            block_id=f"decide:{request.id}"))
        if request.expires_at:
            blocks.append(context(f"Undecided, it expires {date_time(request.expires_at)}."))
    elif pending:
        blocks.append(section(_waiting_text(facts.steps, approver)))
    else:
        blocks.append(section(outcome_text(request)))
        if facts.jobs:
            blocks.append(section("\n".join(job_status_line(job, asset) for job in facts.jobs)))
    status = "" if pending else f" ({request.status.value})"
    text = f"Access request #{request.id}{status}: {request.level.value} access to {escape(asset.name)}"
    return {"text": text, "blocks": blocks}


def can_decide(steps: list[ApprovalStep], approver: str) -> bool:
    """Whether this approver still has an open step (and has not already approved another)."""
    if any(s.approved_by == approver for s in steps):
        return False
    return any(not s.approved_by and approver in s.approvers for s in steps)


def outcome_text(request: AccessRequest) -> str:
    """How a resolved request ended, and who ended it."""
    if request.status == RequestStatus.APPROVED:
        if request.resolution_note == "auto":
            return ":white_check_mark: Approved automatically: no approval is needed at this tier."
        return f":white_check_mark: Approved by {user(request.resolved_by)}"
    if request.status == RequestStatus.DENIED:
        return f":no_entry_sign: Denied by {user(request.resolved_by)}: {escape(request.resolution_note)}"
    if request.status == RequestStatus.CANCELLED:
        return ":heavy_multiplication_x: Cancelled by the requester"
    if request.status == RequestStatus.EXPIRED:
        return ":hourglass: Expired: nobody decided in time"
    return ":hourglass_flowing_sand: Waiting for approval"


def steps_text(steps: list[ApprovalStep], *, pending: bool) -> str:
    """The approval steps in order: who approved each, or who it waits for."""
    if not steps:
        return "*Approval steps*\nNone: this tier needs no approval."
    lines = ["*Approval steps*"]
    for number, step in enumerate(steps, start=1):
        if step.approved_by:
            state = f":white_check_mark: approved by {user(step.approved_by)} {date_time(step.approved_at)}"
        elif pending:
            state = f":hourglass_flowing_sand: waiting for {mentions(step.approvers)}"
        else:
            state = "not decided"
        lines.append(f"{number}. *{step_label(step.group)}*: {state}")
        if step.rerouted:
            lines.append(f"      _{escape(step.rerouted)}_")
    return "\n".join(lines)


def upstream_text(datasets: list[Asset]) -> str:
    """The sensitive data the asset was built from, and who owns it."""
    if not datasets:
        return "*Upstream data*\nNo confidential, restricted or personal data upstream."
    lines = ["*Upstream data*"]
    for dataset in datasets[:UPSTREAM_SHOWN]:
        label = sensitivity_label(dataset.sensitivity, dataset.contains_personal_data).lower()
        lines.append(f":card_file_box: `{dataset.slug}` ({label}), owner {user(dataset.owner_id)}")
    if len(datasets) > UPSTREAM_SHOWN:
        lines.append(f"…and {len(datasets) - UPSTREAM_SHOWN} more.")
    return "\n".join(lines)


def _waiting_text(steps: list[ApprovalStep], approver: str) -> str:
    mine = next((n for n, s in enumerate(steps, start=1) if s.approved_by == approver), None)
    if mine is not None:
        return f":white_check_mark: You approved step {mine}. Waiting for the other steps."
    taken = next((s.approved_by for s in steps if approver in s.approvers and s.approved_by), "")
    if taken:
        return f":information_source: {user(taken)} approved your step. Nothing more is needed from you."
    return ":information_source: You are no longer an approver of this request."


# ---- the requester's news --------------------------------------------------------------------------


def request_filed_message(facts: RequestFacts) -> dict[str, Any]:
    """The requester's receipt: who was asked, and why a step went elsewhere."""
    request, asset = facts.request, facts.asset
    what = (f"your request #{request.id} for *{request.level.value}* access to {asset_line(asset)} "
            f"for *{duration_label(request.duration_hours)}*")
    if not facts.steps and request.status == RequestStatus.APPROVED:
        text = f":white_check_mark: Granted {what}: no approval is needed at this tier."
    else:
        approvers = sorted({a for s in facts.steps for a in s.approvers})
        text = f":inbox_tray: Sent {what} to {mentions(approvers, shown=10)} for approval."
        for step in facts.steps:
            if step.rerouted:
                text += f"\n:twisted_rightwards_arrows: {escape(step.rerouted)}"
        if request.status != RequestStatus.PENDING:
            text += f"\n{outcome_text(request)}"
    blocks = [section(text), context("`/steward access` lists your requests and lets you cancel them.")]
    return {"text": f"Access request #{request.id} sent", "blocks": blocks}


def requester_news(facts: RequestFacts, template: str) -> dict[str, Any]:
    """What happened to my request: approved, denied, expired or escalated."""
    request, asset = facts.request, facts.asset
    what = f"*{request.level.value}* access to {asset_line(asset)}"
    if template == "request_approved":
        until = f" It lasts until {date_time(facts.grant.expires_at)}." if facts.grant else ""
        deciders = [s.approved_by for s in facts.steps if s.approved_by]
        by = f" by {mentions(deciders)}" if deciders else ""
        if facts.grant is not None and facts.grant.status == GrantStatus.PROVISIONING:
            until = _setting_up(facts)
        text = f":white_check_mark: Your request #{request.id} for {what} was approved{by}.{until}"
    elif template == "request_denied":
        text = (f":no_entry_sign: {user(request.resolved_by)} denied your request #{request.id} for {what}:\n"
                f"{quote(request.resolution_note)}")
    elif template == "request_expired":
        text = (f":hourglass: Nobody decided your request #{request.id} for {what} in time, so it expired. "
                f"Ask again with `/steward request {asset.slug}`.")
    elif template == "request_escalated":
        waiting = sorted({a for s in facts.steps if not s.approved_by for a in s.approvers})
        text = (f":mega: Your request #{request.id} for {what} had no decision in time, so Steward now asks "
                f"{mentions(waiting, shown=10)} as well.")
        if request.status != RequestStatus.PENDING:
            text += f"\n{outcome_text(request)}"
    else:
        raise ValueError(f"not a requester template: {template!r}")
    return {"text": f"Access request #{request.id}: {request.status.value}", "blocks": [section(text)]}


def grant_news(grant: Grant, asset: Asset, template: str) -> dict[str, Any]:
    """A grantee's notice: access is ready (set up by its connector), ends soon (with Extend while it is
    active), has expired, or was revoked."""
    what = f"*{grant.level.value}* access to {asset_line(asset)}"
    blocks: list[Block]
    if template == "grant_active":
        if grant.status == GrantStatus.ACTIVE:
            blocks = [section(f":white_check_mark: Your {what} is set up and ready. It lasts until "
                              f"{date_time(grant.expires_at)}."),
                      context("`/steward access` lists your access and lets you release it early.")]
        else:
            blocks = [section(f":lock: Your {what} has {grant.status.value}.")]
    elif template == "grant_expiring":
        if grant.status == GrantStatus.ACTIVE:
            blocks = [section(f":hourglass_flowing_sand: Your {what} ends {date_time(grant.expires_at)}."),
                      actions(button("Extend", Action.EXTEND_GRANT, str(grant.id), style="primary"),
                              block_id=f"extend:{grant.id}"),
                      context("Extending asks the same approvers again.")]
        else:
            blocks = [section(f":lock: Your {what} has {grant.status.value}.")]
    elif template == "grant_expired":
        blocks = [section(f":lock: Your {what} expired {date_time(grant.ended_at or grant.expires_at)}. "
                          f"Ask again with `/steward request {asset.slug}`.")]
    elif template == "grant_revoked":
        if grant.ended_by == grant.grantee_id:
            blocks = [section(f":lock: You released your {what}.")]
        else:
            blocks = [section(f":lock: {user(grant.ended_by)} revoked your {what}:\n{quote(grant.end_reason)}")]
    else:
        raise ValueError(f"not a grant template: {template!r}")
    return {"text": f"Your {grant.level.value} access to {escape(asset.name)}", "blocks": blocks}


def _setting_up(facts: RequestFacts) -> str:
    job = facts.grant_job
    if job is not None and job.status == ProvisioningStatus.FAILED:
        return (f"\n:x: But setting up the access failed, so it is not active yet. The owner, "
                f"{user(facts.asset.owner_id)}, has been told and can set it up by hand.")
    return ("\n:gear: The access is being set up; Steward tells you when it is ready, and it lasts "
            f"{duration_label(facts.request.duration_hours)} from then.")


def decision_refused_message(*, message: str, decided_by: str) -> dict[str, Any]:
    """The losing click's answer: who decided first, or why the click was refused."""
    if decided_by and _SLACK_USER.match(decided_by):
        text = f"Already decided by {user(decided_by)}."
    else:
        text = escape(message) or "That decision could not be recorded."
    return {"text": text, "blocks": [section(f":information_source: {text}")]}


# ---- lists -----------------------------------------------------------------------------------------


def my_access_blocks(*, grants: list[Grant], requests: list[AccessRequest], assets: dict[int, Asset]) -> list[Block]:
    """`/steward access`: my active grants (Release) and my pending requests (Cancel)."""
    blocks: list[Block] = [section(f"*Your access* ({len(grants)})")]
    for grant in grants[:LIST_SHOWN]:
        asset = assets[grant.asset_id]
        emergency = " · :rotating_light: emergency" if grant.emergency else ""
        blocks.append(section(
            f"{asset_line(asset)}\n*{grant.level.value}* until {date_time(grant.expires_at)}{emergency}",
            accessory=button("Release", Action.RELEASE_GRANT, str(grant.id), confirm=confirm_dialog(
                "Give this access back?", f"Your *{grant.level.value}* access to `{asset.slug}` ends now.",
                "Release"))))
    if len(grants) > LIST_SHOWN:
        blocks.append(context(f"…and {len(grants) - LIST_SHOWN} more."))
    if not grants:
        blocks.append(context("You hold no access through Steward."))
    blocks += [divider(), section(f"*Your pending requests* ({len(requests)})")]
    for request in requests[:LIST_SHOWN]:
        asset = assets[request.asset_id]
        blocks.append(section(
            f"{asset_line(asset)}\n*{request.level.value}* for {duration_label(request.duration_hours)} · "
            f"asked {date(request.created_at)} · #{request.id}",
            accessory=button("Cancel", Action.CANCEL_REQUEST, str(request.id))))
    if len(requests) > LIST_SHOWN:
        blocks.append(context(f"…and {len(requests) - LIST_SHOWN} more."))
    if not requests:
        blocks.append(context("No pending requests. Ask with `/steward request &lt;slug&gt;`."))
    return blocks


def pending_approval_blocks(requests: list[AccessRequest], assets: dict[int, Asset]) -> list[Block]:
    """For App Home: requests waiting on me, each with Approve, Deny and View."""
    blocks: list[Block] = [section(f"*Pending approvals* ({len(requests)})")]
    for request in requests[:HOME_APPROVALS_SHOWN]:
        asset = assets[request.asset_id]
        blocks.append(section(
            f"{user(request.requester_id)} asks for *{request.level.value}* access to {asset_line(asset)} "
            f"for *{duration_label(request.duration_hours)}*{_flags(request)}\n"
            f"{quote(clip(request.justification, 300))}"))
        blocks.append(actions(
            button("Approve", Action.APPROVE, str(request.id), style="primary"),
            button("Deny", Action.DENY_OPEN, str(request.id), style="danger"),
            button("View asset", Action.SHOW_ASSET, str(asset.id)),
            block_id=f"home-decide:{request.id}"))
    if len(requests) > HOME_APPROVALS_SHOWN:
        blocks.append(context(f"…and {len(requests) - HOME_APPROVALS_SHOWN} more; the oldest are shown first."))
    if not requests:
        blocks.append(context("Nobody is waiting on you."))
    return blocks


# ---- small pieces ----------------------------------------------------------------------------------


def duration_label(hours: int) -> str:
    """"1 day", "7 days", "4 hours"."""
    if hours % 24 == 0:
        days = hours // 24
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{hours} hour{'s' if hours != 1 else ''}"


def step_label(group: str) -> str:
    """How an approval step reads: the owner, the data owners, or the group's name."""
    if group == OWNER:
        return "Owner"
    if group == DATA_OWNERS:
        return "Data owners"
    return group.replace("_", " ").capitalize()


def mentions(user_ids: list[str], *, shown: int = APPROVERS_SHOWN) -> str:
    """Up to `shown` mentions, then a count."""
    if not user_ids:
        return "nobody"
    text = ", ".join(user(u) for u in user_ids[:shown])
    return text + (f" and {len(user_ids) - shown} more" if len(user_ids) > shown else "")


def quote(text: str) -> str:
    """User text, escaped, as a block quote."""
    return "\n".join(f">{escape(line)}" for line in (text.splitlines() or [""]))


def _flags(request: AccessRequest) -> str:
    flags = ""
    if request.emergency:
        flags += "\n:rotating_light: *Emergency access*"
    if request.renews_grant_id:
        flags += f"\n:repeat: Extends grant #{request.renews_grant_id}"
    return flags


def _select(block_id: str, label: str, options: list[dict[str, Any]]) -> Block:
    element: dict[str, Any] = {"type": "static_select", "action_id": Action.VALUE, "options": options}
    if options:
        element["initial_option"] = options[0]
    return {"type": "input", "block_id": block_id, "label": plain(label, 2000), "element": element}


def _reason_input(block_id: str, label: str, placeholder: str) -> Block:
    element = {"type": "plain_text_input", "action_id": Action.VALUE, "multiline": True,
               "max_length": REASON_MAX, "placeholder": plain(placeholder)}
    return {"type": "input", "block_id": block_id, "label": plain(label, 2000), "element": element}
