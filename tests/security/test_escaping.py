"""mrkdwn and mention injection: every Block Kit builder, fed hostile user text, escapes it and stays
within Slack's limits.

User text (names, descriptions, teams, details, justifications, reasons, rationales, a webhook's error)
holds `<!channel>`, a forged mention, a disguised link, mrkdwn, an entity, right-to-left marks and
control characters, once short and once past 10,000 characters. Every public builder in bot/views is
found by walking the package, so a new builder cannot skip the check: it fails until it is given hostile
input here. Then the same text goes through the app (slash command answers and every outbox message a
hostile story produces), where listeners and renderers add text of their own.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

import bot.views
from bot.views import (
    access,
    assets,
    classify,
    emergency,
    forms,
    help,
    home,
    lineage,
    provisioning,
    recertification,
    report,
    reviews,
)
from bot.views.access import RequestFacts
from bot.views.emergency import EmergencyFacts
from bot.views.messages import render_outbox
from bot.views.provisioning import JobFacts
from bot.views.reviews import ReviewRow
from tests.bot.conftest import outbox
from tests.conftest import FIXED_NOW
from tests.factories import deny_request, make_asset, make_request, members
from tests.security.scenario import PEOPLE
from workflows.authorization import Role
from workflows.db import transaction
from workflows.details import DETAILS_BY_KIND
from workflows.enums import (
    AccessLevel,
    AssetKind,
    AssetStatus,
    ConnectorType,
    DocType,
    EdgeType,
    Environment,
    GrantStatus,
    ProvisioningAction,
    ProvisioningStatus,
    RequestStatus,
    RiskTier,
    Sensitivity,
)
from workflows.impact import RESTRICTED, Affected
from workflows.inventory import AssetCard
from workflows.lineage_tree import Direction, LineageTree, TreeNode
from workflows.models import (
    AccessRequest,
    ApprovalStep,
    Asset,
    AssetReview,
    Classification,
    Decision,
    Grant,
    OrphanedAsset,
    ProvisioningJob,
    RecertCampaign,
    RecertItem,
)
from workflows.report import Report
from workflows.risk import RiskOutcome

EVIL_USER, EVIL_HOST = "U0EVIL001", "evil.example"
HOSTILE = (f"<!channel> <!here|here> <@{EVIL_USER}> <#C0EVIL001> <https://{EVIL_HOST}|click> *bold* _it_ "
           "~strike~ `code` &lt;b&gt; & \u202eRTL\u200f \x07\x1b[31m")
HUGE = HOSTILE + "x" * 10_000 + HOSTILE
OWNER, REQUESTER = PEOPLE[Role.OWNER], PEOPLE[Role.REQUESTER]
APPROVER, OTHER_APPROVER = PEOPLE[Role.APPROVER], PEOPLE[Role.OTHER_APPROVER]
NOW = FIXED_NOW

# ---- what Slack accepts, and what mrkdwn may contain -----------------------------------------------

# The only markup Steward itself writes: mentions of ids Slack gave it, localised dates, and links to
# documentation (whose URL and label were escaped).
_TOKEN = re.compile(r"<(@[UW][A-Z0-9]+|!date\^\d+\^[^|<>]*\|[^<>]*|https?://[^|<>\s]*\|[^<>]*)>")
_ENTITY = re.compile(r"&(amp|lt|gt);")


def markup_problems(text: str, where: str) -> list[str]:
    """Markup in a mrkdwn string that did not come from Steward: raw <, > or &, or a forged token."""
    problems = []
    for token in _TOKEN.finditer(text):
        content = token.group(1)
        if (content.startswith("@") and EVIL_USER in content) or \
                (content.startswith("http") and urlsplit(content.split("|")[0]).hostname == EVIL_HOST):
            problems.append(f"{where}: user text became markup {token.group(0)[:60]!r}")
    rest = _ENTITY.sub("", _TOKEN.sub("", text))
    for line in rest.split("\n"):
        line = line.removeprefix(">")  # a block quote Steward wrote
        for char in "<>&":
            if char in line:
                problems.append(f"{where}: unescaped {char!r} in {line[:80]!r}")
    return problems


LIMITS = {"header": 150, "button": 75, "option": 75, "description": 75, "placeholder": 150, "label": 2000,
          "hint": 2000, "field": 2000, "section": 3000, "context": 3000, "title": 24, "submit": 24, "close": 24,
          "confirm_title": 100, "confirm_text": 300, "confirm_button": 30}


def limit_problems(surface: Any, where: str) -> list[str]:
    """Block Kit limits a surface breaks (Slack rejects the whole message or view for any of them)."""
    problems: list[str] = []

    def over(obj: dict[str, Any] | None, limit: int, at: str) -> None:
        if obj and len(obj.get("text", "")) > limit:
            problems.append(f"{where}{at}: {len(obj['text'])} characters, the limit is {limit}")

    blocks = surface if isinstance(surface, list) else surface.get("blocks", [surface] if "type" in surface else [])
    if isinstance(surface, dict) and surface.get("type") in ("modal", "home"):
        if len(blocks) > 100:
            problems.append(f"{where}: {len(blocks)} blocks in a view (limit 100)")
        for key in ("title", "submit", "close"):
            over(surface.get(key), LIMITS[key], f".{key}")
        if len(surface.get("private_metadata", "")) > 3000:
            problems.append(f"{where}: private_metadata over 3000 characters")
    elif len(blocks) > 50:
        problems.append(f"{where}: {len(blocks)} blocks in a message (limit 50)")
    if isinstance(surface, dict) and len(surface.get("text", "")) > 40_000:
        problems.append(f"{where}: notification text over 40,000 characters")
    ids = [b["block_id"] for b in blocks if isinstance(b, dict) and "block_id" in b]
    if len(ids) != len(set(ids)) or any(len(i) > 255 for i in ids):
        problems.append(f"{where}: block ids repeat or are too long")
    for n, block in enumerate(b for b in blocks if isinstance(b, dict)):
        at = f"[{n}]"
        over(block.get("text") if block.get("type") == "section" else None, LIMITS["section"], at)
        over(block.get("text") if block.get("type") == "header" else None, LIMITS["header"], at)
        for key in ("label", "hint"):
            over(block.get(key), LIMITS[key], f"{at}.{key}")
        fields = block.get("fields", [])
        if len(fields) > 10:
            problems.append(f"{where}{at}: {len(fields)} fields (limit 10)")
        for field in fields:
            over(field, LIMITS["field"], f"{at}.fields")
        elements = block.get("elements", [])
        if len(elements) > (10 if block.get("type") == "context" else 25):
            problems.append(f"{where}{at}: {len(elements)} elements")
        for element in [*elements, block.get("accessory"), block.get("element")]:
            if isinstance(element, dict):
                problems += _element_problems(element, f"{where}{at}")
    return problems


def _element_problems(element: dict[str, Any], where: str) -> list[str]:
    problems = []
    text = element.get("text")
    if element.get("type") == "button" and len(text["text"]) > LIMITS["button"]:
        problems.append(f"{where}: button text over {LIMITS['button']}")
    if len(str(element.get("value", ""))) > 2000 or len(element.get("action_id", "")) > 255:
        problems.append(f"{where}: value or action_id too long")
    options = element.get("options", [])
    if len(options) > {"overflow": 5, "checkboxes": 10, "radio_buttons": 10}.get(element.get("type"), 100):
        problems.append(f"{where}: {len(options)} options in a {element.get('type')}")
    for opt in [*options, *element.get("initial_options", []), element.get("initial_option")]:
        if opt and (len(opt["text"]["text"]) > LIMITS["option"] or len(opt["value"]) > 150
                    or len((opt.get("description") or {}).get("text", "")) > LIMITS["description"]):
            problems.append(f"{where}: an option over its limits")
    if len((element.get("placeholder") or {}).get("text", "")) > LIMITS["placeholder"]:
        problems.append(f"{where}: placeholder over {LIMITS['placeholder']}")
    if len(element.get("initial_value", "")) > element.get("max_length", 3000):
        problems.append(f"{where}: initial value longer than the input's max_length")
    confirm = element.get("confirm")
    if confirm:
        for key, limit in (("title", "confirm_title"), ("text", "confirm_text"), ("confirm", "confirm_button"),
                           ("deny", "confirm_button")):
            if len(confirm[key]["text"]) > LIMITS[limit]:
                problems.append(f"{where}: confirm {key} over {LIMITS[limit]}")
    return problems


def mrkdwn_texts(surface: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string Slack reads as mrkdwn: mrkdwn text objects, and a message's notification text."""
    if isinstance(surface, dict):
        if surface.get("type") == "mrkdwn":
            yield surface["text"], where
        for key, value in surface.items():
            if key == "text" and isinstance(value, str) and "blocks" in surface:
                yield value, f"{where}.text"
            elif key != "private_metadata":
                yield from mrkdwn_texts(value, f"{where}.{key}")
    elif isinstance(surface, list):
        for n, value in enumerate(surface):
            yield from mrkdwn_texts(value, f"{where}[{n}]")


