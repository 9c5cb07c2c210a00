"""The /steward slash command: ack at once, then read or open a modal."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from workflows import inventory
from workflows.access import active_grants
from workflows.classification import can_classify, ensure_classifiable
from workflows.enums import AssetKind, AssetStatus

from bot.context import BotContext
from bot.ids import Command
from bot.listeners.access import access_command, request_command
from bot.listeners.common import actor_for, answer_after_acks, answer_at_once, ephemeral, read
from bot.listeners.lineage import lineage_command
from bot.listeners.report import report_command
from bot.listeners.modals import open_classify, open_edit, open_register
from bot.views.assets import asset_card, asset_list
from bot.views.common import escape
from bot.views.help import help_blocks

KIND_ALIASES = {"code": AssetKind.ALGORITHM, "infra": AssetKind.INFRASTRUCTURE, "doc": AssetKind.DOCUMENTATION,
                "docs": AssetKind.DOCUMENTATION, "ai-system": AssetKind.SYSTEM, "usecase": AssetKind.SYSTEM,
                "use-case": AssetKind.SYSTEM}


def register(app: App, ctx: BotContext) -> None:
    """Attach the /steward command."""

    @app.command("/steward")
    def steward(ack, command: dict[str, Any], respond, client) -> None:
        ack()
        name, _, rest = (command.get("text") or "").strip().partition(" ")
        sub, arg = name.lower(), rest.strip()
        handler = HANDLERS.get(sub)
        if handler is None:
            intro = f"I don't know `{escape(name)}`." if name and sub != Command.HELP else None
            ctx.at_once(lambda: ephemeral(respond, help_blocks(intro=intro), "Steward help"))
            return
        if handler in ANSWERED_BY_RESPONSE_URL:
            # An answer waiting behind the acks holds only what it reads (see `waiting_command`), and the
            # app's own client rather than this request's copy: in a burst hundreds wait at once.
            asker = waiting_command(command)
            answer_after_acks(ctx, respond, lambda: handler(ctx, asker, arg, respond, app.client))
        else:
            answer_at_once(ctx, respond, lambda: handler(ctx, command, arg, respond, client))


def waiting_command(command: dict[str, Any]) -> dict[str, Any]:
    """What an answer through the response URL reads of its command: who asked, and where.

    Hundreds of answers wait at once in a burst, and what they hold stays allocated until it is over, while
    the bare app frees everything at each ack. Holding the whole payload (two dozen strings) and the
    request's own WebClient, a waiting search held 4.0 KB; holding this and the app's client, 1.9 KB."""
    return {key: command[key] for key in ("user_id", "channel_id") if key in command}


def show_asset(ctx: BotContext, command: dict[str, Any], arg: str, respond, client) -> None:
    """`/steward asset <slug>`: the asset card."""
    if not arg:
        ephemeral(respond, help_blocks(intro="Which asset? Try `/steward asset fraud-scorer`."), "Which asset?")
        return
    actor = actor_for(ctx, command["user_id"])
    ephemeral(respond, read(ctx, lambda s: card_blocks(ctx, s, inventory.find_asset(session=s, slug=arg), actor)),
              f"Asset {arg}")


def card_blocks(ctx: BotContext, session, asset, actor) -> list[dict[str, Any]]:
    """The card for `asset` as `actor` sees it (buttons only for what they may do)."""
    card = inventory.describe_asset(session=session, asset=asset, policy=ctx.policy)
    may_edit = inventory.can_edit(asset=asset, actor=actor, policy=ctx.policy)
    # The owner and admins may revoke access (the same people who may edit), so they see who holds it.
    grants = active_grants(session=session, asset_id=asset.id) if may_edit else None
    can_request = (actor.user_id != asset.owner_id and asset.status != AssetStatus.RETIRED
                   and bool(ctx.policy.duration_choices(asset.effective_tier)))
    return asset_card(card, can_edit=may_edit, can_classify=can_classify(asset=asset, actor=actor, policy=ctx.policy),
                      can_request=can_request, grants=grants)


def search(ctx: BotContext, command: dict[str, Any], arg: str, respond, client) -> None:
    """`/steward search <words>`: the best ten matches."""
    if not arg:
        ephemeral(respond, help_blocks(intro="Search for what? Try `/steward search churn`."), "Search for what?")
        return
    found = read(ctx, lambda s: inventory.search_assets(session=s, text=arg))
    title = f"*{len(found)}* best match{'es' if len(found) != 1 else ''} for *{escape(arg)}*"
    ephemeral(respond, asset_list(found, title=title, empty=f":mag: Nothing matches *{escape(arg)}*."),
              f"Search results for {arg}")


def mine(ctx: BotContext, command: dict[str, Any], arg: str, respond, client) -> None:
    """`/steward mine`: assets I own."""
    owned = read(ctx, lambda s: inventory.list_owned(session=s, owner_id=command["user_id"]))
    ephemeral(respond, asset_list(owned, title=f"You own *{len(owned)}* asset{'s' if len(owned) != 1 else ''}.",
                                  empty="You own no assets yet. Register one with `/steward register`."),
              "Your assets")


def register_asset(ctx: BotContext, command: dict[str, Any], arg: str, respond, client) -> None:
    """`/steward register [kind]`: open the registration modal."""
    kind = None
    if arg:
        word = arg.split()[0].lower()
        kind = KIND_ALIASES.get(word) or next((k for k in AssetKind if k.value == word), None)
        if kind is None:
            kinds = ", ".join(f"`{k.value}`" for k in AssetKind)
            ephemeral(respond, help_blocks(intro=f"`{escape(word)}` is not a kind of asset. Use one of {kinds}."),
                      "Unknown kind")
            return
    open_register(client, trigger_id=command["trigger_id"], kind=kind, user_id=command["user_id"],
                  channel=command.get("channel_id", ""))


def classify(ctx: BotContext, command: dict[str, Any], arg: str, respond, client) -> None:
    """`/steward classify <system>`: open the questionnaire."""
    if not arg:
        ephemeral(respond, help_blocks(intro="Which system? Try `/steward classify loan-approval`."), "Which?")
        return
    actor = actor_for(ctx, command["user_id"])

    def load(session):
        asset = inventory.find_asset(session=session, slug=arg)
        ensure_classifiable(asset=asset, actor=actor, policy=ctx.policy)
        return asset, inventory.latest_classification(session=session, asset_id=asset.id)

    asset, previous = read(ctx, load)
    open_classify(client, trigger_id=command["trigger_id"], asset=asset, previous=previous,
                  channel=command.get("channel_id", ""))


def edit(ctx: BotContext, command: dict[str, Any], arg: str, respond, client) -> None:
    """`/steward edit <slug>`: open the edit modal for an asset the user may change."""
    if not arg:
        ephemeral(respond, help_blocks(intro="Which asset? Try `/steward edit fraud-scorer`."), "Which?")
        return
    actor = actor_for(ctx, command["user_id"])
    asset = read(ctx, lambda s: inventory.find_asset(session=s, slug=arg))
    open_edit(ctx, client, trigger_id=command["trigger_id"], asset_id=asset.id, actor=actor,
              channel=command.get("channel_id", ""))


HANDLERS = {
    Command.ASSET: show_asset,
    Command.SEARCH: search,
    Command.MINE: mine,
    Command.REGISTER: register_asset,
    Command.CLASSIFY: classify,
    Command.EDIT: edit,
    Command.REQUEST: request_command,
    Command.ACCESS: access_command,
    Command.LINEAGE: lineage_command,
    Command.REPORT: report_command,
}

# These answer in the conversation, through the response URL, so they wait behind the acks of requests still
# arriving (`answer_after_acks`); the other subcommands open a modal, whose trigger_id will not wait.
ANSWERED_BY_RESPONSE_URL = frozenset({show_asset, search, mine, access_command, lineage_command, report_command})
