"""Inventory services: register, edit, retire, find and describe AI assets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from workflows import audit, impact, lineage, search
from workflows.details import field_errors, validate_details
from workflows.enums import AssetKind, AssetStatus, DocType, EdgeType, RiskTier, Sensitivity
from workflows.errors import Conflict, InvalidInput, NotAllowed, NotFound
from workflows.models import Asset, Classification, Edge
from workflows.outbox import OutboxMethod, add_message
from workflows.policy import Policy
from workflows.slugs import closest, slug_problem, slugify
from workflows.uris import uri_problem

REVIEW_WINDOW = timedelta(days=14)
SEARCH_LIMIT = 10
SEARCH_CANDIDATES = 50
_USER_ID = r"^[UW][A-Z0-9]{2,}$"


@dataclass(frozen=True)
class Actor:
    """Who is acting, and which policy groups the edge resolved them into."""

    user_id: str
    groups: frozenset[str] = frozenset()


class AssetInput(BaseModel):
    """What a form or the CLI hands over to register or edit an asset."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: AssetKind
    name: str = Field(min_length=1, max_length=150)
    slug: str = ""
    description: str = Field(default="", max_length=3000)
    owner_id: str = Field(pattern=_USER_ID)
    team: str = Field(default="", max_length=100)
    location_uri: str = Field(default="", max_length=500)
    version: str = Field(default="", max_length=64)
    license: str = Field(default="", max_length=100)
    sensitivity: Sensitivity = Sensitivity.INTERNAL
    contains_personal_data: bool = False
    status: AssetStatus | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    lineage: dict[EdgeType, list[int]] = Field(default_factory=dict)

    @field_validator("location_uri")
    @classmethod
    def _is_uri(cls, value: str) -> str:
        problem = uri_problem(value) if value else None
        if problem:
            raise ValueError(problem)
        return value