def surface_problems(surface: Any, where: str) -> list[str]:
    """Everything wrong with one built surface."""
    problems = limit_problems(surface, where)
    for text, at in mrkdwn_texts(surface, where):
        problems += markup_problems(text, at)
    return problems


# ---- a hostile world, in memory (builders are pure: objects in, blocks out) ---------------------


@dataclass
class World:
    """Records whose every free-text field holds `text`."""

    text: str

    def asset(self, kind: AssetKind = AssetKind.SYSTEM, asset_id: int = 7, **fields: Any) -> Asset:
        """An asset of `kind` with hostile text in every free-text field and detail."""
        fields_of_kind = DETAILS_BY_KIND[kind].model_fields
        details = {name: self.text for name in fields_of_kind}
        choices = {"doc_type": DocType.MODEL_CARD.value, "environment": Environment.PRODUCTION.value,
                   "url": "https://docs.example.com/" + self.text}
        details |= {name: value for name, value in choices.items() if name in fields_of_kind}
        values = {"id": asset_id, "kind": kind, "name": self.text, "slug": f"asset-{asset_id}",
                  "description": self.text, "owner_id": OWNER, "team": self.text, "location_uri": self.text,
                  "version": self.text, "license": self.text, "sensitivity": Sensitivity.RESTRICTED,
                  "contains_personal_data": True, "status": AssetStatus.ACTIVE, "details": details,
                  "risk_tier": RiskTier.HIGH, "effective_tier": RiskTier.HIGH, "created_by": OWNER,
                  "created_at": NOW, "updated_at": NOW, "next_review_due": NOW - timedelta(days=3)}
        return Asset(**{**values, **fields})

    def request(self, status: RequestStatus = RequestStatus.PENDING, request_id: int = 3) -> AccessRequest:
        """An emergency renewal request with a hostile justification (and note, once resolved)."""
        return AccessRequest(id=request_id, asset_id=7, requester_id=REQUESTER, level=AccessLevel.READ,
                             duration_hours=24,
                             justification=self.text, emergency=True, status=status, renews_grant_id=2,
                             created_at=NOW, resolved_by=APPROVER if status != RequestStatus.PENDING else "",
                             resolution_note=self.text if status != RequestStatus.PENDING else "",
                             expires_at=NOW + timedelta(days=7))

    def steps(self) -> list[ApprovalStep]:
        """Two steps, one rerouted with a hostile note, one approved."""
        return [ApprovalStep(id=1, request_id=3, position=0, group="step_one", approvers=[APPROVER],
                             rerouted=self.text),
                ApprovalStep(id=2, request_id=3, position=1, group="step_two", approvers=[OTHER_APPROVER],
                             approved_by=OTHER_APPROVER, approved_at=NOW)]

    def grant(self, status: GrantStatus = GrantStatus.REVOKED, grant_id: int = 2) -> Grant:
        """An emergency grant ended by the owner with a hostile reason."""
        return Grant(id=grant_id, request_id=3, asset_id=7, grantee_id=REQUESTER, level=AccessLevel.USE, emergency=True,
                     status=status, granted_at=NOW, expires_at=NOW + timedelta(days=1), ended_at=NOW,
                     ended_by=OWNER, end_reason=self.text)

    def job(self, status: ProvisioningStatus) -> ProvisioningJob:
        """A webhook job whose connector and last error (the receiver's answer) are hostile."""
        return ProvisioningJob(id=4, grant_id=2, action=ProvisioningAction.GRANT, connector=self.text,
                               connector_type=ConnectorType.WEBHOOK, status=status, attempts=3, created_at=NOW,
                               last_error=self.text, confirmed_by=OWNER, completed_at=NOW)

    def facts(self, status: RequestStatus = RequestStatus.PENDING) -> RequestFacts:
        """A request with everything its messages show."""
        return RequestFacts(request=self.request(status), asset=self.asset(), steps=self.steps(),
                            upstream=[self.asset(AssetKind.DATASET, 8)], grant=self.grant(GrantStatus.PROVISIONING),
                            jobs=[self.job(ProvisioningStatus.FAILED)])

    def emergency(self, review: bool) -> EmergencyFacts:
        """A break-glass request, reviewed or not."""
        decision = Decision(id=9, request_id=3, approver_id=OWNER, outcome="confirm", decided_at=NOW)
        return EmergencyFacts(request=self.request(RequestStatus.APPROVED), asset=self.asset(),
                              grant=self.grant(GrantStatus.ACTIVE if review else GrantStatus.REVOKED),
                              review=decision if review else None, alerted=True)

    def card(self) -> AssetCard:
        """An asset card with lineage both ways, documents and a classification, all hostile."""
        doc = self.asset(AssetKind.DOCUMENTATION, 9)
        record = Classification(id=10, asset_id=7, tier=RiskTier.HIGH, answers={"notes": self.text},
                                transparency_flags=["interacts_with_people"], rationale=self.text,
                                classified_by=OWNER, classified_at=NOW)
        return AssetCard(asset=self.asset(), upstream=[(EdgeType.USES, self.asset(AssetKind.MODEL, 11))],
                         downstream=[(EdgeType.USES, self.asset(AssetKind.SYSTEM, 12))],
                         docs=[(DocType.MODEL_CARD, doc), (DocType.DATASHEET, None)],
                         tier_sources=[self.asset(AssetKind.SYSTEM, 13)],
                         unclassified_systems=[self.asset(AssetKind.SYSTEM, 14)], classification=record,
                         extra_docs=[doc])

    def tree(self) -> LineageTree:
        """A lineage tree with hidden children and levels."""
        leaf = TreeNode(asset=self.asset(AssetKind.DATASET, 15), edges=(EdgeType.TRAINED_ON,), depth=2, below=3)
        child = TreeNode(asset=self.asset(AssetKind.MODEL, 16), edges=(EdgeType.USES,), depth=1, children=[leaf],
                         hidden=2)
        return LineageTree(root=TreeNode(asset=self.asset(), children=[child]), direction=Direction.UP,
                           max_depth=5, levels_hidden=1)


