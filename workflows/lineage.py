"""Typed lineage between assets: which edges are allowed, cycles, closures and inherited risk."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from sqlalchemy import Select, bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from workflows.enums import DEPENDENCY_EDGES, AssetKind, AssetStatus, EdgeType, RiskTier, highest_tier
from workflows.models import Asset, Edge

K = AssetKind
# For each edge type: the kinds it may start from, and the kinds it may point to.
EDGE_RULES: dict[EdgeType, tuple[frozenset[AssetKind], frozenset[AssetKind]]] = {
    EdgeType.TRAINED_ON: (frozenset({K.MODEL}), frozenset({K.DATASET})),
    EdgeType.TESTED_ON: (frozenset({K.MODEL, K.SYSTEM}), frozenset({K.DATASET})),
    EdgeType.DERIVED_FROM: (
        frozenset({K.DATASET, K.MODEL, K.ALGORITHM}), frozenset({K.DATASET, K.MODEL, K.ALGORITHM})
    ),
    EdgeType.USES: (
        frozenset({K.SYSTEM, K.MODEL, K.ALGORITHM}),
        frozenset({K.DATASET, K.MODEL, K.ALGORITHM, K.INFRASTRUCTURE, K.SYSTEM}),
    ),
    EdgeType.RUNS_ON: (frozenset({K.MODEL, K.ALGORITHM, K.SYSTEM, K.DATASET}), frozenset({K.INFRASTRUCTURE})),
    EdgeType.DOCUMENTS: (frozenset({K.DOCUMENTATION}), frozenset(K) - {K.DOCUMENTATION}),
}

# The lineage pickers each kind's form offers: edge type -> kinds that can be picked.
FORM_EDGES: dict[AssetKind, dict[EdgeType, frozenset[AssetKind]]] = {
    K.DATASET: {EdgeType.DERIVED_FROM: frozenset({K.DATASET}), EdgeType.RUNS_ON: frozenset({K.INFRASTRUCTURE})},
    K.MODEL: {
        EdgeType.TRAINED_ON: frozenset({K.DATASET}),
        EdgeType.TESTED_ON: frozenset({K.DATASET}),
        EdgeType.DERIVED_FROM: frozenset({K.MODEL}),
        EdgeType.USES: frozenset({K.ALGORITHM}),
        EdgeType.RUNS_ON: frozenset({K.INFRASTRUCTURE}),
    },
    K.ALGORITHM: {
        EdgeType.USES: frozenset({K.DATASET, K.MODEL}),
        EdgeType.DERIVED_FROM: frozenset({K.ALGORITHM}),
        EdgeType.RUNS_ON: frozenset({K.INFRASTRUCTURE}),
    },
    K.INFRASTRUCTURE: {},
    K.DOCUMENTATION: {EdgeType.DOCUMENTS: EDGE_RULES[EdgeType.DOCUMENTS][1]},
    K.SYSTEM: {
        EdgeType.USES: frozenset({K.DATASET, K.MODEL, K.ALGORITHM, K.SYSTEM}),
        EdgeType.TESTED_ON: frozenset({K.DATASET}),
        EdgeType.RUNS_ON: frozenset({K.INFRASTRUCTURE}),
    },
}


def edge_problem(source_kind: AssetKind, edge_type: EdgeType, target_kind: AssetKind) -> str | None:
    """Why this edge makes no sense, or None when it is allowed."""
    sources, targets = EDGE_RULES[edge_type]
    if source_kind not in sources:
        return f"{_a(source_kind).capitalize()} cannot be '{edge_type.label}' anything."
    if target_kind not in targets:
        return f"{_a(source_kind).capitalize()} cannot be '{edge_type.label}' {_a(target_kind)}."
    return None


def _a(kind: AssetKind) -> str:
    label = kind.label.lower()
    return f"{'an' if label[0] in 'aeiou' else 'a'} {label}"


def upstream_ids(*, session: Session, start: Iterable[int], types: Iterable[EdgeType] = DEPENDENCY_EDGES,
                 include_start: bool = True) -> set[int]:
    """Every asset reachable from `start` by following edges from source to target."""
    return _closure(session, list(start), list(types), forward=True, include_start=include_start)


def downstream_ids(*, session: Session, start: Iterable[int], types: Iterable[EdgeType] = DEPENDENCY_EDGES,
                   include_start: bool = True) -> set[int]:
    """Every asset that reaches `start` by following edges from source to target."""
    return _closure(session, list(start), list(types), forward=False, include_start=include_start)


def _closure(session: Session, start: list[int], types: list[EdgeType], *, forward: bool,
             include_start: bool) -> set[int]:
    if not start:
        return set()
    rows = session.execute(_closure_statement(forward), {"start": start, "types": [t.value for t in types]})
    found = {row[0] for row in rows}
    return found | set(start) if include_start else found


@functools.cache
def _closure_statement(forward: bool) -> Select:
    """The recursive walk, built once per direction. Built per call, its CTE, proxied columns and their
    foreign keys were ~70 cyclic objects a walk (~140 per asset card or form save) for the collector."""
    near, far = (Edge.source_id, Edge.target_id) if forward else (Edge.target_id, Edge.source_id)
    starts, types = bindparam("start", expanding=True), bindparam("types", expanding=True)
    seed = sa_select(col(far).label("node")).where(col(near).in_(starts), col(Edge.type).in_(types))
    walk = seed.cte("walk", recursive=True)
    step = sa_select(col(far)).join(walk, col(near) == walk.c.node).where(col(Edge.type).in_(types))
    walk = walk.union(step)
    return sa_select(walk.c.node)


def would_create_cycle(*, session: Session, source_id: int, target_id: int) -> bool:
    """True if adding source -> target closes a loop (the source is already upstream of the target)."""
    if source_id == target_id:
        return True
    return source_id in upstream_ids(session=session, start=[target_id], types=list(EdgeType))


def refresh_effective_tiers(*, session: Session, asset_ids: Iterable[int]) -> dict[int, RiskTier | None]:
    """Recompute the inherited tier of `asset_ids`; return those whose tier changed (id -> new tier)."""
    changed: dict[int, RiskTier | None] = {}
    for asset in session.exec(select(Asset).where(col(Asset.id).in_(list(asset_ids)))).all():
        systems = downstream_ids(session=session, start=[asset.id])
        # A retired system no longer runs, so it no longer imposes its tier.
        tiers = session.exec(
            select(Asset.risk_tier).where(col(Asset.id).in_(systems), Asset.kind == AssetKind.SYSTEM,
                                          Asset.status != AssetStatus.RETIRED)
        ).all()
        tier = highest_tier(tiers)
        if tier != asset.effective_tier:
            asset.effective_tier = tier
            session.add(asset)
            changed[asset.id] = tier
    session.flush()
    return changed


def unclassified_systems_using(*, session: Session, asset_id: int) -> list[Asset]:
    """AI systems that depend on the asset but have no tier yet: a gap to show."""
    systems = downstream_ids(session=session, start=[asset_id])
    return list(session.exec(
        select(Asset).where(col(Asset.id).in_(systems), Asset.kind == AssetKind.SYSTEM,
                            col(Asset.risk_tier).is_(None))
    ).all())


def edges_of(*, session: Session, asset_id: int) -> tuple[list[tuple[Edge, Asset]], list[tuple[Edge, Asset]]]:
    """(outgoing edges with their targets, incoming edges with their sources) of one asset."""
    outgoing = session.exec(
        select(Edge, Asset).join(Asset, Asset.id == Edge.target_id).where(Edge.source_id == asset_id)
        .order_by(Edge.type, Asset.slug)
    ).all()
    incoming = session.exec(
        select(Edge, Asset).join(Asset, Asset.id == Edge.source_id).where(Edge.target_id == asset_id)
        .order_by(Edge.type, Asset.slug)
    ).all()
    return list(outgoing), list(incoming)