def parse_asset_input(raw: dict[str, Any]) -> AssetInput:
    """Validate raw form values; raise InvalidInput with an error per field."""
    try:
        return AssetInput.model_validate(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        if "owner_id" in errors:
            errors["owner_id"] = "Choose the person who owns this asset."
        raise InvalidInput("Some fields need fixing.", field_errors=errors) from exc


# ---- writing -------------------------------------------------------------------------------------


def register_asset(*, session: Session, data: AssetInput, actor: Actor, now: datetime, policy: Policy,
                   reply_channel: str = "") -> Asset:
    """Add an asset with its lineage, log it, and tell the owner if someone else registered it."""
    details = check_asset_input(data, new=True)
    slug = _claim_slug(session, data.slug or slugify(data.name))
    asset = Asset(
        **data.model_dump(exclude={"slug", "details", "lineage", "status"}),
        slug=slug, details=details, created_by=actor.user_id, created_at=now, updated_at=now,
    )
    session.add(asset)
    _flush_unique(session, slug)
    _replace_lineage(session, asset, data.lineage, actor=actor, now=now)
    _refresh_tiers(session, {asset.id}, policy)
    audit.append_entry(session=session, actor=actor.user_id, action="asset.registered", subject_type="asset",
                       subject_id=asset.id, subject_slug=asset.slug, after=snapshot(session, asset), now=now)
    _notify(session, asset, actor=actor, template="asset_registered", now=now, reply_channel=reply_channel)
    return asset


def update_asset(*, session: Session, asset_id: int, data: AssetInput, actor: Actor, now: datetime,
                 policy: Policy, reply_channel: str = "") -> Asset:
    """Edit an asset and its outgoing lineage; only its owner or an admin may."""
    asset = _get_for_update(session, asset_id)
    ensure_can_edit(asset=asset, actor=actor, policy=policy)
    if data.kind != asset.kind:
        raise InvalidInput("The kind of an asset cannot change.", field_errors={"kind": "Kind is fixed."})
    if asset.status == AssetStatus.RETIRED:
        raise Conflict(f"{asset.slug} is retired and can no longer be edited.")
    details = check_asset_input(data, new=False)
    before = snapshot(session, asset)
    slug = data.slug or asset.slug
    if slug != asset.slug:
        slug = _claim_slug(session, slug)
    affected = lineage.upstream_ids(session=session, start=[asset.id])
    for name, value in data.model_dump(exclude={"slug", "details", "lineage", "kind", "status"}).items():
        setattr(asset, name, value)
    if data.status is not None:
        asset.status = data.status
    asset.slug, asset.details, asset.updated_at = slug, details, now
    session.add(asset)
    _flush_unique(session, slug)
    _replace_lineage(session, asset, data.lineage, actor=actor, now=now)
    # Both ends of a changed edge: what was upstream may lose a tier, what is newly upstream may gain one.
    affected |= lineage.upstream_ids(session=session, start=[asset.id])
    _refresh_tiers(session, affected, policy)
    after = snapshot(session, asset)
    changed = {k for k in after if before.get(k) != after.get(k)}
    if changed:
        audit.append_entry(session=session, actor=actor.user_id, action="asset.updated", subject_type="asset",
                           subject_id=asset.id, subject_slug=asset.slug, now=now,
                           before={k: before.get(k) for k in sorted(changed)},
                           after={k: after[k] for k in sorted(changed)})
    # Marked personal or restricted after models were built from it: tell their owners (workflows/impact.py).
    impact.assess_dataset_change(session=session, dataset=asset, before=before, after=after,
                                 actor_id=actor.user_id, now=now)
    if asset.owner_id != before["owner_id"] and asset.owner_id != actor.user_id:
        add_message(session=session, method=OutboxMethod.DM, user=asset.owner_id, now=now,
                    payload={"template": "asset_owner_changed", "asset_id": asset.id, "actor": actor.user_id})
    _notify(session, asset, actor=actor, template="asset_updated", now=now, reply_channel=reply_channel,
            owner_too=False)
    return asset


def check_asset_input(data: AssetInput, *, new: bool) -> dict[str, Any]:
    """The checks of an asset form that need no database: its kind's details, the slug's shape and the
    status a form may set. Returns the validated details, or raises InvalidInput. Saving checks again."""
    details = validate_details(data.kind, data.details)
    if data.slug or new:
        _slug_shape(data.slug or slugify(data.name), explicit=bool(data.slug))
    if new and data.status not in (None, AssetStatus.ACTIVE):
        raise InvalidInput("New assets start active.", field_errors={"status": "New assets start active."})
    if not new and data.status == AssetStatus.RETIRED:
        message = "Use Retire on the asset card, so grants and reviews end properly."
        raise InvalidInput(message, field_errors={"status": message})
    return details


def retire_asset(*, session: Session, asset_id: int, actor: Actor, now: datetime, policy: Policy,
                 reason: str = "") -> Asset:
    """Mark an asset retired; it stays in the inventory and the log, but is no longer reviewed."""
    asset = _get_for_update(session, asset_id)
    ensure_can_edit(asset=asset, actor=actor, policy=policy)
    if asset.status == AssetStatus.RETIRED:
        raise Conflict(f"{asset.slug} is already retired.")
    before = asset.status
    asset.status, asset.updated_at, asset.next_review_due = AssetStatus.RETIRED, now, None
    session.add(asset)
    session.flush()
    _refresh_tiers(session, lineage.upstream_ids(session=session, start=[asset.id]), policy)
    audit.append_entry(session=session, actor=actor.user_id, action="asset.retired", subject_type="asset",
                       subject_id=asset.id, subject_slug=asset.slug, before={"status": before.value},
                       after={"status": asset.status.value, "reason": reason}, now=now)
    return asset


def record_classification(*, session: Session, asset_id: int, tier: RiskTier, answers: dict[str, Any],
                          flags: list[str], rationale: str, actor: Actor, now: datetime,
                          policy: Policy) -> Classification:
    """Store a system's questionnaire outcome and pass its tier down its lineage."""
    asset = _get_for_update(session, asset_id)
    if asset.kind != AssetKind.SYSTEM:
        raise InvalidInput(f"{asset.slug} is a {asset.kind.label.lower()}; only AI systems are classified. "
                           "Its tier comes from the systems that use it.")
    if asset.status == AssetStatus.RETIRED:
        raise Conflict(f"{asset.slug} is retired.")
    previous = asset.risk_tier
    record = Classification(asset_id=asset.id, tier=tier, answers=answers, transparency_flags=flags,
                            rationale=rationale, classified_by=actor.user_id, classified_at=now)
    session.add(record)
    asset.risk_tier, asset.updated_at = tier, now
    session.add(asset)
    session.flush()
    _refresh_tiers(session, lineage.upstream_ids(session=session, start=[asset.id]), policy)
    audit.append_entry(session=session, actor=actor.user_id, action="asset.classified", subject_type="asset",
                       subject_id=asset.id, subject_slug=asset.slug,
                       before={"tier": previous.value if previous else None},
                       after={"tier": tier.value, "answers": answers, "rationale": rationale}, now=now)
    return record


def ensure_can_edit(*, asset: Asset, actor: Actor, policy: Policy) -> None:
    """Raise NotAllowed unless the actor owns the asset or is in the policy's admin group."""
    if actor.user_id == asset.owner_id or (policy.admin_group and policy.admin_group in actor.groups):
        return
    raise NotAllowed(f"Only the owner of {asset.slug} or a Steward admin can change it.")


def can_edit(*, asset: Asset, actor: Actor, policy: Policy) -> bool:
    """Whether the actor may edit or retire the asset."""
    try:
        ensure_can_edit(asset=asset, actor=actor, policy=policy)
    except NotAllowed:
        return False
    return True


# ---- reading -------------------------------------------------------------------------------------


def get_asset(*, session: Session, asset_id: int) -> Asset:
    """The asset with this id, or NotFound."""
    asset = session.get(Asset, asset_id)
    if asset is None:
        raise NotFound(f"No asset has id {asset_id}.")
    return asset


def find_asset(*, session: Session, slug: str) -> Asset:
    """The asset with this slug, or NotFound carrying the closest slugs."""
    wanted = slug.strip().lower()
    asset = session.exec(select(Asset).where(Asset.slug == wanted)).first()
    if asset:
        return asset
    slugs = list(session.exec(select(Asset.slug)).all())
    raise NotFound(f"No asset is called `{wanted}`.", suggestions=closest(wanted, slugs))


def search_assets(*, session: Session, text: str, limit: int = SEARCH_LIMIT) -> list[Asset]:
    """The best matches for `text` across name, slug, description and team."""
    query = search.parse_query(text)
    if query is None:
        return []
    # The database's full-text index picks and roughly ranks a bounded candidate set; the finer
    # rules (exact, then prefix, then substring; retired last) are applied here, the same on both.
    ids = search.matching_ids(session=session, query=query, limit=SEARCH_CANDIDATES)
    terms = search.split_terms(text)
    exact = Asset.slug == "-".join(terms)
    # Ranked on the few columns the rules read; only the winners are loaded whole (50 whole assets
    # took 5 ms on PostgreSQL, a third of a search).
    candidates = session.exec(select(*_RANKED_COLUMNS).where(or_(col(Asset.id).in_(ids), exact) if ids else exact))
    best = [row.id for row in sorted(candidates.all(), key=lambda row: _rank(row, terms), reverse=True)[:limit]]
    found = {a.id: a for a in session.exec(select(Asset).where(col(Asset.id).in_(best))).all()} if best else {}
    return [found[asset_id] for asset_id in best if asset_id in found]  # one deleted meanwhile is left out


def list_owned(*, session: Session, owner_id: str, include_retired: bool = False) -> list[Asset]:
    """Assets owned by a user, by slug."""
    query = select(Asset).where(Asset.owner_id == owner_id)
    if not include_retired:
        query = query.where(Asset.status != AssetStatus.RETIRED)
    return list(session.exec(query.order_by(Asset.slug)).all())


def reviews_due(*, session: Session, owner_id: str, now: datetime) -> list[Asset]:
    """An owner's assets whose review is due within the reminder window, or overdue, soonest first."""
    return list(session.exec(
        select(Asset).where(Asset.owner_id == owner_id, Asset.status != AssetStatus.RETIRED,
                            col(Asset.next_review_due).is_not(None),
                            Asset.next_review_due <= now + REVIEW_WINDOW)
        .order_by(col(Asset.next_review_due))
    ).all())


def pick_assets(*, session: Session, text: str, kinds: frozenset[AssetKind] | None = None,
                exclude_id: int | None = None, limit: int = 50) -> list[Asset]:
    """Assets for a picker: matching `text` by slug or name, of the given kinds, never retired."""
    query = select(Asset).where(Asset.status != AssetStatus.RETIRED)
    if kinds:
        query = query.where(col(Asset.kind).in_([k.value for k in kinds]))
    if exclude_id is not None:
        query = query.where(Asset.id != exclude_id)
    term = text.strip().lower()
    if term:
        pattern = f"%{search.escape_like(term)}%"
        query = query.where(or_(func.lower(Asset.slug).like(pattern, escape="\\"),
                                func.lower(Asset.name).like(pattern, escape="\\")))
    return list(session.exec(query.order_by(Asset.slug).limit(limit)).all())


@dataclass
class AssetCard:
    """Everything the asset card shows, gathered in one read."""

    asset: Asset
    upstream: list[tuple[EdgeType, Asset]]
    downstream: list[tuple[EdgeType, Asset]]
    docs: list[tuple[DocType, Asset | None]]
    tier_sources: list[Asset]
    unclassified_systems: list[Asset]
    classification: Classification | None
    extra_docs: list[Asset] = field(default_factory=list)

    @property
    def completeness(self) -> int | None:
        """Percent of required documents present, or None when the policy requires none."""
        if not self.docs:
            return None
        return round(100 * sum(1 for _, doc in self.docs if doc) / len(self.docs))


def describe_asset(*, session: Session, asset: Asset, policy: Policy) -> AssetCard:
    """Gather lineage both ways, the documentation checklist and where the tier comes from."""
    outgoing, incoming = lineage.edges_of(session=session, asset_id=asset.id)
    documents = [src for edge, src in incoming if edge.type == EdgeType.DOCUMENTS
                 and src.status != AssetStatus.RETIRED]
    by_type: dict[str, Asset] = {}
    for doc in documents:
        by_type.setdefault(doc.details.get("doc_type", ""), doc)
    required = policy.required_docs(asset.effective_tier, asset.kind)
    checklist = [(doc_type, by_type.get(doc_type.value)) for doc_type in required]
    extra = [doc for doc in documents if doc.details.get("doc_type") not in {d.value for d in required}]
    return AssetCard(
        asset=asset,
        upstream=[(edge.type, target) for edge, target in outgoing],
        downstream=[(edge.type, source) for edge, source in incoming if edge.type != EdgeType.DOCUMENTS],
        docs=checklist,
        tier_sources=_tier_sources(session, asset),
        unclassified_systems=lineage.unclassified_systems_using(session=session, asset_id=asset.id),
        classification=latest_classification(session=session, asset_id=asset.id),
        extra_docs=extra,
    )


def latest_classification(*, session: Session, asset_id: int) -> Classification | None:
    """The questionnaire in force for a system, if any."""
    return session.exec(
        select(Classification).where(Classification.asset_id == asset_id)
        .order_by(col(Classification.classified_at).desc(), col(Classification.id).desc()).limit(1)
    ).first()


def snapshot(session: Session, asset: Asset) -> dict[str, Any]:
    """The asset's recorded state for the decision log: fields, details and outgoing lineage."""
    data = asset.model_dump(mode="json", exclude={"id", "created_at", "updated_at", "created_by",
                                                  "last_reviewed_at", "next_review_due"})
    outgoing, _ = lineage.edges_of(session=session, asset_id=asset.id)
    data["lineage"] = sorted(f"{edge.type.value}:{target.slug}" for edge, target in outgoing)
    return data


# ---- internals -----------------------------------------------------------------------------------


def _slug_shape(slug: str, *, explicit: bool) -> None:
    problem = slug_problem(slug)
    if problem:
        field_name = "slug" if explicit else "name"
        message = problem if explicit else "Use a name with at least one letter or digit."
        raise InvalidInput(message, field_errors={field_name: message})


def _claim_slug(session: Session, slug: str) -> str:
    # Its shape was checked by check_asset_input.
    taken = session.exec(select(Asset).where(Asset.slug == slug)).first()
    if taken:
        message = (f"`{slug}` is already taken by another {taken.kind.label.lower()}. "
                   "Choose another slug, or edit that asset instead.")
        raise Conflict(message, field="slug")
    return slug


def _flush_unique(session: Session, slug: str) -> None:
    # The unique index is the referee when two registrations race for one slug.
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"`{slug}` was just taken by someone else. Choose another slug.", field="slug") from exc


