"""The asset card, asset lists (search, mine) and "not found" answers."""

from __future__ import annotations

from urllib.parse import quote

from workflows.enums import AssetKind, AssetStatus, EdgeType
from workflows.inventory import AssetCard
from workflows.models import Asset, Grant
from workflows.risk import LABELS, TransparencyDuty

from bot.ids import Action
from bot.views.common import (
    KIND_EMOJI, Block, actions, button, clip, confirm_dialog, context, date, date_time, divider, escape,
    fields_section, header, section, sensitivity_label, status_suffix, tier_badge, user,
)

URL_SAFE = ":/?#[]@!$&'()*+,;=%~"  # what may stay as it is in a URL; everything else is %-encoded
URL_MAX = 500  # as the documentation form allows
LINEAGE_SHOWN = 8
GRANTS_SHOWN = 10
DETAIL_LABELS = {
    "intended_use": "Intended use", "collection_process": "Collection process", "known_bias": "Known bias",
    "size": "Size", "task": "Task", "architecture": "Architecture", "base_model": "Base model",
    "metrics": "Metrics", "language": "Language", "framework": "Framework", "provider": "Provider",
    "region": "Region", "environment": "Environment", "doc_type": "Document type", "url": "URL",
    "intended_purpose": "Intended purpose", "affected_people": "Affected people",
}


def asset_line(asset: Asset) -> str:
    """One line naming an asset: emoji, name, slug, kind and tier."""
    return (f"{KIND_EMOJI[asset.kind]} *{escape(asset.name)}* `{asset.slug}` · {asset.kind.label}"
            f" · {tier_badge(asset.effective_tier)}{status_suffix(asset.status)}")


def asset_card(card: AssetCard, *, can_edit: bool, can_classify: bool, can_request: bool = False,
               grants: list[Grant] | None = None) -> list[Block]:
    """The full card: facts, lineage both ways, documentation checklist, and what the viewer may do.

    `grants` (active access, each with Revoke) is passed only to viewers who may revoke it.
    """
    asset = card.asset
    blocks: list[Block] = [header(f"{asset.name}")]
    summary = f"{KIND_EMOJI[asset.kind]} {asset.kind.label} `{asset.slug}`{status_suffix(asset.status)}"
    if asset.description:
        summary += "\n" + escape(clip(asset.description, 1200))
    blocks.append(section(summary))
    blocks.append(fields_section([
        ("Owner", user(asset.owner_id)),
        ("Team", escape(asset.team) or "—"),
        ("Risk tier", _tier_text(card)),
        ("Sensitivity", sensitivity_label(asset.sensitivity, asset.contains_personal_data)),
        ("Location", escape(clip(asset.location_uri, 300)) or "—"),
        ("Version / license", " · ".join(escape(v) for v in (asset.version, asset.license) if v) or "—"),
        ("Last reviewed", date(asset.last_reviewed_at) if asset.last_reviewed_at else "Never"),
        ("Next review due", date(asset.next_review_due)),
    ]))
    details = _details_text(asset)
    if details:
        blocks.append(section(details))
    blocks.append(divider())
    blocks.append(section(_lineage_text(card)))
    blocks.append(section(_docs_text(card)))
    if asset.kind == AssetKind.SYSTEM:
        blocks.append(section(_classification_text(card)))
    if grants is not None:
        blocks += grant_blocks(grants)
    elements = []
    if can_request:
        elements.append(button("Request access", Action.REQUEST_OPEN, str(asset.id), style="primary"))
    if can_edit and asset.status != AssetStatus.RETIRED:
        elements.append(button("Edit", Action.EDIT_ASSET, str(asset.id)))
    if can_classify and asset.kind == AssetKind.SYSTEM and asset.status != AssetStatus.RETIRED:
        label = "Reclassify" if asset.risk_tier else "Classify risk"
        elements.append(button(label, Action.CLASSIFY_ASSET, str(asset.id),
                               style=None if asset.risk_tier else "primary"))
    if can_edit and asset.status != AssetStatus.RETIRED:
        elements.append(button("Retire", Action.RETIRE_ASSET, str(asset.id), style="danger", confirm=confirm_dialog(
            "Retire this asset?",
            f"`{asset.slug}` stays in the inventory and the log, but is no longer reviewed or linkable.",
            "Retire")))
    if elements:
        blocks.append(actions(*elements, block_id=f"card:{asset.id}"))
    blocks.append(context(f"Registered by {user(asset.created_by)} {date(asset.created_at)}"
                          f" · updated {date(asset.updated_at)}"))
    return blocks


def grant_blocks(grants: list[Grant]) -> list[Block]:
    """Who holds access now, each with Revoke (for the owner or an admin)."""
    blocks: list[Block] = [section(f"*Who has access* ({len(grants)})")]
    for grant in grants[:GRANTS_SHOWN]:
        emergency = " · :rotating_light: emergency" if grant.emergency else ""
        blocks.append(section(
            f"{user(grant.grantee_id)} · *{grant.level.value}* until {date_time(grant.expires_at)}{emergency}",
            accessory=button("Revoke", Action.REVOKE_OPEN, str(grant.id), style="danger")))
    if len(grants) > GRANTS_SHOWN:
        blocks.append(context(f"…and {len(grants) - GRANTS_SHOWN} more."))
    if not grants:
        blocks.append(context("Nobody holds access through Steward."))
    return blocks