def _campaign(items: int = 25) -> tuple[RecertCampaign, list[tuple[RecertItem, Grant]]]:
    campaign = RecertCampaign(id=5, asset_id=7, owner_id=OWNER, period=NOW, started_at=NOW - timedelta(days=20))
    return campaign, [(RecertItem(id=n, campaign_id=5, grant_id=n),
                       Grant(id=n, request_id=n, asset_id=7, grantee_id=REQUESTER, level=AccessLevel.READ,
                             granted_at=NOW, expires_at=NOW)) for n in range(items)]


def _submitted(w: World) -> dict[str, Any]:
    """An asset form as Slack sends it back on submit, every text field holding the hostile text."""
    view = forms.asset_form_view(kind=AssetKind.MODEL, metadata="{}", owner_id=OWNER, asset=w.asset(AssetKind.MODEL))
    state = {b["block_id"]: {b["element"]["action_id"]: {"type": "plain_text_input", "value": w.text}}
             for b in view["blocks"] if b["type"] == "input" and b["element"]["type"] == "plain_text_input"}
    return {**view, "id": "V1", "hash": "h", "state": {"values": state}}


Surfaces = list[Any]
BUILDERS: dict[str, Callable[[World], Surfaces]] = {
    "access.approval_message": lambda w: [access.approval_message(w.facts(s), approver=a, reminder=True)
                                          for s in RequestStatus for a in (APPROVER, OTHER_APPROVER)],
    "access.decision_refused_message": lambda w: [access.decision_refused_message(message=w.text, decided_by=""),
                                                  access.decision_refused_message(message=w.text,
                                                                                  decided_by=w.text)],
    "access.deny_modal": lambda w: [access.deny_modal(request_id=3, metadata='{"request_id":3}')],
    "access.emergency_checkbox": lambda w: [[access.emergency_checkbox(4, ticked=True)]],
    "access.grant_news": lambda w: [access.grant_news(w.grant(s), w.asset(), t) for s in GrantStatus for t in
                                    ("grant_active", "grant_expiring", "grant_expired", "grant_revoked")],
    "access.my_access_blocks": lambda w: [access.my_access_blocks(
        grants=[w.grant(GrantStatus.ACTIVE, n) for n in range(25)],
        requests=[w.request(request_id=n) for n in range(25)], assets={7: w.asset()})],
    "access.pending_approval_blocks": lambda w: [access.pending_approval_blocks(
        [w.request(request_id=n) for n in range(15)], {7: w.asset()})],
    "access.request_filed_message": lambda w: [access.request_filed_message(w.facts(s)) for s in RequestStatus],
    "access.request_modal": lambda w: [access.request_modal(
        asset=w.asset(), durations_days=[1, 7], approval_steps=["owner", "step_one"], metadata="{}",
        emergency_hours=4, emergency=True)],
    "access.requester_news": lambda w: [access.requester_news(w.facts(s), t) for s in RequestStatus for t in
                                        ("request_approved", "request_denied", "request_expired",
                                         "request_escalated")],
    "access.revoke_modal": lambda w: [access.revoke_modal(grant=w.grant(GrantStatus.ACTIVE), asset=w.asset(),
                                                          metadata="{}")],
    "access.revoked_modal": lambda w: [access.revoked_modal(grant=w.grant())],
    "assets.asset_card": lambda w: [assets.asset_card(w.card(), can_edit=True, can_classify=True, can_request=True,
                                                      grants=[w.grant(GrantStatus.ACTIVE, n) for n in range(12)])],
    "assets.asset_list": lambda w: [assets.asset_list([w.asset(asset_id=n) for n in range(25)], title="Found",
                                                      empty="none")],
    "assets.grant_blocks": lambda w: [assets.grant_blocks([w.grant(GrantStatus.ACTIVE, n) for n in range(12)])],
    "assets.not_found": lambda w: [assets.not_found(w.text, ["asset-7", "asset-8"])],
    "classify.classification_result_view": lambda w: [classify.classification_result_view(
        asset=w.asset(), outcome=RiskOutcome(tier=RiskTier.HIGH, reasons=[w.text]), inherited=3)],
    "classify.classify_view": lambda w: [classify.classify_view(asset=w.asset(), metadata="{}",
                                                                previous=w.card().classification)],
    "emergency.emergency_alert": lambda w: [emergency.emergency_alert(w.emergency(r)) for r in (True, False)],
    "emergency.emergency_filed": lambda w: [emergency.emergency_filed(w.emergency(r)) for r in (True, False)],
    "emergency.emergency_review": lambda w: [emergency.emergency_review(w.emergency(r)) for r in (True, False)],
    "forms.asset_form_view": lambda w: [forms.asset_form_view(
        kind=k, metadata="{}", owner_id=OWNER, asset=w.asset(k),
        lineage={EdgeType.USES: [w.asset(AssetKind.MODEL, 11)]}) for k in AssetKind],
    "forms.asset_option": lambda w: [[{"type": "section", "text": {"type": "mrkdwn", "text": "x"},
                                       "accessory": {"type": "static_select", "action_id": "a",
                                                     "options": [forms.asset_option(w.asset())]}}]],
    "forms.kind_options": lambda w: [[{"type": "section", "text": {"type": "mrkdwn", "text": "x"},
                                       "accessory": {"type": "static_select", "action_id": "a",
                                                     "options": forms.kind_options()}}]],
    "forms.kind_picker_view": lambda w: [forms.kind_picker_view(metadata="{}")],
    "forms.refilled_view": lambda w: [forms.refilled_view(_submitted(w), w.text, {"name": w.text, "": w.text})],
    "forms.saved_view": lambda w: [forms.saved_view(w.asset(), registered=r) for r in (True, False)],
    "forms.saving_view": lambda w: [forms.saving_view(_submitted(w), "Saving", w.text),
                                    forms.saving_view(_submitted(w), "Classifying")],
    "help.help_blocks": lambda w: [help.help_blocks(intro=None)],
    "home.home_view": lambda w: [home.home_view(
        owned=[w.asset(asset_id=n) for n in range(20)], due=[w.asset(asset_id=n) for n in range(20)], now=NOW,
        approvals=[w.request(request_id=n) for n in range(12)], approval_assets={7: w.asset()})],
    "lineage.impact_notice": lambda w: [lineage.impact_notice(
        dataset=w.asset(AssetKind.DATASET, 8), affected=[Affected(asset=w.asset(), grants=(w.grant(),) * 10)] * 25,
        changes={RESTRICTED: [w.text, "restricted"]}, actor=OWNER, recertify={2})],
    "lineage.lineage_blocks": lambda w: [lineage.lineage_blocks(w.tree())],
    "provisioning.manual_task_message": lambda w: [provisioning.manual_task_message(
        JobFacts(job=w.job(s), grant=w.grant(), asset=w.asset())) for s in ProvisioningStatus],
    "provisioning.provisioning_failed_message": lambda w: [provisioning.provisioning_failed_message(
        JobFacts(job=w.job(s), grant=w.grant(), asset=w.asset())) for s in ProvisioningStatus],
    "recertification.campaign_message": lambda w: [recertification.campaign_message(
        campaign=_campaign()[0], asset=w.asset(), items=_campaign()[1])],
    "recertification.escalation_message": lambda w: [recertification.escalation_message(
        campaign=_campaign()[0], asset=w.asset(), grants=[w.grant()] * 30, as_of=NOW)],
    "recertification.orphan_message": lambda w: [recertification.orphan_message(
        asset=w.asset(), orphan=OrphanedAsset(id=8, asset_id=7, former_owner_id=OWNER, flagged_at=NOW,
                                              reason="deactivated", open=o, taken_by=REQUESTER, taken_at=NOW))
        for o in (True, False)],
    "report.report_sent": lambda w: [report.report_sent(Report(now=NOW), "steward-report.html")],
    "report.report_summary": lambda w: [report.report_summary(Report(now=NOW))],
    "reviews.nudge_message": lambda w: [reviews.nudge_message(
        owner_id=OWNER, rows=[ReviewRow(asset=w.asset(), missing_docs=[DocType.MODEL_CARD]),
                              ReviewRow(asset=w.asset(asset_id=8), state=AssetReview(
                                  asset_id=8, last_action="reviewed", last_action_by=OWNER, last_action_at=NOW))]
        + [ReviewRow(asset=w.asset(asset_id=n)) for n in range(20, 80)], message_id=1, as_of=NOW)],
    "reviews.overdue_message": lambda w: [reviews.overdue_message(rows=[(w.asset(), 20)] * 45, more=5)],
    "reviews.retire_confirm_view": lambda w: [reviews.retire_confirm_view(asset=w.asset(), active_grants=2,
                                                                         metadata="{}")],
}
# Builders checked another way, and why.
EXEMPT = {"messages.render_outbox": "reads stored records and hands them to the builders above; "
                                    "test_every_message_a_hostile_story_sends_is_escaped renders it"}
