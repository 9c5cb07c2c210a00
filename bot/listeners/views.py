"""Modal submissions: check the form, ack with "Saving…", then save and show the outcome in the modal.

Nothing touches the database before the ack. What the form alone can tell (missing or malformed fields, an
owner Slack says cannot own anything) is answered in the ack as field errors. Otherwise the ack turns the
modal into a "Saving…" view at once, and the save runs afterwards on `ctx.after_ack` (behind the acks of a
burst, on `steward serve`). The modal is then updated to the outcome, or to the form again, holding what the
person entered, with each problem the save found (a taken slug, a lineage cycle, someone else's asset)
under its field; the person fixes it and submits again. Slack's 3 s deadline then never depends on the
database, and a burst of submissions never queues its acks behind each other's reads and writes.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from slack_bolt import App

from workflows import inventory, reviews
from workflows.classification import classify_system
from workflows.details import field_errors
from workflows.enums import AssetKind
from workflows.errors import DomainError, InvalidInput
from workflows.lineage import upstream_ids
from workflows.risk import RiskAnswers

from bot.context import BotContext
from bot.forms import (
    asset_input_from_view, metadata_channel, metadata_id, modal_errors, read_metadata, risk_answers_from_view,
)
from bot.ids import Block, Callback, RiskBlock
from bot.listeners.common import STALE_FORM, actor_for
from bot.listeners.saving import ack_then_save
from bot.views.classify import classification_result_view
from bot.views.forms import saved_view

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
    """Register or edit an asset; the person also hears back through the outbox ("asset_registered"/"_updated")."""
    meta = read_metadata(view)
    user_id = body["user"]["id"]
    try:
        kind = AssetKind(meta.get("kind", ""))
        data = inventory.parse_asset_input(asset_input_from_view(view, kind))
        inventory.check_asset_input(data, new=not editing)
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
    except DomainError as exc:
        ack(response_action="errors", errors={Block.NAME: str(exc)})
        return
    def save(session) -> dict[str, Any]:
        if not editing:
            asset = inventory.register_asset(session=session, data=data, actor=actor, now=ctx.clock(),
                                             policy=ctx.policy, reply_channel=channel)
            return saved_view(asset, registered=True)
        asset = inventory.update_asset(session=session, asset_id=asset_id, data=data, actor=actor,
                                       now=ctx.clock(), policy=ctx.policy, reply_channel=channel)
        if "review" in meta and inventory.can_edit(asset=asset, actor=actor, policy=ctx.policy):
            # Opened with Update from a review nudge: saving the edit is the review (unless the
            # actor just handed the asset to a new owner, whose review it now is).
            reviews.record_review(session=session, asset_id=asset.id, actor=actor, now=ctx.clock(),
                                  policy=ctx.policy, message_id=metadata_id(meta, "review"), via="update")
        return saved_view(asset, registered=False)

    ack_then_save(ctx, ack, body, view, client, save, doing="Saving", name=data.name, what="asset was not saved",
                  fallback=Block.NAME)


def _save_classification(ctx: BotContext, ack, body: dict[str, Any], view: dict[str, Any], client) -> None:
    """Classify a system: the domain checks who may and what, then the modal shows the outcome."""
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
    try:
        actor = actor_for(ctx, body["user"]["id"])
    except DomainError as exc:
        ack(response_action="errors", errors={RiskBlock.NOTES: str(exc)[:150]})
        return
    def save(session) -> dict[str, Any]:
        _, outcome = classify_system(session=session, asset_id=asset_id, answers=answers, actor=actor,
                                     now=ctx.clock(), policy=ctx.policy)
        asset = inventory.get_asset(session=session, asset_id=asset_id)
        inherited = len(upstream_ids(session=session, start=[asset.id], include_start=False))
        return classification_result_view(asset=asset, outcome=outcome, inherited=inherited)

    ack_then_save(ctx, ack, body, view, client, save, doing="Classifying", what="classification was not saved",
                  fallback=RiskBlock.NOTES)