def _get_for_update(session: Session, asset_id: int) -> Asset:
    asset = session.exec(select(Asset).where(Asset.id == asset_id).with_for_update()).first()
    if asset is None:
        raise NotFound(f"No asset has id {asset_id}.")
    return asset


def _replace_lineage(session: Session, asset: Asset, wanted: dict[EdgeType, list[int]], *,
                     actor: Actor, now: datetime) -> None:
    """Make the asset's outgoing edges of each given type exactly `wanted`, refusing bad edges and cycles."""
    errors: dict[str, str] = {}
    current = session.exec(select(Edge).where(Edge.source_id == asset.id)).all()
    for edge_type, target_ids in wanted.items():
        keep = set(dict.fromkeys(target_ids))
        for edge in current:
            if edge.type == edge_type and edge.target_id not in keep:
                session.delete(edge)
        session.flush()
        existing = {e.target_id for e in current if e.type == edge_type}
        for target_id in keep - existing:
            problem = _add_edge(session, asset, edge_type, target_id, actor=actor, now=now)
            if problem:
                errors.setdefault(f"edge:{edge_type.value}", problem)
    if errors:
        raise InvalidInput("Some lineage needs fixing.", field_errors=errors)


def _add_edge(session: Session, asset: Asset, edge_type: EdgeType, target_id: int, *, actor: Actor,
              now: datetime) -> str | None:
    target = session.get(Asset, target_id)
    if target is None:
        return "One of the chosen assets no longer exists."
    if target.id == asset.id:
        return "An asset cannot be linked to itself."
    if target.status == AssetStatus.RETIRED:
        return f"{target.slug} is retired and cannot be linked."
    problem = lineage.edge_problem(asset.kind, edge_type, target.kind)
    if problem:
        return problem
    if lineage.would_create_cycle(session=session, source_id=asset.id, target_id=target.id):
        return f"Linking to {target.slug} would make a cycle: {target.slug} already depends on {asset.slug}."
    session.add(Edge(source_id=asset.id, target_id=target.id, type=edge_type, created_by=actor.user_id,
                     created_at=now))
    session.flush()
    return None


