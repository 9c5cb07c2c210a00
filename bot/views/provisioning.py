"""Provisioning in Slack: the owner's manual task (with Done), the owner's failure alert, and the one-line
status the request's other messages show.

Like every builder, these draw from records as they are now: once a job is done, failed or cancelled,
a redraw shows that and drops the button.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workflows.enums import ConnectorType, ProvisioningAction, ProvisioningStatus
from workflows.models import Asset, Grant, ProvisioningJob

from bot.ids import Action
from bot.views.assets import asset_line
from bot.views.common import Block, actions, button, clip, context, date_time, escape, section, user

ERROR_SHOWN = 300
_SYSTEM = "steward"


@dataclass(frozen=True)
class JobFacts:
    """One provisioning job with the grant and asset it is about, read at render time."""

    job: ProvisioningJob
    grant: Grant
    asset: Asset


def manual_task_message(facts: JobFacts) -> dict[str, Any]:
    """The owner's DM for a manual connector: what to change by hand, and Done while it is still to do."""
    job, grant, asset = facts.job, facts.grant, facts.asset
    if job.action == ProvisioningAction.GRANT:
        head = (f":hammer_and_wrench: Please give {user(grant.grantee_id)} *{grant.level.value}* access to "
                f"{asset_line(asset)}, then press *Done*. It was approved through request #{grant.request_id}.")
        why = "Steward counts the access as active, and starts its clock, only once you press Done."
    else:
        head = (f":hammer_and_wrench: Please remove {user(grant.grantee_id)}'s *{grant.level.value}* access to "
                f"{asset_line(asset)}, then press *Done*.{_ended(grant)}")
        why = "Steward has already revoked it; Done records that it is gone everywhere."
    blocks: list[Block] = [section(head)]
    if job.status == ProvisioningStatus.PENDING:
        blocks += [actions(button("Done", Action.PROVISION_DONE, str(job.id), style="primary"),
                           block_id=f"provision:{job.id}"), context(why)]
    else:
        blocks.append(section(outcome_line(job, asset)))
    return {"text": f"To do: {_what(job, grant)} {escape(asset.name)}", "blocks": blocks}


def provisioning_failed_message(facts: JobFacts) -> dict[str, Any]:
    """The owner's alert that a connector gave up, with Done for doing it by hand while that is still needed."""
    job, grant, asset = facts.job, facts.grant, facts.asset
    verb = (f"give {user(grant.grantee_id)} *{grant.level.value}* access to" if job.action == ProvisioningAction.GRANT
            else f"remove {user(grant.grantee_id)}'s *{grant.level.value}* access to")
    head = (f":warning: Steward could not {verb} {asset_line(asset)} through *{escape(job.connector)}* after "
            f"{_attempts(job.attempts)}.\nLast error: `{escape(clip(job.last_error, ERROR_SHOWN))}`")
    blocks: list[Block] = [section(head)]
    if job.status == ProvisioningStatus.FAILED:
        todo = ("Until then the access is not active." if job.action == ProvisioningAction.GRANT
                else "Steward has revoked it already.")
        blocks += [section(f"Please make the change by hand and press *Done*. {todo}"),
                   actions(button("Done", Action.PROVISION_DONE, str(job.id), style="primary"),
                           block_id=f"provision-failed:{job.id}")]
    else:
        blocks.append(section(outcome_line(job, asset)))
    return {"text": f"Provisioning failed: {_what(job, grant)} {escape(asset.name)}", "blocks": blocks}


def outcome_line(job: ProvisioningJob, asset: Asset) -> str:
    """How a finished (or cancelled) job ended, and who confirmed it."""
    if job.status == ProvisioningStatus.SUCCEEDED:
        if _by_hand(job):
            return f":white_check_mark: Done, confirmed by {user(job.confirmed_by)} {date_time(job.completed_at)}."
        return f":white_check_mark: Done through *{escape(job.connector)}* {date_time(job.completed_at)}."
    if job.status == ProvisioningStatus.CANCELLED:
        return (":heavy_multiplication_x: No longer needed: the access was revoked before it was set up. "
                "If you had already given it, take it away again.")
    if job.status == ProvisioningStatus.FAILED:
        return f":x: Failed after {_attempts(job.attempts)}: `{escape(clip(job.last_error, ERROR_SHOWN))}`"
    return f":hourglass_flowing_sand: Waiting for {user(asset.owner_id)}."


def job_status_line(job: ProvisioningJob, asset: Asset) -> str:
    """One line for the request's messages: where setting up (or removing) the access stands."""
    via = (f"by hand, by the owner {user(asset.owner_id)}" if job.connector_type == ConnectorType.MANUAL
           else f"through *{escape(job.connector)}*")
    grant = job.action == ProvisioningAction.GRANT
    if job.status == ProvisioningStatus.PENDING:
        line = f":gear: {'Access is being set up' if grant else 'Access is being removed'} {via}."
        if job.attempts:
            line += (f" Attempt {job.attempts} failed (`{escape(clip(job.last_error, ERROR_SHOWN))}`); "
                     "Steward keeps trying.")
        return line
    if job.status == ProvisioningStatus.SUCCEEDED:
        if _by_hand(job):
            via = f"by hand, confirmed by {user(job.confirmed_by)}"
        return f":white_check_mark: {'Set up' if grant else 'Removed'} {via}."
    if job.status == ProvisioningStatus.FAILED:
        return (f":x: {'Setting up' if grant else 'Removing'} the access {via} failed after "
                f"{_attempts(job.attempts)}: `{escape(clip(job.last_error, ERROR_SHOWN))}`. "
                f"The owner, {user(asset.owner_id)}, has been told.")
    return ":heavy_multiplication_x: Setting it up was cancelled: the access was revoked first."


def _by_hand(job: ProvisioningJob) -> bool:
    # A person pressed Done: a manual task, or a webhook that gave up and was done by hand instead.
    return bool(job.confirmed_by) and job.confirmed_by != _SYSTEM


def _what(job: ProvisioningJob, grant: Grant) -> str:
    verb = "give" if job.action == ProvisioningAction.GRANT else "remove"
    return f"{verb} {grant.level.value} access to"


def _ended(grant: Grant) -> str:
    if grant.end_reason and grant.ended_by and grant.ended_by != _SYSTEM:
        return f" {user(grant.ended_by)} ended it:\n" + "\n".join(
            f">{escape(line)}" for line in (grant.end_reason.splitlines() or [""]))
    return f" It {grant.status.value} {date_time(grant.ended_at)}." if grant.ended_at else ""


def _attempts(count: int) -> str:
    return f"{count} attempt{'s' if count != 1 else ''}"
