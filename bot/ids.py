"""Every Slack id Steward uses (action_id, callback_id, block_id), one StrEnum per surface."""

from __future__ import annotations

from enum import StrEnum

from workflows.enums import EdgeType


class Command(StrEnum):
    """Subcommands of /steward."""

    HELP = "help"
    REGISTER = "register"
    ASSET = "asset"
    SEARCH = "search"
    CLASSIFY = "classify"
    MINE = "mine"
    EDIT = "edit"
    REQUEST = "request"
    ACCESS = "access"
    LINEAGE = "lineage"
    REPORT = "report"


class Callback(StrEnum):
    """Modal callback ids."""

    REGISTER = "asset_register"
    EDIT = "asset_edit"
    CLASSIFY = "asset_classify"
    REQUEST_ACCESS = "access_request"
    DENY = "access_deny"
    REVOKE = "access_revoke"
    REVIEW_RETIRE = "review_retire"  # the confirmation of Retire from a review nudge


class Action(StrEnum):
    """Interactive element action ids."""

    PICK_KIND = "register_pick_kind"
    SHOW_ASSET = "asset_show"
    EDIT_ASSET = "asset_edit_open"
    CLASSIFY_ASSET = "asset_classify_open"
    RETIRE_ASSET = "asset_retire"
    REGISTER_OPEN = "asset_register_open"
    REQUEST_OPEN = "access_request_open"    # value: asset id
    APPROVE = "access_approve"              # value: request id
    DENY_OPEN = "access_deny_open"          # value: request id
    CANCEL_REQUEST = "access_cancel"        # value: request id
    RELEASE_GRANT = "access_release"        # value: grant id
    EXTEND_GRANT = "access_extend"          # value: grant id
    REVOKE_OPEN = "access_revoke_open"      # value: grant id
    CONFIRM_EMERGENCY = "access_emergency_confirm"  # value: request id (the owner's "Looks right")
    PROVISION_DONE = "access_provision_done"  # value: provisioning job id (the owner's "Done")
    REPORT_HTML = "report_send_html"  # value: "html" (the report has no record; the click re-reads it)
    REVIEW_MENU = "review_menu"  # overflow on a review nudge row; option value "<ReviewVerb>:<asset id>"
    RECERT_KEEP = "recert_keep"          # value: recertification item id
    RECERT_REVOKE = "recert_revoke"      # value: recertification item id
    RECERT_KEEP_ALL = "recert_keep_all"  # value: recertification campaign id
    TAKE_OWNERSHIP = "orphan_take"       # value: orphaned_asset id
    VALUE = "value"  # the single element inside each input block


class ReviewVerb(StrEnum):
    """What an option of a review nudge's overflow menu does (its value is "<verb>:<asset id>")."""

    ACCURATE = "accurate"
    UPDATE = "update"
    SNOOZE = "snooze"
    ADD_DOC = "add_doc"
    RETIRE = "retire"


REVIEW_ROW_PREFIX = "review:"  # block id of a nudge row: "review:<outbox message id>:<asset id>"


class Block(StrEnum):
    """Input block ids of the asset form; equal to the service's field names, so errors map back."""

    NAME = "name"
    SLUG = "slug"
    DESCRIPTION = "description"
    OWNER = "owner_id"
    TEAM = "team"
    LOCATION = "location_uri"
    VERSION = "version"
    LICENSE = "license"
    SENSITIVITY = "sensitivity"
    PERSONAL_DATA = "contains_personal_data"
    STATUS = "status"
    KIND_PICKER = "kind_picker"


class RiskBlock(StrEnum):
    """Input block ids of the classification questionnaire; equal to RiskAnswers' field names."""

    PROHIBITED = "prohibited_practices"
    ANNEX_I = "annex_i_safety_component"
    ANNEX_III = "annex_iii_areas"
    EXEMPTION = "art_6_3_exemption"
    EXEMPTION_RATIONALE = "art_6_3_rationale"
    TRANSPARENCY = "transparency_duties"
    NOTES = "notes"


class AccessBlock(StrEnum):
    """Input block ids of the access modals; equal to RequestInput's field names, so errors map back."""

    LEVEL = "level"
    DURATION = "duration_hours"
    JUSTIFICATION = "justification"
    EMERGENCY = "emergency"  # the break-glass checkbox
    REASON = "reason"


DETAIL_PREFIX = "details."
EDGE_PREFIX = "edge:"
PICKER_PREFIX = "pick:"


def detail_block(field: str) -> str:
    """Block id of a kind-specific field."""
    return f"{DETAIL_PREFIX}{field}"


def edge_block(edge_type: EdgeType) -> str:
    """Block id of a lineage picker (matches the service's "edge:<type>" error keys)."""
    return f"{EDGE_PREFIX}{edge_type.value}"


def picker_action(edge_type: EdgeType) -> str:
    """Action id of a lineage picker's external select; the options listener matches the prefix."""
    return f"{PICKER_PREFIX}{edge_type.value}"
