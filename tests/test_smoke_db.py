"""The database fixtures work on both backends."""

from sqlmodel import select

from tests.factories import make_asset
from workflows.db import transaction
from workflows.models import Asset


def test_an_asset_round_trips_with_an_aware_time(engine, policy, now):
    made = make_asset(engine, policy=policy, now=now, name="Churn events")
    with transaction(engine) as session:
        stored = session.exec(select(Asset).where(Asset.id == made.id)).one()
    assert stored.slug == "churn-events"
    assert stored.created_at == now and stored.created_at.tzinfo is not None
