"""Button and menu clicks. Every click is re-authorised here; button values carry only ids."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from workflows import inventory
from workflows.classification import ensure_classifiable
from workflows.enums import AssetKind
from workflows.errors import NotFound

from bot.context import BotContext
from bot.forms import metadata, metadata_channel, read_metadata
from bot.ids import Action
from bot.listeners.commands import card_blocks
from bot.listeners.common import (
    actor_for, answer_after_acks, answer_at_once, change, channel_of, in_modal, read, record_id, responder,
)
from bot.listeners.modals import open_classify, open_edit, open_register
from bot.views.common import plain
from bot.views.forms import asset_form_view


def register(app: App, ctx: BotContext) -> None:
    """Attach the action listeners."""

    @app.action(Action.PICK_KIND)
    def pick_kind(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()

        def run() -> None:
            kind = AssetKind._value2member_map_.get((action.get("selected_option") or {}).get("value"))
            view = body.get("view") or {}
            if kind is None or not view.get("id"):
                raise NotFound("That choice no longer belongs to a registration form.")
            # Only the channel carries over: the rest of a forged form's metadata is not passed on.
            meta = metadata(kind=kind.value, channel=metadata_channel(read_metadata(view)))
            form = asset_form_view(kind=kind, metadata=meta, owner_id=body["user"]["id"])
            client.views_update(view_id=view["id"], hash=view.get("hash"), view=form)

        answer_at_once(ctx, responder(body, respond, client), run)

    @app.action(Action.SHOW_ASSET)
    def show(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()

        # In a message the card comes through the response URL, behind the acks, and what waits holds only
        # what it reads (see `commands.waiting_command`); from App Home or a modal it opens at once, with the
        # click's trigger_id.
        in_message = bool(body.get("response_url"))
        user_id, button = body["user"]["id"], {"value": action.get("value")}
        where, via = ({"response_url": body["response_url"]}, app.client) if in_message else (body, client)

        def run() -> None:
            actor = actor_for(ctx, user_id)
            blocks = read(ctx, lambda s: card_blocks(ctx, s, _asset(s, button), actor))
            _show_blocks(where, respond, via, blocks)

        if in_message:
            answer_after_acks(ctx, respond, run)
        else:
            answer_at_once(ctx, responder(body, respond, client), run)

    @app.action(Action.EDIT_ASSET)
    def edit(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()
        answer_at_once(ctx, responder(body, respond, client), lambda: open_edit(
            ctx, client, trigger_id=body["trigger_id"], asset_id=record_id(action, "an asset"),
            actor=actor_for(ctx, body["user"]["id"]), channel=channel_of(body), push=in_modal(body)))

    @app.action(Action.CLASSIFY_ASSET)
    def classify(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()

        def run() -> None:
            actor = actor_for(ctx, body["user"]["id"])

            def load(session):
                asset = _asset(session, action)
                ensure_classifiable(asset=asset, actor=actor, policy=ctx.policy)
                return asset, inventory.latest_classification(session=session, asset_id=asset.id)
            asset, previous = read(ctx, load)
            open_classify(client, trigger_id=body["trigger_id"], asset=asset, previous=previous,
                          channel=channel_of(body), push=in_modal(body))

        answer_at_once(ctx, responder(body, respond, client), run)

    @app.action(Action.RETIRE_ASSET)
    def retire(ack, body: dict[str, Any], action: dict[str, Any], respond, client) -> None:
        ack()

        def run() -> None:
            actor = actor_for(ctx, body["user"]["id"])

            def do(session):
                asset = inventory.retire_asset(session=session, asset_id=record_id(action, "an asset"), actor=actor,
                                               now=ctx.clock(), policy=ctx.policy)
                return card_blocks(ctx, session, asset, actor)
            blocks = change(ctx, do)
            _show_blocks(body, respond, client, blocks, replace=True)

        answer_at_once(ctx, responder(body, respond, client), run)

    @app.action(Action.REGISTER_OPEN)
    def register_open(ack, body: dict[str, Any], client) -> None:
        ack()
        ctx.at_once(lambda: open_register(client, trigger_id=body["trigger_id"], kind=None, user_id=body["user"]["id"]))


def _asset(session, action: dict[str, Any]):
    return inventory.get_asset(session=session, asset_id=record_id(action, "an asset"))


def _show_blocks(body: dict[str, Any], respond, client, blocks: list[dict[str, Any]], *,
                 replace: bool = False) -> None:
    """Show blocks where the click came from: in the message, or in a modal from App Home."""
    if body.get("response_url"):
        respond(response_type="ephemeral", replace_original=replace, text="Asset", blocks=blocks)
        return
    modal = {"type": "modal", "title": plain("Asset", 24), "close": plain("Close", 24), "blocks": blocks[:100]}
    if in_modal(body) and replace:
        client.views_update(view_id=body["view"]["id"], view=modal)
    elif in_modal(body):
        client.views_push(trigger_id=body["trigger_id"], view=modal)
    else:
        client.views_open(trigger_id=body["trigger_id"], view=modal)
