"""Small typed helpers for Block Kit, and escaping of user text for mrkdwn."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from workflows.access import SYSTEM_ACTOR
from workflows.enums import AssetKind, AssetStatus, RiskTier, Sensitivity

Block = dict[str, Any]
TEXT_LIMIT = 3000
FIELD_LIMIT = 2000  # a section field's text
# Where a cut would leave half an entity (&am) or half a token (<@U12), which Slack would show as junk.
_OPEN_MARKUP = re.compile(r"(&[a-z]{0,3}|<[^<>]*)$")
_SLACK_USER = re.compile(r"^[UWB][A-Z0-9]{2,}$")
MESSAGE_BLOCK_LIMIT = 50

TIER_BADGES = {
    RiskTier.PROHIBITED: ":no_entry: Prohibited",
    RiskTier.HIGH: ":red_circle: High",
    RiskTier.LIMITED: ":large_orange_circle: Limited",
    RiskTier.MINIMAL: ":large_green_circle: Minimal",
    None: ":white_circle: Unclassified",
}
KIND_EMOJI = {
    AssetKind.DATASET: ":card_file_box:",
    AssetKind.MODEL: ":brain:",
    AssetKind.ALGORITHM: ":gear:",
    AssetKind.INFRASTRUCTURE: ":building_construction:",
    AssetKind.DOCUMENTATION: ":page_facing_up:",
    AssetKind.SYSTEM: ":robot_face:",
}


def escape(text: str) -> str:
    """Escape the three characters Slack treats as markup, so user text cannot ping or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """Shorten `text` to at most `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def plain(text: str, limit: int = 150) -> dict[str, Any]:
    """A plain_text object (emoji on), clipped to `limit`."""
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def clip_markup(text: str, limit: int) -> str:
    """`clip` for mrkdwn: never cut inside an entity or a Slack token, so the markup stays whole."""
    if len(text) <= limit:
        return text
    kept = _OPEN_MARKUP.sub("", text[: limit - 1])
    return kept.rstrip() + "…"


def mrkdwn(text: str, limit: int = TEXT_LIMIT) -> dict[str, Any]:
    """A mrkdwn text object, clipped to Slack's limit (3000). Escape user text before calling."""
    return {"type": "mrkdwn", "text": clip_markup(text, limit)}


def section(text: str, *, accessory: Block | None = None, block_id: str | None = None) -> Block:
    """A section block of mrkdwn text."""
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if accessory:
        block["accessory"] = accessory
    if block_id:
        block["block_id"] = block_id
    return block


def fields_section(pairs: list[tuple[str, str]]) -> Block:
    """A section of up to 10 "*label*\\nvalue" fields (values already escaped)."""
    return {"type": "section", "fields": [mrkdwn(f"*{label}*\n{value}", FIELD_LIMIT) for label, value in pairs[:10]]}


def header(text: str) -> Block:
    """A header block."""
    return {"type": "header", "text": plain(text, 150)}


def context(*texts: str) -> Block:
    """A context block of mrkdwn snippets (at most 10)."""
    return {"type": "context", "elements": [mrkdwn(t) for t in texts[:10]]}


def divider() -> Block:
    """A divider."""
    return {"type": "divider"}


def button(text: str, action_id: str, value: str, *, style: str | None = None,
           confirm: dict[str, Any] | None = None) -> Block:
    """A button carrying only a record id as its value."""
    element: Block = {"type": "button", "text": plain(text, 75), "action_id": action_id, "value": value}
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def confirm_dialog(title: str, text: str, confirm: str, deny: str = "Cancel") -> dict[str, Any]:
    """A confirmation dialog for a destructive button."""
    return {"title": plain(title, 100), "text": mrkdwn(text), "confirm": plain(confirm, 30),
            "deny": plain(deny, 30), "style": "danger"}


def actions(*elements: Block, block_id: str | None = None) -> Block:
    """An actions block (at most 25 elements)."""
    block: Block = {"type": "actions", "elements": list(elements[:25])}
    if block_id:
        block["block_id"] = block_id
    return block


def option(text: str, value: str, description: str | None = None) -> dict[str, Any]:
    """An option for selects, checkboxes and radio buttons (text clipped to 75)."""
    opt: dict[str, Any] = {"text": plain(text, 75), "value": value}
    if description:
        opt["description"] = plain(description, 75)
    return opt


def tier_badge(tier: RiskTier | None) -> str:
    """Emoji and label for a tier."""
    return TIER_BADGES[tier]


def sensitivity_label(sensitivity: Sensitivity, personal_data: bool) -> str:
    """"Restricted · personal data" style label."""
    label = sensitivity.value.capitalize()
    return f"{label} · personal data" if personal_data else label


def status_suffix(status: AssetStatus) -> str:
    """" (retired)" for assets that are not active."""
    return "" if status == AssetStatus.ACTIVE else f" _({status.value})_"


def date(value: datetime | None) -> str:
    """A date in Slack's localised format, with an ISO fallback."""
    if value is None:
        return "—"
    fallback = value.strftime("%Y-%m-%d")
    return f"<!date^{int(value.timestamp())}^{{date_short}}|{fallback}>"


def date_time(value: datetime | None) -> str:
    """A date and time in the reader's own time zone, with a UTC ISO fallback."""
    if value is None:
        return "—"
    fallback = value.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(value.timestamp())}^{{date_short}} {{time}}|{fallback}>"


def user(user_id: str) -> str:
    """A user mention; anything that is not a Slack user id (Steward itself, a missing id) is named, not
    mentioned, so no stored value can become markup."""
    if _SLACK_USER.match(user_id or ""):
        return f"<@{user_id}>"
    return "Steward" if user_id == SYSTEM_ACTOR else escape(user_id or "") or "someone"