def _refresh_tiers(session: Session, asset_ids: set[int], policy: Policy) -> None:
    lineage.refresh_effective_tiers(session=session, asset_ids=asset_ids)
    for asset in session.exec(select(Asset).where(col(Asset.id).in_(asset_ids))).all():
        schedule_review(asset, policy)
        session.add(asset)
    session.flush()


def schedule_review(asset: Asset, policy: Policy) -> None:
    """Set the next review date from the last review (or creation) and the tier's interval."""
    if asset.status == AssetStatus.RETIRED:
        asset.next_review_due = None
        return
    since = asset.last_reviewed_at or asset.created_at
    asset.next_review_due = since + policy.tier(asset.effective_tier).review_interval


def _tier_sources(session: Session, asset: Asset) -> list[Asset]:
    if asset.effective_tier is None:
        return []
    systems = lineage.downstream_ids(session=session, start=[asset.id])
    return list(session.exec(
        select(Asset).where(col(Asset.id).in_(systems), Asset.kind == AssetKind.SYSTEM,
                            Asset.risk_tier == asset.effective_tier).order_by(Asset.slug)
    ).all())


def _notify(session: Session, asset: Asset, *, actor: Actor, template: str, now: datetime,
            reply_channel: str = "", owner_too: bool = True) -> None:
    payload = {"template": template, "asset_id": asset.id, "actor": actor.user_id}
    add_message(session=session, method=OutboxMethod.EPHEMERAL, channel=reply_channel, user=actor.user_id,
                payload=payload, now=now)
    if owner_too and asset.owner_id != actor.user_id:
        add_message(session=session, method=OutboxMethod.DM, user=asset.owner_id,
                    payload={**payload, "template": f"{template}_owner"}, now=now)


_RANKED_COLUMNS = (Asset.id, Asset.slug, Asset.name, Asset.team, Asset.status, Asset.updated_at)


def _rank(asset: Any, terms: list[str]) -> tuple:
    # `asset`: a row of _RANKED_COLUMNS.
    slug, name = asset.slug, asset.name.lower()
    score = 0
    for term in terms:
        if slug == term or name == term:
            score += 100
        elif slug.startswith(term) or name.startswith(term):
            score += 40
        elif term in slug or term in name:
            score += 25
        elif term in asset.team.lower():
            score += 10
        else:
            score += 5
    active = asset.status != AssetStatus.RETIRED
    return (active, score, asset.updated_at)

