"""A synthetic inventory at enterprise scale, inserted in bulk: words with a known spread, so that
searches can be chosen by how many assets they match (rare, common, everywhere)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from bench.common import bulk_insert
from workflows.enums import AssetKind, AssetStatus, Sensitivity
from workflows.models import Asset

START = datetime(2025, 1, 1, tzinfo=UTC)
OWNERS = tuple(f"U{n:08d}" for n in range(1, 201))
TEAMS = ("growth", "risk", "platform", "payments", "search", "vision", "speech", "ads", "fraud", "support")
KINDS = tuple(AssetKind)


def _words(count: int, seed: int) -> tuple[str, ...]:
    """Distinct pronounceable words, the same every run."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    found: dict[str, None] = {}
    while len(found) < count:
        found["".join(rng.choice(syllables) for _ in range(3))] = None
    return tuple(found)


COMMON = _words(50, seed=1)    # one in each name: each matches ~2% of assets
RARE = _words(2000, seed=2)    # one in each name: each matches ~0.05% of assets


def asset_rows(count: int, *, first_id: int = 1) -> Iterator[dict[str, Any]]:
    """`count` asset rows for a bulk insert; asset i is named "<common> <rare> <i>"."""
    for i in range(first_id, first_id + count):
        common, rare = COMMON[i % len(COMMON)], RARE[(i * 7) % len(RARE)]
        at = START + timedelta(seconds=i)
        yield {"id": i, "slug": f"{common}-{rare}-{i}", "kind": KINDS[i % len(KINDS)].value,
               "name": f"{common.title()} {rare} {i}", "description": f"Synthetic asset about {rare} for the benchmark",
               "owner_id": OWNERS[i % len(OWNERS)], "team": TEAMS[i % len(TEAMS)], "location_uri": "", "version": "",
               "license": "", "sensitivity": Sensitivity.INTERNAL.value, "contains_personal_data": False,
               "status": AssetStatus.ACTIVE.value, "details": {}, "created_by": OWNERS[0], "created_at": at,
               "updated_at": at}


def seed_assets(engine: Engine, count: int) -> float:
    """Insert `count` assets (and, on PostgreSQL, move the id sequence past them); return seconds."""
    seconds = bulk_insert(engine, Asset.__table__, asset_rows(count))
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('asset', 'id'), (SELECT max(id) FROM asset))")
            conn.exec_driver_sql("ANALYZE asset")
    return seconds
