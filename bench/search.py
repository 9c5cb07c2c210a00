"""`/steward search` over a large inventory, on each database's own full-text index.

Seeds the inventory in bulk, then times `inventory.search_assets` (what the slash command calls, in
its own short transaction, as the listener runs it) for searches chosen by how many assets they match,
against the floor of a primary-key lookup of one asset in the same kind of transaction.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import partial
from typing import Any

from sqlalchemy import Engine
from sqlmodel import select

from bench.common import Run, figure, fresh_database, percentile, timings
from bench.inventory_data import COMMON, RARE, seed_assets
from workflows.db import transaction
from workflows.inventory import search_assets
from workflows.models import Asset

NAME = "search"
GOAL = "p95 < 25 ms"


def _queries(assets: int) -> dict[str, list[str]]:
    """Searches by kind, each a list to cycle through."""
    rng = random.Random(11)
    ids = [rng.randint(1, assets) for _ in range(20)]
    return {
        "rare word": [RARE[(i * 7) % len(RARE)] for i in ids],
        "partial word": [RARE[(i * 7) % len(RARE)][:4] for i in ids],
        "common word": [COMMON[i % len(COMMON)] for i in ids],
        "two words": [f"{COMMON[i % len(COMMON)]} {RARE[(i * 7) % len(RARE)]}" for i in ids],
        "slug": [f"{COMMON[i % len(COMMON)]}-{RARE[(i * 7) % len(RARE)]}-{i}" for i in ids],
        "every asset": ["synthetic"],
    }


def _lookup(engine: Engine, rng: random.Random, assets: int) -> None:
    """The floor: one asset by primary key, in a transaction of its own as the listener reads."""
    with transaction(engine) as session:
        session.exec(select(Asset).where(Asset.id == rng.randint(1, assets))).one()


def _search(engine: Engine, texts: Iterator[str], found: list[int]) -> None:
    """One search as `/steward search` runs it; how many it found goes to `found`."""
    with transaction(engine) as session:
        found.append(len(search_assets(session=session, text=next(texts))))


def run(run: Run) -> dict[str, Any]:
    """Seed, search, print; return the figures."""
    assets = run.pick(2_000, 20_000, 100_000)
    repeat = run.pick(10, 40, 100)
    figures: dict[str, Any] = {"assets": assets, "rows": []}
    for backend in run.backends:
        with fresh_database(backend, run, prefix="search") as engine:
            seeded = seed_assets(engine, assets)
            floor = percentile(timings(partial(_lookup, engine, random.Random(3), assets), repeat), 50)
            samples: list[float] = []
            print(f"search on {backend}: {assets:,} assets seeded in {seeded:.1f} s; floor (PK lookup) p50 "
                  f"{floor * 1000:.2f} ms")
            print(f"  {'search':<14} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'found':>6}")
            for kind, texts in _queries(assets).items():
                found: list[int] = []
                kind_samples = timings(partial(_search, engine, iter(texts * repeat), found), repeat)
                samples += kind_samples
                p95 = percentile(kind_samples, 95)
                print(f"  {kind:<14} {percentile(kind_samples, 50) * 1000:8.2f} {p95 * 1000:8.2f}"
                      f" {max(kind_samples) * 1000:8.2f} {min(found):>6}")
                figures[f"{backend} {kind} p95 ms"] = round(p95 * 1000, 3)
            figures["rows"] += [figure(f"{backend} p50", percentile(samples, 50), floor),
                                figure(f"{backend} p95", percentile(samples, 95), floor, GOAL)]
    return figures