def asset_list(assets: list[Asset], *, title: str, empty: str) -> list[Block]:
    """A list of assets, each with a View button (search results, `mine`)."""
    if not assets:
        return [section(empty)]
    blocks: list[Block] = [section(title)]
    for asset in assets[:20]:
        text = asset_line(asset) + f"\nOwner {user(asset.owner_id)}"
        if asset.team:
            text += f" · {escape(asset.team)}"
        if asset.description:
            text += "\n" + escape(clip(asset.description, 200))
        blocks.append(section(text, accessory=button("View", Action.SHOW_ASSET, str(asset.id))))
    if len(assets) > 20:
        blocks.append(context(f"…and {len(assets) - 20} more."))
    return blocks


def not_found(message: str, suggestions: list[str]) -> list[Block]:
    """An unknown slug, with the closest matches as buttons-free hints."""
    text = f":mag: {escape(message)}"
    if suggestions:
        text += "\nDid you mean " + ", ".join(f"`{s}`" for s in suggestions) + "?"
    else:
        text += "\nTry `/steward search &lt;words&gt;` to find it."
    return [section(text)]


def _tier_text(card: AssetCard) -> str:
    asset = card.asset
    text = tier_badge(asset.effective_tier)
    inherited = [s for s in card.tier_sources if s.id != asset.id]
    if inherited:
        text += "\nfrom " + ", ".join(f"`{s.slug}`" for s in inherited[:3])
    if card.unclassified_systems:
        text += "\n:warning: used by unclassified " + ", ".join(f"`{s.slug}`" for s in card.unclassified_systems[:3])
    elif asset.effective_tier is None and asset.kind == AssetKind.SYSTEM:
        text += "\n:warning: not classified yet"
    return text


def _details_text(asset: Asset) -> str:
    lines = []
    for key, value in asset.details.items():
        if value in ("", None):
            continue
        if key == "doc_type":
            value = str(value).replace("_", " ").capitalize()
        lines.append(f"*{DETAIL_LABELS.get(key, key)}:* {escape(clip(str(value), 400))}")
    return "\n".join(lines)


def _lineage_text(card: AssetCard) -> str:
    lines = ["*Lineage*"]
    lines += _edge_lines(card.upstream, inverse=False)
    lines += _edge_lines(card.downstream, inverse=True)
    if len(lines) == 1:
        lines.append("_No lineage recorded._ Edit the asset to say what it was trained on, uses or runs on.")
    return "\n".join(lines)


def _edge_lines(edges: list[tuple[EdgeType, Asset]], *, inverse: bool) -> list[str]:
    grouped: dict[EdgeType, list[Asset]] = {}
    for edge_type, other in edges:
        grouped.setdefault(edge_type, []).append(other)
    lines = []
    for edge_type, others in grouped.items():
        label = edge_type.inverse_label if inverse else edge_type.label
        shown = ", ".join(_lineage_ref(o) for o in others[:LINEAGE_SHOWN])
        more = f" and {len(others) - LINEAGE_SHOWN} more" if len(others) > LINEAGE_SHOWN else ""
        arrow = ":arrow_down_small:" if inverse else ":arrow_up_small:"
        lines.append(f"{arrow} {label.capitalize()}: {shown}{more}")
    return lines


def _lineage_ref(asset: Asset) -> str:
    flags = []
    if asset.kind == AssetKind.DATASET:
        flags.append(sensitivity_label(asset.sensitivity, asset.contains_personal_data).lower())
    flags.append(f"owner {user(asset.owner_id)}")
    return f"`{asset.slug}` ({', '.join(flags)}){status_suffix(asset.status)}"


def _docs_text(card: AssetCard) -> str:
    if not card.docs:
        head = "*Documentation* — nothing required at this tier"
    else:
        head = f"*Documentation* — {card.completeness}% complete"
    lines = [head]
    for doc_type, doc in card.docs:
        if doc:
            lines.append(f":white_check_mark: {doc_type.label}: {_doc_link(doc)}")
        else:
            lines.append(f":x: {doc_type.label}: missing")
    for doc in card.extra_docs[:5]:
        kind = str(doc.details.get("doc_type", "")).replace("_", " ").capitalize()
        lines.append(f":page_facing_up: {kind}: {_doc_link(doc)}")
    return "\n".join(lines)


def _doc_link(doc: Asset) -> str:
    # Percent-encoded first, so no character of the URL (a space, |, < or >) can end the link early.
    url = escape(quote(clip(str(doc.details.get("url", "")), URL_MAX), safe=URL_SAFE))
    return f"<{url}|{escape(doc.name).replace('|', '¦')}> (`{doc.slug}`)" if url else f"`{doc.slug}`"


def _classification_text(card: AssetCard) -> str:
    record = card.classification
    if record is None:
        return "*Risk classification*\n:warning: Not classified yet. Run `/steward classify " \
               f"{card.asset.slug}` to answer the EU AI Act questionnaire."
    text = (f"*Risk classification* — {tier_badge(record.tier)} by {user(record.classified_by)} "
            f"{date(record.classified_at)}\n{escape(clip(record.rationale, 1500))}")
    if record.transparency_flags:
        duties = "; ".join(LABELS[TransparencyDuty(f)] for f in record.transparency_flags)
        text += f"\n_Transparency duties:_ {escape(duties)}"
    return text
