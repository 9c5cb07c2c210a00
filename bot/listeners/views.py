"""Modal submissions: validate, run one change, and answer with field errors or a closed modal.

Field errors can only be shown in the ack itself, so a submission validates and writes before it acks.
That is one short transaction (milliseconds); nothing slow, and no message sending, happens first.
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
from workflows.errors import Conflict, DomainError, InvalidInput
from workflows.lineage import upstream_ids
from workflows.risk import RiskAnswers

from bot.context import BotContext
from bot.forms import (
    asset_input_from_view, metadata_channel, metadata_id, modal_errors, read_metadata, risk_answers_from_view,
)
from bot.ids import Block, Callback, RiskBlock
from bot.listeners.common import STALE_FORM, UNEXPECTED, actor_for, change
from bot.views.classify import classification_result_view

log = logging.getLogger("steward.bot")


def register(app: App, ctx: BotContext) -> None:
    """Attach the view submission listeners."""

    @app.view(Callback.REGISTER)
    def submit_register(ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        _save_asset(ctx, ack, body, view, editing=False)

    @app.view(Callback.EDIT)
    def submit_edit(ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        _save_asset(ctx, ack, body, view, editing=True)

    @app.view(Callback.CLASSIFY)
    def submit_classify(ack, body: dict[str, Any], view: dict[str, Any]) -> None:
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

        def do(session):
            actor = actor_for(ctx, body["user"]["id"])
            _, outcome = classify_system(session=session, asset_id=asset_id, answers=answers, actor=actor,
                                         now=ctx.clock(), policy=ctx.policy)
            asset = inventory.get_asset(session=session, asset_id=asset_id)
            inherited = len(upstream_ids(session=session, start=[asset.id], include_start=False))
            return classification_result_view(asset=asset, outcome=outcome, inherited=inherited)

        try:
            result = change(ctx, do)
        except DomainError as exc:
            ack(response_action="errors", errors={RiskBlock.NOTES: str(exc)[:150]})
            return
        except Exception:
            log.exception("classification failed")
            ack(response_action="errors", errors={RiskBlock.NOTES: UNEXPECTED[:150]})
            return
        ack(response_action="update", view=result)


def _save_asset(ctx: BotContext, ack, body: dict[str, Any], view: dict[str, Any], *, editing: bool) -> None:
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

    def do(session):
        actor = actor_for(ctx, user_id)
        if editing:
            asset = inventory.update_asset(session=session, asset_id=asset_id, data=data, actor=actor,
                                           now=ctx.clock(), policy=ctx.policy, reply_channel=channel)
            if "review" in meta and inventory.can_edit(asset=asset, actor=actor, policy=ctx.policy):
                # Opened with Update from a review nudge: saving the edit is the review (unless the
                # actor just handed the asset to a new owner, whose review it now is).
                reviews.record_review(session=session, asset_id=asset.id, actor=actor, now=ctx.clock(),
                                      policy=ctx.policy, message_id=metadata_id(meta, "review"), via="update")
            return asset
        return inventory.register_asset(session=session, data=data, actor=actor, now=ctx.clock(),
                                        policy=ctx.policy, reply_channel=channel)

    try:
        change(ctx, do)
    except InvalidInput as exc:
        ack(response_action="errors", errors=modal_errors(exc.field_errors, view, fallback=Block.NAME,
                                                           message=str(exc)))
    except Conflict as exc:
        ack(response_action="errors", errors={exc.field or Block.NAME: str(exc)})
    except DomainError as exc:
        ack(response_action="errors", errors={Block.NAME: str(exc)})
    except Exception:
        log.exception("saving an asset failed")
        ack(response_action="errors", errors={Block.NAME: UNEXPECTED})
    else:
        ack()
