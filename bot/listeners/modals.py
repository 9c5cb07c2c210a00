"""Opening and redrawing modals (views.open must happen in the listener: trigger_ids live 3 seconds)."""

from __future__ import annotations

from workflows import inventory
from workflows.enums import AssetKind, AssetStatus, EdgeType, RiskTier
from workflows.errors import InvalidInput, NotAllowed
from workflows.inventory import Actor
from workflows.lineage import edges_of
from workflows.models import Asset, Classification

from bot.context import BotContext
from bot.forms import metadata
from bot.listeners.common import read
from bot.views.access import request_modal
from bot.views.classify import classify_view
from bot.views.forms import asset_form_view, kind_picker_view


def open_register(client, *, trigger_id: str, kind: AssetKind | None, user_id: str, channel: str = "",
                  push: bool = False) -> None:
    """Open the registration modal: the kind picker, or straight to the form when the kind is known."""
    if kind is None:
        view = kind_picker_view(metadata=metadata(channel=channel))
    else:
        view = asset_form_view(kind=kind, metadata=metadata(kind=kind.value, channel=channel), owner_id=user_id)
    (client.views_push if push else client.views_open)(trigger_id=trigger_id, view=view)


def open_edit(ctx: BotContext, client, *, trigger_id: str, asset_id: int, actor: Actor, channel: str = "",
              push: bool = False, review_message: int | None = None) -> None:
    """Open the edit form for an asset, after checking the actor may edit it. Opened from a review nudge
    (`review_message` names its outbox message, 0 if unknown), saving the form records the review too."""
    def load(session):
        asset = inventory.get_asset(session=session, asset_id=asset_id)
        inventory.ensure_can_edit(asset=asset, actor=actor, policy=ctx.policy)
        outgoing, _ = edges_of(session=session, asset_id=asset.id)
        lineage: dict[EdgeType, list[Asset]] = {}
        for edge, target in outgoing:
            lineage.setdefault(edge.type, []).append(target)
        return asset, lineage

    asset, lineage = read(ctx, load)
    view = asset_form_view(kind=asset.kind, asset=asset, lineage=lineage, owner_id=asset.owner_id,
                           metadata=metadata(kind=asset.kind.value, asset_id=asset.id, channel=channel,
                                             review=None if review_message is None else review_message))
    (client.views_push if push else client.views_open)(trigger_id=trigger_id, view=view)


def open_classify(client, *, trigger_id: str, asset: Asset, previous: Classification | None, channel: str = "",
                  push: bool = False) -> None:
    """Open the risk questionnaire for a system."""
    view = classify_view(asset=asset, previous=previous, metadata=metadata(asset_id=asset.id, channel=channel))
    (client.views_push if push else client.views_open)(trigger_id=trigger_id, view=view)


def ensure_requestable(ctx: BotContext, asset: Asset) -> list[int]:
    """The grant lengths (days) `asset` may be requested for; refuse retired and prohibited assets up front
    (the submission checks again, with the domain's full rules)."""
    if asset.status == AssetStatus.RETIRED:
        raise InvalidInput(f"{asset.slug} is retired; nobody can be granted access to it.")
    rules = ctx.policy.tier(asset.effective_tier)
    if rules.access == "refused" or asset.effective_tier == RiskTier.PROHIBITED:
        raise NotAllowed(f"{asset.slug} is part of a prohibited AI system; access is refused.")
    durations = ctx.policy.duration_choices(asset.effective_tier)
    if not durations:
        raise NotAllowed(f"The policy offers no grant length for {asset.slug}'s risk tier; ask a Steward admin.")
    return durations


def open_request(ctx: BotContext, client, *, trigger_id: str, asset: Asset, channel: str = "",
                 push: bool = False, emergency: bool = False) -> None:
    """Open the access request modal for an asset that can be requested (Emergency ticked if asked)."""
    durations = ensure_requestable(ctx, asset)
    view = request_modal(asset=asset, durations_days=durations,
                         approval_steps=ctx.policy.tier(asset.effective_tier).approvers,
                         metadata=metadata(asset_id=asset.id, channel=channel),
                         emergency_hours=ctx.policy.emergency.max_hours, emergency=emergency)
    (client.views_push if push else client.views_open)(trigger_id=trigger_id, view=view)
