"""Modal submissions: check, ack, then save.

Field errors can only be shown in the ack itself, so a submission first runs every check a read can answer
(one short read transaction) and answers problems as field errors. It acks once the form is known good, and
saves after the ack, so a burst of submissions never queues its acks behind each other's writes. Only a race
(or an outage) can make the save fail after that; the form then comes back with what the person entered.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from slack_bolt import App
from slack_sdk.errors import SlackApiError

from workflows import inventory, reviews
from workflows.classification import classify_system, ensure_classifiable
from workflows.details import field_errors
from workflows.enums import AssetKind
from workflows.errors import Conflict, DomainError, InvalidInput
from workflows.lineage import upstream_ids
from workflows.risk import RiskAnswers, classify

from bot.context import BotContext
from bot.forms import (
    asset_input_from_view, metadata_channel, metadata_id, modal_errors, read_metadata, risk_answers_from_view,
)
from bot.ids import Block, Callback, RiskBlock
from bot.listeners.common import STALE_FORM, UNEXPECTED, actor_for, change, read, tell
from bot.views.classify import classification_result_view
from bot.views.common import escape
from bot.views.forms import refilled_view

log = logging.getLogger("steward.bot")


def register(app: App, ctx: BotContext) -> None:
    """Attach the view submission listeners."""

    @app.view(Callback.REGISTER)
    def submit_register(ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
        _save_asset(ctx, ack, body, view, client, editing=False)

    @app.view(Callback.EDIT)
    def submit_edit(ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
        _save_asset(ctx, ack, body, view, client, editing=True)

    @app.view(Callback.CLASSIFY)
    def submit_classify(ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
        _save_classification(ctx, ack, body, view, client)


def _save_asset(ctx: BotContext, ack, body: dict[str, Any], view: dict[str, Any], client, *, editing: bool) -> None:
    """Register or edit an asset; the person hears back through the outbox ("asset_registered"/"_updated")."""
    meta = read_metadata(view)
    user_id = body["user"]["id"]
    try:
        kind = AssetKind(meta.get("kind", ""))
        data = inventory.parse_asset_input(asset_input_from_view(view, kind))
    except ValueError:
        ack(response_action="errors", errors={Block.NAME: STALE_FORM})
        return
    except InvalidInput as exc:
        ack(response_action="errors", errors=modal_errors(exc.field_errors, view, fallback=Block.NAME,
                                                           message=str(exc)))
        return
    asset_id, channel = metadata_id(meta, "asset_id"), metadata_channel(meta)
    if editing and asset_id is None:
        ack(response_action="errors", errors={Block.NAME: STALE_FORM})
        return
    owner_problem = ctx.directory.owner_problem(data.owner_id)
    if owner_problem:
        ack(response_action="errors", errors={Block.OWNER: owner_problem})
        return
    try:
        actor = actor_for(ctx, user_id)
        read(ctx, lambda s: inventory.check_asset_input(session=s, data=data, actor=actor, policy=ctx.policy,
                                                        asset_id=asset_id if editing else None))
    except Exception as exc:
        ack(response_action="errors", errors=_form_errors(exc, view, fallback=Block.NAME))
        return
    ack()

    def save(session):
        if not editing:
            return inventory.register_asset(session=session, data=data, actor=actor, now=ctx.clock(),
                                            policy=ctx.policy, reply_channel=channel)
        asset = inventory.update_asset(session=session, asset_id=asset_id, data=data, actor=actor,
                                       now=ctx.clock(), policy=ctx.policy, reply_channel=channel)
        if "review" in meta and inventory.can_edit(asset=asset, actor=actor, policy=ctx.policy):
            # Opened with Update from a review nudge: saving the edit is the review (unless the
            # actor just handed the asset to a new owner, whose review it now is).
            reviews.record_review(session=session, asset_id=asset.id, actor=actor, now=ctx.clock(),
                                  policy=ctx.policy, message_id=metadata_id(meta, "review"), via="update")
        return asset

    _save_after_ack(ctx, body, view, client, save, what="asset was not saved", fallback=Block.NAME, reopen=True)


def _form_errors(exc: Exception, view: dict[str, Any], *, fallback: str) -> dict[str, str]:
    """How a problem with a form reads as {block_id: error}; what names no block lands on `fallback`."""
    if isinstance(exc, InvalidInput):
        return modal_errors(exc.field_errors, view, fallback=fallback, message=str(exc))
    if isinstance(exc, Conflict):
        return modal_errors({exc.field or "": str(exc)}, view, fallback=fallback, message=str(exc))
    if isinstance(exc, DomainError):
        return {fallback: str(exc)}
    log.exception("a form could not be checked or saved", exc_info=exc)
    return {fallback: UNEXPECTED}


def _save_classification(ctx: BotContext, ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
    """Classify a system: the outcome follows from the answers alone, so the ack already shows it."""
    meta = read_metadata(view)
    try:
        answers = RiskAnswers.model_validate(risk_answers_from_view(view))
    except ValidationError as exc:
        errors = field_errors(exc)
        if "__root__" in errors:
            errors[RiskBlock.EXEMPTION_RATIONALE] = errors.pop("__root__").split(": ", 1)[-1]
        ack(response_action="errors", errors=modal_errors(errors, view, fallback=RiskBlock.NOTES,
                                                           message="Check your answers."))
        return
    asset_id = metadata_id(meta, "asset_id")
    if asset_id is None:
        ack(response_action="errors", errors={RiskBlock.NOTES: STALE_FORM})
        return

    def check(session):
        asset = inventory.get_asset(session=session, asset_id=asset_id)
        ensure_classifiable(asset=asset, actor=actor, policy=ctx.policy)
        inherited = len(upstream_ids(session=session, start=[asset.id], include_start=False))
        return classification_result_view(asset=asset, outcome=classify(answers), inherited=inherited)

    try:
        actor = actor_for(ctx, body["user"]["id"])
        result = read(ctx, check)
    except DomainError as exc:
        ack(response_action="errors", errors={RiskBlock.NOTES: str(exc)[:150]})
        return
    except Exception:
        log.exception("checking a classification failed")
        ack(response_action="errors", errors={RiskBlock.NOTES: UNEXPECTED[:150]})
        return
    ack(response_action="update", view=result)
    _save_after_ack(ctx, body, view, client, lambda s: classify_system(
        session=s, asset_id=asset_id, answers=answers, actor=actor, now=ctx.clock(), policy=ctx.policy),
        what="classification was not saved", fallback=RiskBlock.NOTES, reopen=False)


def _save_after_ack(ctx: BotContext, body: dict[str, Any], view: dict[str, Any], client, save, *, what: str,
                    fallback: str, reopen: bool) -> None:
    """Run `save` as one change after the ack. Should it fail, the form comes back holding what was entered,
    its problems under their fields: opened again (`reopen`: the ack closed it) or put back in place of the
    ack's view. If Slack takes neither, the person is told in a message."""
    try:
        change(ctx, save)
        return
    except Exception as exc:
        errors = _form_errors(exc, view, fallback=fallback)
        problem = str(exc) if isinstance(exc, DomainError) else UNEXPECTED
    form = refilled_view(view, f"Not saved: {problem}", errors)
    try:
        if reopen:
            client.views_open(trigger_id=body["trigger_id"], view=form)
        else:
            client.views_update(view_id=view["id"], view=form)
        return
    except (SlackApiError, OSError, KeyError):  # the trigger expired, or the modal was closed meanwhile
        log.info("could not give a form back to %s; telling them instead", body["user"]["id"])
    details = " ".join(text for text in errors.values() if text != problem)
    tell(client, user_id=body["user"]["id"], channel=metadata_channel(read_metadata(view)),
         text=escape(f":warning: Your {what}: {problem} {details}".strip()))
