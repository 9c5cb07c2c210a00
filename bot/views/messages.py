"""Messages delivered from the outbox, rendered from stored state at delivery time.

`render_outbox` reads the records a payload names and hands them to the pure builders. An "update"
row (payload template "redraw") is never rendered itself: delivery redraws the message it updates
by rendering that original row's payload again, so the redrawn message shows the current state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from workflows import lineage
from workflows.access import DATA_LINEAGE, SENSITIVE, steps_of
from workflows.enums import AssetKind, DocType
from workflows.emergency import CONFIRM
from workflows.impact import affected_assets
from workflows.models import AccessRequest, Asset, Decision, Grant, OutboxMessage, ProvisioningJob
from workflows.outbox import OutboxMethod
from workflows.provisioning import jobs_of

from bot.ids import Action
from bot.views.access import (
    RequestFacts, approval_message, decision_refused_message, grant_news, request_filed_message, requester_news,
)
from bot.views.assets import asset_line
from bot.views.emergency import EmergencyFacts, emergency_alert, emergency_filed, emergency_review
from bot.views.lineage import impact_notice
from bot.views.recertification import campaign_message, escalation_message, orphan_message
from bot.views.reviews import ReviewRow, nudge_message, overdue_message
from bot.views.provisioning import JobFacts, manual_task_message, provisioning_failed_message
from bot.views.common import Block, actions, button, context, escape, section, user

REDRAW = "redraw"
Content = dict[str, Any]


def render_outbox(session: Session, payload: dict[str, Any]) -> Content:
    """Turn an outbox payload into chat.postMessage arguments: text and blocks."""
    template = payload.get("template", "")
    if template == REDRAW:
        raise ValueError("a redraw row is drawn by rendering the payload of the row it updates")
    renderer = _TEMPLATES.get(template)
    if renderer is None:
        raise ValueError(f"unknown outbox template {template!r}")
    return renderer(session, payload)


# ---- inventory -------------------------------------------------------------------------------------


def _asset_message(text_for: Callable[[Asset, str], str]) -> Callable[[Session, dict[str, Any]], Content]:
    def render(session: Session, payload: dict[str, Any]) -> Content:
        asset = session.get(Asset, payload["asset_id"])
        if asset is None:
            return {"text": "An asset Steward told you about no longer exists."}
        text = text_for(asset, payload.get("actor", ""))
        blocks: list[Block] = [section(text), actions(button("View", Action.SHOW_ASSET, str(asset.id)))]
        return {"text": _fallback(text), "blocks": blocks}
    return render


def _registered(asset: Asset, actor: str) -> str:
    return f":white_check_mark: Registered {asset_line(asset)}"


def _registered_owner(asset: Asset, actor: str) -> str:
    return f":wave: {user(actor)} registered {asset_line(asset)} and named you its owner."


def _updated(asset: Asset, actor: str) -> str:
    return f":pencil2: Saved {asset_line(asset)}"


def _owner_changed(asset: Asset, actor: str) -> str:
    return f":wave: {user(actor)} made you the owner of {asset_line(asset)}."


def _classified_owner(asset: Asset, actor: str) -> str:
    return f":scales: {user(actor)} classified {asset_line(asset)}"


def _impact(session: Session, payload: dict[str, Any]) -> Content:
    # The affected assets and who holds access are read as they are now; what changed is the event itself.
    dataset = session.get(Asset, payload["dataset_id"])
    if dataset is None:
        return {"text": "A dataset Steward told you about no longer exists."}
    affected = affected_assets(session=session, asset_ids=payload["asset_ids"])
    return impact_notice(dataset=dataset, affected=affected,
                         changes=payload.get("changes", {}), actor=payload.get("actor", ""),
                         recertify=set(payload.get("recertify_ids", [])))


def _fallback(text: str) -> str:
    # Notifications show the plain text; drop the emoji codes that lead it.
    return text.split(" ", 1)[-1] if text.startswith(":") else text


# ---- access ----------------------------------------------------------------------------------------

_GONE = {"text": "An access request Steward told you about no longer exists."}


def request_facts(session: Session, request_id: int) -> RequestFacts | None:
    """A request with its asset, steps, sensitive upstream data and grant, as they are now."""
    request = session.get(AccessRequest, request_id)
    asset = session.get(Asset, request.asset_id) if request else None
    if request is None or asset is None:
        return None
    grant = session.exec(select(Grant).where(Grant.request_id == request.id)).first()
    # Only the grant this request produced: an extension's grant was set up for an earlier request.
    jobs = jobs_of(session=session, grant_id=grant.id) if grant is not None else []
    if grant is None and request.renews_grant_id:
        grant = session.get(Grant, request.renews_grant_id)
    return RequestFacts(request=request, asset=asset, steps=steps_of(session=session, request_id=request.id),
                        upstream=sensitive_upstream(session, asset), grant=grant, jobs=jobs)


def sensitive_upstream(session: Session, asset: Asset) -> list[Asset]:
    """Datasets upstream of `asset` whose owners the routing treats as data owners (same edges, same test)."""
    ids = lineage.upstream_ids(session=session, start=[asset.id], types=DATA_LINEAGE, include_start=False)
    if not ids:
        return []
    datasets = session.exec(select(Asset).where(col(Asset.id).in_(ids), Asset.kind == AssetKind.DATASET)
                            .order_by(col(Asset.slug))).all()
    return [d for d in datasets if d.sensitivity in SENSITIVE or d.contains_personal_data]


def _approval(session: Session, payload: dict[str, Any], *, reminder: bool = False) -> Content:
    facts = request_facts(session, payload["request_id"])
    if facts is None:
        return _GONE
    return approval_message(facts, approver=payload.get("approver", ""), reminder=reminder)


def _filed(session: Session, payload: dict[str, Any]) -> Content:
    facts = request_facts(session, payload["request_id"])
    if facts and facts.request.emergency:
        return emergency_filed(emergency_facts(session, facts.request.id))
    return request_filed_message(facts) if facts else _GONE


def emergency_facts(session: Session, request_id: int) -> EmergencyFacts | None:
    """A break-glass request with its grant, the first owner review, and whether security was alerted."""
    request = session.get(AccessRequest, request_id)
    asset = session.get(Asset, request.asset_id) if request else None
    if request is None or asset is None:
        return None
    grant = session.exec(select(Grant).where(Grant.request_id == request.id)).first()
    review = session.exec(select(Decision).where(Decision.request_id == request.id, Decision.outcome == CONFIRM)
                          .order_by(col(Decision.decided_at), col(Decision.id))).first()
    posts = session.exec(select(OutboxMessage).where(OutboxMessage.topic == f"request:{request.id}",
                                                     OutboxMessage.method == OutboxMethod.POST)).all()
    alerted = any(row.payload.get("template") == "emergency_alert" for row in posts)
    return EmergencyFacts(request=request, asset=asset, grant=grant, review=review, alerted=alerted)


def _emergency(draw: Callable[[EmergencyFacts], Content]) -> Callable[[Session, dict[str, Any]], Content]:
    def render(session: Session, payload: dict[str, Any]) -> Content:
        facts = emergency_facts(session, payload["request_id"])
        return draw(facts) if facts else _GONE
    return render


def _news(session: Session, payload: dict[str, Any]) -> Content:
    facts = request_facts(session, payload["request_id"])
    return requester_news(facts, payload["template"]) if facts else _GONE


def _grant(session: Session, payload: dict[str, Any]) -> Content:
    grant = session.get(Grant, payload["grant_id"])
    asset = session.get(Asset, grant.asset_id) if grant else None
    if grant is None or asset is None:
        return {"text": "Access Steward told you about no longer exists."}
    return grant_news(grant, asset, payload["template"])


def _job(draw: Callable[[JobFacts], Content]) -> Callable[[Session, dict[str, Any]], Content]:
    def render(session: Session, payload: dict[str, Any]) -> Content:
        job = session.get(ProvisioningJob, payload["job_id"])
        grant = session.get(Grant, job.grant_id) if job else None
        asset = session.get(Asset, grant.asset_id) if grant else None
        if job is None or grant is None or asset is None:
            return {"text": "Access Steward asked you to change no longer exists."}
        return draw(JobFacts(job=job, grant=grant, asset=asset))
    return render


def _refused(session: Session, payload: dict[str, Any]) -> Content:
    return decision_refused_message(message=str(payload.get("message", "")),
                                    decided_by=str(payload.get("decided_by") or ""))


# ---- evidence --------------------------------------------------------------------------------------


def _audit_anchor(session: Session, payload: dict[str, Any]) -> Content:
    # From the payload, not the table: it was written with the anchor, and the post must say exactly
    # what was anchored. The time is UTC ISO, not Slack's localised date: auditors compare it as text.
    text = (f":lock: Decision log anchor: {int(payload['entry_count'])} entries, head hash "
            f"`{escape(str(payload['head_hash']))}` (entry {int(payload['seq'])}), "
            f"as of {escape(str(payload['anchored_at']))}")
    note = "Check it with `steward audit verify --anchors`."
    return {"text": _fallback(text), "blocks": [section(text), context(note)]}


# ---- reviews ---------------------------------------------------------------------------------------


def _review_nudge(session: Session, payload: dict[str, Any]) -> Content:
    from workflows.reviews import review_state

    as_of = datetime.fromisoformat(payload["as_of"])
    # The documentation gaps as the policy in force saw them when the nudge was written.
    gaps = payload.get("missing_docs", {})
    rows = []
    for asset_id in payload.get("asset_ids", []):
        asset = session.get(Asset, asset_id)
        if asset is None:
            continue
        missing = [DocType(d) for d in gaps.get(str(asset_id), []) if d in DocType._value2member_map_]
        rows.append(ReviewRow(asset=asset, state=review_state(session=session, asset_id=asset.id),
                              missing_docs=missing))
    return nudge_message(owner_id=payload.get("owner_id", ""), rows=rows,
                         message_id=int(payload.get("message_id") or 0), as_of=as_of)


def _reviews_overdue(session: Session, payload: dict[str, Any]) -> Content:
    as_of = datetime.fromisoformat(payload["as_of"])
    ids = list(payload.get("asset_ids", []))
    shown = 40
    assets = [a for a in (session.get(Asset, i) for i in ids[:shown]) if a is not None]
    rows = [(a, (as_of - a.next_review_due).days if a.next_review_due else 0) for a in assets]
    return overdue_message(rows=rows, more=max(0, len(ids) - shown))


# ---- recertification and orphans ---------------------------------------------------------------------


def _recert_campaign(session: Session, payload: dict[str, Any]) -> Content:
    from workflows.errors import NotFound
    from workflows.recertification import campaign_facts

    try:
        facts = campaign_facts(session=session, campaign_id=payload["campaign_id"])
    except NotFound:
        return {"text": "A recertification Steward asked you for no longer exists."}
    return campaign_message(campaign=facts.campaign, asset=facts.asset, items=facts.items,
                            page=int(payload.get("page", 0)), pages=int(payload.get("pages", 1)))


def _recert_escalated(session: Session, payload: dict[str, Any]) -> Content:
    from workflows.errors import NotFound
    from workflows.recertification import campaign_facts

    try:
        facts = campaign_facts(session=session, campaign_id=payload["campaign_id"])
    except NotFound:
        return {"text": "A recertification Steward escalated no longer exists."}
    wanted = set(payload.get("grant_ids", []))
    grants = [g for _, g in facts.items if g.id in wanted]
    return escalation_message(campaign=facts.campaign, asset=facts.asset, grants=grants,
                              as_of=datetime.fromisoformat(payload["as_of"]))


def _asset_orphaned(session: Session, payload: dict[str, Any]) -> Content:
    from workflows.orphans import orphan

    row = orphan(session=session, orphan_id=payload["orphan_id"])
    asset = session.get(Asset, row.asset_id) if row else None
    if row is None or asset is None:
        return {"text": "An asset Steward told you about no longer exists."}
    return orphan_message(asset=asset, orphan=row)


_TEMPLATES: dict[str, Callable[[Session, dict[str, Any]], Content]] = {
    "asset_registered": _asset_message(_registered),
    "asset_registered_owner": _asset_message(_registered_owner),
    "asset_updated": _asset_message(_updated),
    "asset_owner_changed": _asset_message(_owner_changed),
    "asset_classified_owner": _asset_message(_classified_owner),
    "impact_notice": _impact,
    "approval_request": _approval,
    "approval_reminder": lambda session, payload: _approval(session, payload, reminder=True),
    "request_filed": _filed,
    "request_approved": _news,
    "request_denied": _news,
    "request_expired": _news,
    "request_escalated": _news,
    "grant_active": _grant,
    "grant_expiring": _grant,
    "grant_expired": _grant,
    "grant_revoked": _grant,
    "decision_refused": _refused,
    "emergency_alert": _emergency(emergency_alert),
    "emergency_review": _emergency(emergency_review),
    "audit_anchor": _audit_anchor,
    "provisioning_manual": _job(manual_task_message),
    "provisioning_failed": _job(provisioning_failed_message),
    "review_nudge": _review_nudge,
    "reviews_overdue": _reviews_overdue,
    "recert_campaign": _recert_campaign,
    "recert_escalated": _recert_escalated,
    "asset_orphaned": _asset_orphaned,
}
