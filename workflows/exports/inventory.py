"""The inventory as rows: every common field, the kind-specific details, tiers and outgoing lineage."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from workflows.details import DETAILS_BY_KIND
from workflows.enums import EdgeType
from workflows.exports.common import BATCH_SIZE, iso
from workflows.models import Asset, Edge

COMMON_FIELDS = (
    "slug", "kind", "name", "description", "owner_id", "team", "location_uri", "version", "license",
    "sensitivity", "contains_personal_data", "status", "risk_tier", "effective_tier", "created_by",
    "created_at", "updated_at", "last_reviewed_at", "next_review_due",
)
# Every kind's detail fields, in the order the kinds and their models declare them (no two kinds share one).
DETAIL_FIELDS = tuple(dict.fromkeys(name for model in DETAILS_BY_KIND.values() for name in model.model_fields))
EDGE_TYPES = tuple(EdgeType)
CSV_COLUMNS = (COMMON_FIELDS + tuple(f"details.{name}" for name in DETAIL_FIELDS)
               + tuple(f"lineage.{edge.value}" for edge in EDGE_TYPES))


@dataclass(frozen=True)
class InventoryItem:
    """One asset with its outgoing lineage as {edge type: [target slugs]}."""

    asset: Asset
    lineage: dict[EdgeType, list[str]]


def count_assets(*, session: Session) -> int:
    """How many assets an inventory export writes."""
    return session.exec(select(func.count()).select_from(Asset)).one()


def iter_inventory(*, session: Session, batch_size: int = BATCH_SIZE) -> Iterator[InventoryItem]:
    """Every asset in slug order with its outgoing lineage, read in batches (keyset on slug)."""
    last_slug = ""
    while True:
        batch = list(session.exec(select(Asset).where(Asset.slug > last_slug).order_by(Asset.slug)
                                  .limit(batch_size)).all())
        if not batch:
            return
        edges = _lineage_of(session, [asset.id for asset in batch])
        for asset in batch:
            yield InventoryItem(asset=asset, lineage=edges.get(asset.id, {}))
        last_slug = batch[-1].slug


def _lineage_of(session: Session, asset_ids: list[int]) -> dict[int, dict[EdgeType, list[str]]]:
    rows = session.exec(
        select(Edge.source_id, Edge.type, Asset.slug).join(Asset, Asset.id == Edge.target_id)
        .where(col(Edge.source_id).in_(asset_ids)).order_by(Edge.source_id, Edge.type, Asset.slug)
    ).all()
    found: dict[int, dict[EdgeType, list[str]]] = defaultdict(lambda: defaultdict(list))
    for source_id, edge_type, slug in rows:
        found[source_id][EdgeType(edge_type)].append(slug)
    return found


def common_values(asset: Asset) -> dict[str, Any]:
    """The common fields of an asset as JSON values (times in UTC ISO 8601, enums as their names)."""
    values: dict[str, Any] = {}
    for name in COMMON_FIELDS:
        value = getattr(asset, name)
        if name in ("created_at", "updated_at", "last_reviewed_at", "next_review_due"):
            value = iso(value) or None
        elif hasattr(value, "value"):
            value = value.value
        values[name] = value
    return values


def json_record(item: InventoryItem) -> dict[str, Any]:
    """One asset for the JSON export: common fields, `details` and `lineage` (every edge type, as slugs)."""
    record = common_values(item.asset)
    record["details"] = dict(item.asset.details)
    record["lineage"] = {edge.value: list(item.lineage.get(edge, [])) for edge in EDGE_TYPES}
    return record


def csv_row(item: InventoryItem) -> list[str]:
    """One asset for the CSV export, in CSV_COLUMNS order; lineage slugs are separated by spaces."""
    values = common_values(item.asset)
    row = [_cell(values[name]) for name in COMMON_FIELDS]
    row += [_cell(item.asset.details.get(name)) for name in DETAIL_FIELDS]
    row += [" ".join(item.lineage.get(edge, [])) for edge in EDGE_TYPES]
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
