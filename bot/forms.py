"""Parsing submitted view state into domain inputs, and domain errors back into modal errors."""

from __future__ import annotations

import json
import re
from typing import Any

from workflows.details import DETAILS_BY_KIND
from workflows.enums import AssetKind
from workflows.lineage import FORM_EDGES

from bot.ids import DETAIL_PREFIX, AccessBlock, Block, RiskBlock, detail_block, edge_block
from bot.views.access import EMERGENCY
from bot.views.classify import EXEMPTION, YES

MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL, so a larger number names no record
_CHANNEL_ID = re.compile(r"^[CDG][A-Z0-9]{2,30}$")
_COMMON_TEXT = (Block.NAME, Block.SLUG, Block.DESCRIPTION, Block.TEAM, Block.LOCATION, Block.VERSION,
                Block.LICENSE)


def metadata(**values: Any) -> str:
    """Encode modal private_metadata (ids and a channel only, never state that needs trusting)."""
    return json.dumps({k: v for k, v in values.items() if v not in (None, "")}, separators=(",", ":"))


def read_metadata(view: dict[str, Any]) -> dict[str, str | int]:
    """Decode a view's private_metadata, keeping only text and whole numbers (what `metadata` writes); a
    malformed value decodes to nothing. It comes back from Slack as sent, but a forger can write it."""
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, (str, int)) and not isinstance(v, bool)}


def record_number(value: Any) -> int | None:
    """A record id as a button value or private_metadata carries it: ASCII digits naming a possible id,
    else None (a stale or forged value names no record)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def metadata_id(meta: dict[str, Any], key: str) -> int | None:
    """The record id stored under `key` in decoded private_metadata, or None."""
    return record_number(meta.get(key))


def metadata_channel(meta: dict[str, Any]) -> str:
    """The conversation a modal was opened from, if its metadata names a plausible Slack channel id."""
    channel = meta.get("channel")
    return channel if isinstance(channel, str) and _CHANNEL_ID.match(channel) else ""


def element_value(element: dict[str, Any] | None) -> Any:
    """The value of one submitted element, whatever its type."""
    if not element:
        return None
    kind = element.get("type")
    if kind == "plain_text_input":
        return element.get("value") or ""
    if kind == "users_select":
        return element.get("selected_user")
    if kind in ("static_select", "radio_buttons", "external_select"):
        selected = element.get("selected_option")
        return selected.get("value") if selected else None
    if kind in ("checkboxes", "multi_static_select", "multi_external_select"):
        return [o["value"] for o in element.get("selected_options") or [] if "value" in o]
    return element.get("value")


def state_values(view: dict[str, Any]) -> dict[str, Any]:
    """{block_id: value} for every input block in a submitted view."""
    values = view.get("state", {}).get("values", {})
    return {block_id: element_value(next(iter(actions.values()), None)) for block_id, actions in values.items()}


def asset_input_from_view(view: dict[str, Any], kind: AssetKind) -> dict[str, Any]:
    """Raw asset fields from the asset form, ready for `parse_asset_input`."""
    values = state_values(view)
    raw: dict[str, Any] = {"kind": kind.value}
    for block in _COMMON_TEXT:
        raw[block.value] = values.get(block) or ""
    raw["owner_id"] = values.get(Block.OWNER) or ""
    raw["sensitivity"] = values.get(Block.SENSITIVITY) or "internal"
    raw["contains_personal_data"] = bool(values.get(Block.PERSONAL_DATA))
    if values.get(Block.STATUS):
        raw["status"] = values[Block.STATUS]
    raw["details"] = {}
    for name in DETAILS_BY_KIND[kind].model_fields:
        value = values.get(detail_block(name))
        if value not in (None, ""):
            raw["details"][name] = value
    raw["lineage"] = {}
    for edge_type in FORM_EDGES[kind]:
        ids = values.get(edge_block(edge_type)) or []
        raw["lineage"][edge_type.value] = [n for n in map(record_number, ids) if n is not None]
    return raw


def risk_answers_from_view(view: dict[str, Any]) -> dict[str, Any]:
    """Raw questionnaire answers, ready for `RiskAnswers.model_validate`."""
    values = state_values(view)
    return {
        RiskBlock.PROHIBITED.value: values.get(RiskBlock.PROHIBITED) or [],
        RiskBlock.ANNEX_I.value: values.get(RiskBlock.ANNEX_I) == YES,
        RiskBlock.ANNEX_III.value: values.get(RiskBlock.ANNEX_III) or [],
        RiskBlock.EXEMPTION.value: EXEMPTION in (values.get(RiskBlock.EXEMPTION) or []),
        RiskBlock.EXEMPTION_RATIONALE.value: values.get(RiskBlock.EXEMPTION_RATIONALE) or "",
        RiskBlock.TRANSPARENCY.value: values.get(RiskBlock.TRANSPARENCY) or [],
        RiskBlock.NOTES.value: values.get(RiskBlock.NOTES) or "",
    }


def request_input_from_view(view: dict[str, Any]) -> dict[str, Any]:
    """Raw request fields from the request modal, ready for `RequestInput.model_validate`."""
    values = state_values(view)
    return {
        AccessBlock.LEVEL.value: values.get(AccessBlock.LEVEL) or "",
        AccessBlock.DURATION.value: values.get(AccessBlock.DURATION) or "",
        AccessBlock.JUSTIFICATION.value: values.get(AccessBlock.JUSTIFICATION) or "",
        AccessBlock.EMERGENCY.value: EMERGENCY in (values.get(AccessBlock.EMERGENCY) or []),
    }


def modal_errors(field_errors: dict[str, str], view: dict[str, Any], *, fallback: str, message: str) -> dict[str, str]:
    """Map service field names onto the view's input blocks; anything unmatched lands on `fallback`."""
    inputs = {b.get("block_id") for b in view.get("blocks", []) if b.get("type") == "input"}
    errors: dict[str, str] = {}
    for field, text in field_errors.items():
        for candidate in (field, f"{DETAIL_PREFIX}{field}", field.split(":", 1)[0] if ":" in field else None):
            if candidate in inputs:
                errors.setdefault(candidate, text)
                break
        else:
            errors.setdefault(fallback, text)
    return errors or {fallback: message}
