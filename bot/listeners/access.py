"""Access requests: asking (command, card button, modal), deciding (Approve and Deny go to a worker),
extending, releasing, cancelling and revoking, break-glass (Emergency ticked, then the owner's Looks right
or Revoke), the owner's Done on a provisioning task, and `/steward access`.

Approve and Deny only queue the decision: the worker decides it in the database, exactly once, and
tells a losing click who decided first. Everything else is one `workflows.access` call in one
transaction; the domain re-checks who may do it, whatever the button said.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from slack_bolt import App
from sqlmodel import Session, col, select

from workflows import access, emergency, inventory, provisioning
from workflows.details import field_errors
from workflows.enums import GrantStatus
from workflows.errors import Conflict, DomainError, InvalidInput, NotAllowed, NotFound
from workflows.models import Asset, Grant

from bot.context import BotContext
from bot.forms import (
    metadata, metadata_channel, metadata_id, modal_errors, read_metadata, request_input_from_view, state_values,
)
from bot.ids import AccessBlock, Action, Callback
from bot.listeners.common import (
    DEACTIVATED, STALE_FORM, UNEXPECTED, actor_for, answer_at_once, change, channel_of, deactivated, ephemeral,
    in_modal, read, record_id, responder, tell,
)
from bot.listeners.modals import open_request
from bot.listeners.saving import ack_then_save
from bot.views.access import (
    REASON_MAX, decision_refused_message, deny_modal, my_access_blocks, revoke_modal, revoked_modal,
)
from bot.views.common import escape, section
from bot.views.help import help_blocks

log = logging.getLogger("steward.bot")
BUSY = "Steward is busy, try again in a moment."
EMERGENCY_WHY = "Say why you need emergency access: security and the owner read it."


def register(app: App, ctx: BotContext) -> None:
    """Attach the access listeners."""

    @app.action(Action.REQUEST_OPEN)
    def request_open(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()

        def run() -> None:
            actor_for(ctx, body["user"]["id"])  # a deactivated account is refused before the form opens
            asset = read(ctx, lambda s: inventory.get_asset(session=s, asset_id=record_id(action, "an asset")))
            open_request(ctx, client, trigger_id=body["trigger_id"], asset=asset, channel=channel_of(body),
                         push=in_modal(body))

        answer_at_once(ctx, responder(body, respond, client), run)

    @app.view(Callback.REQUEST_ACCESS)
    def submit_request(ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
        _file_request(ctx, ack, body, view, client)

    @app.action(Action.APPROVE)
    def approve(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()
        answer = responder(body, respond, client)

        def run() -> None:
            approver = actor_for(ctx, body["user"]["id"])  # refuses a deactivated account before queueing
            queued = ctx.enqueue_decision(request_id=record_id(action, "a request"), approver_id=approver.user_id,
                                          outcome=access.APPROVE, reason="", channel=channel_of(body))
            if not queued:
                answer(response_type="ephemeral", replace_original=False, text=BUSY, blocks=[section(BUSY)])

        answer_at_once(ctx, answer, run)

    @app.action(Action.CONFIRM_EMERGENCY)
    def confirm_emergency(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()
        answer = responder(body, respond, client)

        def run() -> None:
            actor = actor_for(ctx, body["user"]["id"])
            try:
                # Redrawing the alert and this DM (no buttons, "Reviewed by") is queued in the same change.
                change(ctx, lambda s: emergency.confirm_emergency(
                    session=s, request_id=record_id(action, "an emergency access"), actor=actor, now=ctx.clock(),
                    policy=ctx.policy))
            except access.AlreadyDecided as exc:
                refused = decision_refused_message(message=str(exc), decided_by=exc.decided_by)
                answer(response_type="ephemeral", replace_original=False, **refused)

        answer_at_once(ctx, answer, run)

    @app.action(Action.PROVISION_DONE)
    def provision_done(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()
        answer = responder(body, respond, client)

        def run() -> None:
            actor = actor_for(ctx, body["user"]["id"])
            try:
                # Activating the grant, the log entry, the grantee's DM and the redraw of this message
                # (no button, "confirmed by") are one change; the domain re-checks owner or admin.
                change(ctx, lambda s: provisioning.confirm_job(
                    session=s, job_id=record_id(action, "a provisioning task"), actor=actor, now=ctx.clock(),
                    policy=ctx.policy))
            except access.AlreadyDecided as exc:
                refused = decision_refused_message(message=str(exc), decided_by=exc.decided_by)
                answer(response_type="ephemeral", replace_original=False, **refused)

        answer_at_once(ctx, answer, run)

    @app.action(Action.DENY_OPEN)
    def deny_open(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()

        def run() -> None:
            request_id = record_id(action, "a request")
            view = deny_modal(request_id=request_id,
                              metadata=metadata(request_id=request_id, channel=channel_of(body)))
            (client.views_push if in_modal(body) else client.views_open)(trigger_id=body["trigger_id"], view=view)

        answer_at_once(ctx, responder(body, respond, client), run)

    @app.view(Callback.DENY)
    def submit_deny(ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
        meta = read_metadata(view)
        reason, request_id = _reason(view), metadata_id(meta, "request_id")
        problem = _reason_problem(reason, "Say why you deny it.")
        if request_id is None:
            problem = STALE_FORM
        if problem is None:
            problem = _refused(ctx, body["user"]["id"])
        if problem:
            ack(response_action="errors", errors={AccessBlock.REASON: problem})
            return
        ack()
        user_id, channel = body["user"]["id"], metadata_channel(meta)

        def record() -> None:
            try:
                queued = ctx.enqueue_decision(request_id=request_id, approver_id=user_id,
                                              outcome=access.DENY, reason=reason, channel=channel)
            except Exception:
                log.exception("queueing a deny failed")
                queued = False
            if not queued:
                tell(client, user_id=user_id, channel=channel,
                     text=f":warning: {BUSY} Your denial was not recorded.")

        ctx.at_once(record)

    @app.action(Action.EXTEND_GRANT)
    def extend(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()
        answer = responder(body, respond, client)

        def run() -> None:
            actor = actor_for(ctx, body["user"]["id"])
            request = change(ctx, lambda s: access.request_extension(
                session=s, grant_id=record_id(action, "access"), actor=actor, now=ctx.clock(), policy=ctx.policy,
                members_of=ctx.members_of))
            text = (f":repeat: Asked for an extension (request #{request.id}). Steward tells you when it is "
                    "decided.")
            answer(response_type="ephemeral", replace_original=False, text=text, blocks=[section(text)])

        answer_at_once(ctx, answer, run)

    @app.action(Action.RELEASE_GRANT)
    def release(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()
        _change_my_access(ctx, body, respond, client, lambda s, actor: access.release_grant(
            session=s, grant_id=record_id(action, "access"), actor=actor, now=ctx.clock()))

    @app.action(Action.CANCEL_REQUEST)
    def cancel(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()
        _change_my_access(ctx, body, respond, client, lambda s, actor: access.cancel_request(
            session=s, request_id=record_id(action, "a request"), actor=actor, now=ctx.clock()))

    @app.action(Action.REVOKE_OPEN)
    def revoke_open(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()

        def run() -> None:
            actor = actor_for(ctx, body["user"]["id"])
            grant, asset = read(ctx, lambda s: _revocable(ctx, s, record_id(action, "access"), actor))
            view = revoke_modal(grant=grant, asset=asset,
                                metadata=metadata(grant_id=grant.id, channel=channel_of(body)))
            (client.views_push if in_modal(body) else client.views_open)(trigger_id=body["trigger_id"], view=view)

        answer_at_once(ctx, responder(body, respond, client), run)

    @app.view(Callback.REVOKE)
    def submit_revoke(ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
        meta = read_metadata(view)
        reason, grant_id = _reason(view), metadata_id(meta, "grant_id")
        problem = _reason_problem(reason, "Say why you revoke it.")
        if grant_id is None:
            problem = STALE_FORM
        if problem:
            ack(response_action="errors", errors={AccessBlock.REASON: problem})
            return
        try:
            actor = actor_for(ctx, body["user"]["id"])
        except DomainError as exc:
            ack(response_action="errors", errors={AccessBlock.REASON: str(exc)})
            return
        # Like the asset forms (bot/listeners/views.py): "Revoking…" at once, the outcome once saved.
        ack_then_save(ctx, ack, body, view, client,
                      lambda s: revoked_modal(grant=_revoke(ctx, s, grant_id=grant_id, actor=actor, reason=reason)),
                      doing="Revoking access", what="access was not revoked", fallback=AccessBlock.REASON)


# ---- commands --------------------------------------------------------------------------------------


def request_command(ctx: BotContext, command: dict[str, Any], arg: str, respond, client) -> None:
    """`/steward request <slug> [--emergency]`: open the request modal (Emergency ticked if asked)."""
    if not arg:
        ephemeral(respond, help_blocks(intro="Which asset? Try `/steward request fraud-scorer`."), "Which asset?")
        return
    actor_for(ctx, command["user_id"])  # a deactivated account is refused before the form opens
    words = arg.split()
    emergency_asked = any(word.lower() in ("--emergency", "emergency") for word in words[1:])
    asset = read(ctx, lambda s: inventory.find_asset(session=s, slug=words[0]))
    open_request(ctx, client, trigger_id=command["trigger_id"], asset=asset, channel=command.get("channel_id", ""),
                 emergency=emergency_asked)


def access_command(ctx: BotContext, command: dict[str, Any], arg: str, respond, client) -> None:
    """`/steward access`: my grants and pending requests, with Release and Cancel."""
    ephemeral(respond, read(ctx, lambda s: access_list(s, command["user_id"])), "Your access")


def access_list(session: Session, user_id: str) -> list[dict[str, Any]]:
    """The `/steward access` blocks for one user, from current state."""
    grants, requests = access.my_access(session=session, user_id=user_id)
    ids = {g.asset_id for g in grants} | {r.asset_id for r in requests}
    assets = {a.id: a for a in session.exec(select(Asset).where(col(Asset.id).in_(ids))).all()} if ids else {}
    return my_access_blocks(grants=grants, requests=requests, assets=assets)


# ---- helpers ---------------------------------------------------------------------------------------


def _file_request(ctx: BotContext, ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
    """Validate and check before the ack (so problems become field errors), then file after it."""
    meta = read_metadata(view)
    user_id, asset_id = body["user"]["id"], metadata_id(meta, "asset_id")
    if asset_id is None:
        ack(response_action="errors", errors={AccessBlock.LEVEL: STALE_FORM})
        return
    raw = request_input_from_view(view)
    if raw["emergency"]:
        raw["duration_hours"] = ctx.policy.emergency.max_hours  # break-glass lasts the policy's hours, no more
    try:
        data = access.RequestInput.model_validate(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        if raw["emergency"] and "justification" in errors and not str(raw["justification"]).strip():
            errors["justification"] = EMERGENCY_WHY
        ack(response_action="errors", errors=modal_errors(errors, view, fallback=AccessBlock.LEVEL,
                                                           message="Check the form."))
        return
    try:
        requester = actor_for(ctx, user_id)
        read(ctx, lambda s: access.check_requestable(session=s, asset=inventory.get_asset(session=s, asset_id=asset_id),
                                                     data=data, requester_id=user_id, policy=ctx.policy))
    except InvalidInput as exc:
        ack(response_action="errors", errors=modal_errors(exc.field_errors, view, fallback=AccessBlock.LEVEL,
                                                           message=str(exc)))
        return
    except Conflict as exc:
        ack(response_action="errors", errors=modal_errors({exc.field or "": str(exc)}, view,
                                                           fallback=AccessBlock.LEVEL, message=str(exc)))
        return
    except DomainError as exc:
        ack(response_action="errors", errors={AccessBlock.LEVEL: str(exc)})
        return
    except Exception:
        log.exception("checking an access request failed")
        ack(response_action="errors", errors={AccessBlock.LEVEL: UNEXPECTED})
        return
    ack()
    ctx.at_once(lambda: _file(ctx, client, data, requester=requester, asset_id=asset_id,
                              channel=metadata_channel(meta)))


def _file(ctx: BotContext, client, data: access.RequestInput, *, requester, asset_id: int, channel: str) -> None:
    """File a checked request, after the ack: routing asks Slack who is in each group, and the request is
    one transaction. The requester hears back through the outbox ("request_filed"); only a failure is told."""
    user_id = requester.user_id
    try:
        if data.emergency:
            change(ctx, lambda s: emergency.break_glass(
                session=s, asset_id=asset_id, level=data.level, justification=data.justification,
                requester=requester, now=ctx.clock(), policy=ctx.policy, reply_channel=channel))
        else:
            change(ctx, lambda s: access.request_access(
                session=s, asset_id=asset_id, data=data, requester=requester, now=ctx.clock(), policy=ctx.policy,
                members_of=ctx.members_of, reply_channel=channel))
    except DomainError as exc:
        what = "emergency access was not granted" if data.emergency else "access request was not filed"
        tell(client, user_id=user_id, channel=channel, text=f":warning: Your {what}: {escape(str(exc))}")
    except Exception:
        log.exception("filing an access request failed")
        tell(client, user_id=user_id, channel=channel, text=f":warning: {UNEXPECTED}")


def _revoke(ctx: BotContext, session: Session, *, grant_id: int, actor, reason: str) -> Grant:
    """Revoke a grant (a break-glass grant's alert and review are redrawn by the domain)."""
    return access.revoke_grant(session=session, grant_id=grant_id, actor=actor, reason=reason, now=ctx.clock(),
                               policy=ctx.policy)


def _change_my_access(ctx: BotContext, body: dict[str, Any], respond, client, fn) -> None:
    """Run a Release or Cancel, then redraw `/steward access` in place."""
    user_id = body["user"]["id"]
    answer = responder(body, respond, client)

    def run() -> None:
        actor = actor_for(ctx, user_id)

        def do(session: Session) -> list[dict[str, Any]]:
            fn(session, actor)
            return access_list(session, user_id)

        blocks = change(ctx, do)
        answer(response_type="ephemeral", replace_original=True, text="Your access", blocks=blocks)

    answer_at_once(ctx, answer, run)


def _revocable(ctx: BotContext, session: Session, grant_id: int, actor) -> tuple[Grant, Asset]:
    """The grant and its asset, if it is active and the actor may revoke it (checked again on submit)."""
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise NotFound(f"No grant has id {grant_id}.")
    asset = inventory.get_asset(session=session, asset_id=grant.asset_id)
    if not inventory.can_edit(asset=asset, actor=actor, policy=ctx.policy):
        raise NotAllowed(f"Only the owner of {asset.slug} or a Steward admin can revoke access.")
    if grant.status == GrantStatus.PROVISIONING:
        raise Conflict("This access is still being set up; it can be revoked once it is active.")
    if grant.status != GrantStatus.ACTIVE:
        raise Conflict(f"This access has already {'been revoked' if grant.status == GrantStatus.REVOKED else 'expired'}.")
    return grant, asset


def _refused(ctx: BotContext, user_id: str) -> str | None:
    """Why this person may not decide anything at all (a deactivated account), checked before queueing."""
    return DEACTIVATED if deactivated(ctx, user_id) else None


def _reason(view: dict[str, Any]) -> str:
    return str(state_values(view).get(AccessBlock.REASON) or "").strip()


def _reason_problem(reason: str, missing: str) -> str | None:
    if not reason:
        return missing
    if len(reason) > REASON_MAX:
        return f"Keep this to {REASON_MAX} characters or fewer."
    return None