BLOCK_RETURNS = {"dict[str, Any]", "list[Block]", "Block", "list[dict[str, Any]]", "Content"}


def discovered_builders() -> set[str]:
    """Every public function in bot/views (but the primitives in common.py) that returns Block Kit."""
    found = set()
    for info in pkgutil.iter_modules(bot.views.__path__):
        if info.name == "common":
            continue  # section(), button()…: primitives that take text already escaped, by contract
        module = importlib.import_module(f"bot.views.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__ and not name.startswith("_") \
                    and str(inspect.signature(fn).return_annotation) in BLOCK_RETURNS:
                found.add(f"{info.name}.{name}")
    return found


def test_every_builder_is_checked():
    missing = discovered_builders() - set(BUILDERS) - set(EXEMPT)
    assert not missing, f"give these builders hostile input in BUILDERS: {sorted(missing)}"
    assert not set(BUILDERS) - discovered_builders(), "BUILDERS names a builder that no longer exists"


@pytest.mark.parametrize("text", [HOSTILE, HUGE], ids=["hostile", "hostile-10k"])
@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_a_builder_escapes_user_text_and_keeps_within_block_kit_limits(builder, text, figures):
    surfaces = BUILDERS[builder](World(text))
    problems = [p for n, s in enumerate(surfaces) for p in surface_problems(s, f"{builder}#{n}")]
    assert not problems, "\n".join(problems[:10])
    figures["surfaces_checked"] += len(surfaces)


def test_the_check_catches_what_it_should():
    # Each of these must be refused, or the tests above prove nothing.
    assert markup_problems("<!channel>", "t") and markup_problems(f"<@{EVIL_USER}>", "t")
    assert markup_problems(f"<https://{EVIL_HOST}|x>", "t") and markup_problems("a & b", "t")
    assert not markup_problems("&lt;!channel&gt; <@U0OWNER1> <!date^1^{date_short}|2026-01-01>\n>quoted", "t")
    assert limit_problems([{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}], "t")


# ---- the same text through the app -------------------------------------------------------------


def test_slash_command_answers_escape_what_was_typed(harness, figures):
    for text in ("search", "asset", "edit", "classify", "request", "lineage", "register", ""):
        harness.command(f"{text} {HOSTILE}".strip(), user=OWNER)
    replies = harness.replies()
    assert len(replies) >= 7
    problems = [p for n, reply in enumerate(replies) for p in surface_problems(reply, f"reply#{n}")]
    assert not problems, "\n".join(problems[:10])
    figures["surfaces_checked"] += len(replies)


def test_every_message_a_hostile_story_sends_is_escaped(harness, now, figures):
    # Stored text, within the form's own limits, through the services; every message it implies is drawn.
    engine, policy = harness.ctx.engine, harness.ctx.policy
    short = HOSTILE[:100]
    data = make_asset(engine, policy=policy, now=now, kind="dataset", name=short, slug="hostile-data",
                      description=HUGE[:3000],
                      team=short, license=short, sensitivity="restricted", owner_id=OWNER)
    system = make_asset(engine, policy=policy, now=now, kind="system", name=short, slug="hostile-system",
                        details={"intended_purpose": HUGE[:3000]}, lineage={"uses": [data.id]}, actor=REQUESTER)
    routing = members(policy.groups)
    denied = make_request(engine, system, policy=policy, now=now, members_of=routing, justification=HUGE[:1000])
    deny_request(engine, denied, APPROVER, now=now, reason=HUGE[:1000])
    make_request(engine, data, policy=policy, now=now, members_of=routing, justification=short, level="use")
    rows = [row for row in outbox(engine) if row.payload.get("template") != "redraw"]
    assert {"asset_registered", "approval_request", "request_denied", "request_filed"} <= \
        {row.payload["template"] for row in rows}
    with transaction(engine) as session:
        drawn = [render_outbox(session, row.payload) for row in rows]
    problems = [p for row, content in zip(rows, drawn)
                for p in surface_problems(content, row.payload["template"])]
    assert not problems, "\n".join(problems[:10])
    assert "&lt;!channel&gt;" in json.dumps(drawn)
    figures["surfaces_checked"] += len(drawn)
