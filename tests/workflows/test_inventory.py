"""Inventory services on a real database: register, update, retire, classify, find and describe."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from tests.factories import (
    ADMIN,
    OTHER,
    OWNER,
    asset_fields,
    classify_system,
    edit_asset,
    make_asset,
    reload,
    retire,
)
from workflows.db import transaction
from workflows.enums import AssetKind, AssetStatus, DocType, EdgeType, RiskTier, Sensitivity
from workflows.errors import Conflict, InvalidInput, NotAllowed, NotFound
from workflows.inventory import (
    SEARCH_LIMIT,
    Actor,
    describe_asset,
    find_asset,
    latest_classification,
    list_owned,
    parse_asset_input,
    pick_assets,
    record_classification,
    register_asset,
    reviews_due,
    search_assets,
    update_asset,
)
from workflows.models import Asset, Classification, DecisionLogEntry, Edge, OutboxMessage

MODELS = (Asset, Edge, Classification, DecisionLogEntry, OutboxMessage)


def _counts(engine) -> dict[str, int]:
    with transaction(engine) as session:
        return {m.__name__: session.exec(select(func.count()).select_from(m)).one() for m in MODELS}


def _register(engine, raw: dict[str, Any], *, policy, now, actor: str = OWNER, reply_channel: str = "") -> Asset:
    with transaction(engine) as session:
        return register_asset(session=session, data=parse_asset_input(raw), actor=Actor(actor), now=now,
                              policy=policy, reply_channel=reply_channel)


def _log(engine) -> list[DecisionLogEntry]:
    with transaction(engine) as session:
        return list(session.exec(select(DecisionLogEntry).order_by(DecisionLogEntry.seq)).all())


def _outbox(engine) -> list[OutboxMessage]:
    with transaction(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())


def _targets(engine, asset) -> set[tuple[str, int]]:
    with transaction(engine) as session:
        return {(e.type.value, e.target_id) for e in session.exec(select(Edge).where(Edge.source_id == asset.id))}


# ---- parsing form values (pure) ------------------------------------------------------------------

BAD_FIELDS = [
    ("empty name", {"name": ""}, "name", "required"),
    ("blank name", {"name": "   "}, "name", "required"),
    ("over-long name", {"name": "n" * 151}, "name", "150 characters"),
    ("over-long description", {"description": "d" * 3001}, "description", "3000 characters"),
    ("over-long team", {"team": "t" * 101}, "team", "100 characters"),
    ("over-long version", {"version": "1" * 65}, "version", "64 characters"),
    ("over-long licence", {"license": "l" * 101}, "license", "100 characters"),
    ("bad owner id", {"owner_id": "bob"}, "owner_id", "owns this asset"),
    ("channel as owner", {"owner_id": "C0CHANNEL"}, "owner_id", "owns this asset"),
    ("lowercase owner id", {"owner_id": "u0owner1"}, "owner_id", "owns this asset"),
    ("bad uri", {"location_uri": "not a uri"}, "location_uri", "spaces"),
    ("uri without scheme", {"location_uri": "bucket/path"}, "location_uri", "scheme"),
    ("uri with nothing after", {"location_uri": "s3://"}, "location_uri", "nothing after"),
    ("unknown kind", {"kind": "spreadsheet"}, "kind", "Choose one of"),
    ("unknown sensitivity", {"sensitivity": "secret"}, "sensitivity", "Choose one of"),
    ("unknown field", {"colour": "blue"}, "colour", "does not apply"),
]


@pytest.mark.parametrize(("overrides", "field", "message"), [b[1:] for b in BAD_FIELDS],
                         ids=[b[0] for b in BAD_FIELDS])
def test_bad_form_values_are_reported_by_field(overrides, field, message):
    with pytest.raises(InvalidInput) as excinfo:
        parse_asset_input(asset_fields(**overrides))
    assert field in excinfo.value.field_errors, excinfo.value.field_errors
    assert message in excinfo.value.field_errors[field]


def test_several_bad_fields_are_all_reported():
    with pytest.raises(InvalidInput) as excinfo:
        parse_asset_input(asset_fields(name="", owner_id="nobody", location_uri="x y"))
    assert set(excinfo.value.field_errors) == {"name", "owner_id", "location_uri"}


def test_good_form_values_are_cleaned():
    data = parse_asset_input(asset_fields(name="  Churn events ", location_uri=" s3://bucket/churn ",
                                          owner_id="W0ENTERPRISE"))
    assert data.name == "Churn events"
    assert data.location_uri == "s3://bucket/churn"
    assert data.sensitivity == Sensitivity.INTERNAL


# ---- register ------------------------------------------------------------------------------------


def test_register_derives_the_slug_from_the_name(engine, policy, now):
    asset = make_asset(engine, policy=policy, now=now, name="Café Churn Events (2024)!")
    stored = reload(engine, asset)
    assert stored.slug == "cafe-churn-events-2024"
    assert stored.status == AssetStatus.ACTIVE
    assert stored.created_by == OWNER and stored.created_at == now and stored.updated_at == now
    assert stored.effective_tier is None and stored.risk_tier is None
    assert stored.next_review_due == now + policy.tier(None).review_interval
    assert stored.details == {"intended_use": "", "collection_process": "", "known_bias": "", "size": ""}


def test_register_uses_an_explicit_slug(engine, policy, now):
    asset = make_asset(engine, policy=policy, now=now, name="Churn events", slug="churn-2024")
    assert reload(engine, asset).slug == "churn-2024"
    with transaction(engine) as session:
        assert find_asset(session=session, slug="churn-2024").id == asset.id


@pytest.mark.parametrize("explicit", [False, True])
def test_a_duplicate_slug_is_a_conflict_on_the_slug_field(engine, policy, now, explicit):
    make_asset(engine, policy=policy, now=now, name="Churn events")
    before = _counts(engine)
    overrides = {"slug": "churn-events", "name": "Something else"} if explicit else {}
    with pytest.raises(Conflict) as excinfo:
        make_asset(engine, policy=policy, now=now, kind="model", **overrides)
    assert excinfo.value.field == "slug"
    assert "`churn-events` is already taken by another dataset" in str(excinfo.value)
    assert _counts(engine) == before


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"slug": "Not A Slug"}, "slug"),
        ({"slug": "trailing-"}, "slug"),
        ({"slug": "x" * 65}, "slug"),
        ({"name": "模型"}, "name"),
        ({"name": "!!!"}, "name"),
    ],
)
def test_a_slug_that_cannot_be_used_is_invalid_input(engine, policy, now, overrides, field):
    with pytest.raises(InvalidInput) as excinfo:
        make_asset(engine, policy=policy, now=now, **overrides)
    assert set(excinfo.value.field_errors) == {field}
    assert _counts(engine)["Asset"] == 0


@pytest.mark.parametrize(
    ("kind", "details", "field", "message"),
    [
        ("documentation", {}, "doc_type", "required"),
        ("documentation", {"doc_type": "model_card"}, "url", "required"),
        ("documentation", {"url": "https://docs.example.com/x"}, "doc_type", "required"),
        ("documentation", {"doc_type": "poem", "url": "https://docs.example.com/x"}, "doc_type", "Choose one of"),
        ("documentation", {"doc_type": "model_card", "url": "s3://bucket/card.pdf"}, "url", "http or https"),
        ("documentation", {"doc_type": "model_card", "url": "https:///card"}, "url", "host"),
        ("documentation", {"doc_type": "model_card", "url": "docs/card.md"}, "url", "scheme"),
        ("system", {}, "intended_purpose", "required"),
        ("system", {"intended_purpose": "   "}, "intended_purpose", "required"),
        ("system", {"intended_purpose": "p" * 3001}, "intended_purpose", "3000 characters"),
        ("dataset", {"doc_type": "datasheet"}, "doc_type", "does not apply"),
        ("model", {"intended_purpose": "x"}, "intended_purpose", "does not apply"),
        ("model", {"task": "t" * 201}, "task", "200 characters"),
        ("infrastructure", {"environment": "moon"}, "environment", "Choose one of"),
    ],
)
def test_kind_specific_details_are_validated(engine, policy, now, kind, details, field, message):
    raw = asset_fields(kind=kind)
    raw["details"] = details
    with pytest.raises(InvalidInput) as excinfo:
        _register(engine, raw, policy=policy, now=now)
    assert message in excinfo.value.field_errors[field], excinfo.value.field_errors
    assert _counts(engine)["Asset"] == 0


@pytest.mark.parametrize(
    ("kind", "details", "stored"),
    [
        ("documentation", {"doc_type": "datasheet", "url": " https://docs.example.com/sheet "},
         {"doc_type": "datasheet", "url": "https://docs.example.com/sheet"}),
        ("system", {"intended_purpose": " Rank leads "}, {"intended_purpose": "Rank leads", "affected_people": ""}),
        ("infrastructure", {"environment": "production", "region": "eu-west-1"},
         {"provider": "", "region": "eu-west-1", "environment": "production"}),
    ],
)
def test_good_details_are_stored_cleaned(engine, policy, now, kind, details, stored):
    raw = asset_fields(kind=kind)
    raw["details"] = details
    assert reload(engine, _register(engine, raw, policy=policy, now=now)).details == stored


def test_a_new_asset_cannot_start_retired(engine, policy, now):
    with pytest.raises(InvalidInput) as excinfo:
        make_asset(engine, policy=policy, now=now, status="retired")
    assert "status" in excinfo.value.field_errors
    assert _counts(engine)["Asset"] == 0


def test_register_stores_lineage(engine, policy, now):
    data = make_asset(engine, policy=policy, now=now, name="Loans")
    gpu = make_asset(engine, policy=policy, now=now, kind="infrastructure", name="GPU pool")
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Scorer",
                       lineage={"trained_on": [data.id, data.id], "runs_on": [gpu.id]})
    assert _targets(engine, model) == {("trained_on", data.id), ("runs_on", gpu.id)}


@pytest.mark.parametrize(
    ("lineage", "field", "message"),
    [
        ({"trained_on": ["DATASET"]}, "edge:trained_on", "cannot be 'trained on'"),   # dataset trained_on
        ({"derived_from": ["OK"], "runs_on": ["OK"]}, "edge:runs_on", "'runs on' a dataset"),
        ({"derived_from": [999_999]}, "edge:derived_from", "no longer exists"),
        ({"derived_from": ["RETIRED"]}, "edge:derived_from", "retired"),
    ],
)
def test_a_failing_register_writes_nothing(engine, policy, now, lineage, field, message):
    ok = make_asset(engine, policy=policy, now=now, name="Good data")
    gone = make_asset(engine, policy=policy, now=now, name="Old data")
    retire(engine, gone, policy=policy, now=now)
    ids = {"OK": ok.id, "DATASET": ok.id, "RETIRED": gone.id}
    wanted = {edge: [ids.get(t, t) for t in targets] for edge, targets in lineage.items()}
    before = _counts(engine)
    with pytest.raises(InvalidInput) as excinfo:
        make_asset(engine, policy=policy, now=now, name="Half written", actor=OTHER, lineage=wanted)
    assert message in excinfo.value.field_errors[field], excinfo.value.field_errors
    assert _counts(engine) == before
    with transaction(engine) as session, pytest.raises(NotFound):
        find_asset(session=session, slug="half-written")


def test_registering_your_own_asset_replies_to_you_only(engine, policy, now):
    asset = _register(engine, asset_fields(), policy=policy, now=now, reply_channel="C0FORMS")
    [reply] = _outbox(engine)
    assert reply.method == "ephemeral"
    assert (reply.user, reply.channel) == (OWNER, "C0FORMS")
    assert reply.payload["asset_id"] == asset.id
    assert reply.sent_at is None and reply.next_attempt_at == now


def test_registering_for_someone_else_also_tells_the_owner(engine, policy, now):
    asset = _register(engine, asset_fields(owner_id=OWNER), policy=policy, now=now, actor=OTHER,
                      reply_channel="C0FORMS")
    rows = _outbox(engine)
    assert sorted((r.method, r.user, r.channel) for r in rows) == [
        ("dm", OWNER, ""), ("ephemeral", OTHER, "C0FORMS")]
    assert all(r.payload["asset_id"] == asset.id and r.payload["actor"] == OTHER for r in rows)
    assert {r.payload["template"] for r in rows if r.method == "dm"} == {"asset_registered_owner"}


def test_register_logs_the_new_state(engine, policy, now):
    data = make_asset(engine, policy=policy, now=now, name="Loans")
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Scorer",
                       lineage={"trained_on": [data.id]})
    entry = _log(engine)[-1]
    assert (entry.action, entry.subject_id, entry.subject_slug, entry.actor) == (
        "asset.registered", model.id, "scorer", OWNER)
    assert entry.before is None
    assert entry.after["name"] == "Scorer" and entry.after["lineage"] == ["trained_on:loans"]


# ---- update ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("actor", "groups"), [(OWNER, frozenset()), (ADMIN, frozenset({"admins"}))])
def test_the_owner_or_an_admin_may_update(engine, policy, now, actor, groups):
    asset = make_asset(engine, policy=policy, now=now)
    later = now + timedelta(hours=1)
    edit_asset(engine, asset, policy=policy, now=later, actor=actor, groups=groups, description="Fresh words")
    stored = reload(engine, asset)
    assert stored.description == "Fresh words"
    assert stored.updated_at == later and stored.created_at == now


@pytest.mark.parametrize("groups", [frozenset(), frozenset({"governance", "security"})])
def test_anyone_else_may_not_update(engine, policy, now, groups):
    asset = make_asset(engine, policy=policy, now=now)
    before = _counts(engine)
    with pytest.raises(NotAllowed) as excinfo:
        edit_asset(engine, asset, policy=policy, now=now, actor=OTHER, groups=groups, description="Mine now")
    assert "Only the owner of churn-events or a Steward admin" in str(excinfo.value)
    assert reload(engine, asset).description == ""
    assert _counts(engine) == before


def test_the_kind_cannot_change(engine, policy, now):
    asset = make_asset(engine, policy=policy, now=now)
    with pytest.raises(InvalidInput) as excinfo:
        edit_asset(engine, asset, policy=policy, now=now, kind="model", details={})
    assert "kind" in excinfo.value.field_errors
    assert reload(engine, asset).kind == AssetKind.DATASET


def test_updating_an_unknown_asset_is_not_found(engine, policy, now):
    with transaction(engine) as session, pytest.raises(NotFound):
        update_asset(session=session, asset_id=4242, data=parse_asset_input(asset_fields()), actor=Actor(OWNER),
                     now=now, policy=policy)


def test_update_replaces_the_lineage_exactly(engine, policy, now):
    a, b, c = (make_asset(engine, policy=policy, now=now, name=n) for n in ("Data A", "Data B", "Data C"))
    gpu = make_asset(engine, policy=policy, now=now, kind="infrastructure", name="GPU pool")
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Scorer",
                       lineage={"trained_on": [a.id, b.id], "tested_on": [c.id], "runs_on": [gpu.id]})
    edit_asset(engine, model, policy=policy, now=now, lineage={"trained_on": [b.id, c.id], "tested_on": []})
    # The given types are now exactly what was asked; a type not given is left alone.
    assert _targets(engine, model) == {("trained_on", b.id), ("trained_on", c.id), ("runs_on", gpu.id)}
    entry = _log(engine)[-1]
    assert entry.before == {"lineage": ["runs_on:gpu-pool", "tested_on:data-c", "trained_on:data-a",
                                        "trained_on:data-b"]}
    assert entry.after == {"lineage": ["runs_on:gpu-pool", "trained_on:data-b", "trained_on:data-c"]}


def test_the_log_of_an_update_holds_only_the_changed_fields(engine, policy, now):
    asset = make_asset(engine, policy=policy, now=now, team="Risk")
    edit_asset(engine, asset, policy=policy, now=now + timedelta(days=1), name="Churn events v2",
               sensitivity="restricted", team="Risk")
    entry = _log(engine)[-1]
    assert entry.action == "asset.updated"
    assert entry.before == {"name": "Churn events", "sensitivity": "internal"}
    assert entry.after == {"name": "Churn events v2", "sensitivity": "restricted"}
    assert reload(engine, asset).slug == "churn-events", "the slug stays when only the name changes"


def test_an_update_that_changes_nothing_logs_nothing(engine, policy, now):
    asset = make_asset(engine, policy=policy, now=now)
    before = len(_log(engine))
    edit_asset(engine, asset, policy=policy, now=now + timedelta(days=1))
    assert len(_log(engine)) == before


def test_an_update_to_a_taken_slug_is_a_conflict(engine, policy, now):
    make_asset(engine, policy=policy, now=now, name="Taken")
    asset = make_asset(engine, policy=policy, now=now, name="Mine")
    with pytest.raises(Conflict) as excinfo:
        edit_asset(engine, asset, policy=policy, now=now, slug="taken")
    assert excinfo.value.field == "slug"
    assert reload(engine, asset).slug == "mine"
    edit_asset(engine, asset, policy=policy, now=now, slug="mine-renamed")
    assert reload(engine, asset).slug == "mine-renamed"


def test_handing_an_asset_over_tells_the_new_owner(engine, policy, now):
    asset = make_asset(engine, policy=policy, now=now)
    before = {r.id for r in _outbox(engine)}
    edit_asset(engine, asset, policy=policy, now=now, owner_id=OTHER)
    new = [r for r in _outbox(engine) if r.id not in before]
    assert sorted((r.method, r.user) for r in new) == [("dm", OTHER), ("ephemeral", OWNER)]
    assert reload(engine, asset).owner_id == OTHER
    with pytest.raises(NotAllowed):
        edit_asset(engine, asset, policy=policy, now=now, owner_id=OWNER, actor=OWNER)


def test_an_ordinary_update_replies_to_the_actor_only(engine, policy, now):
    asset = make_asset(engine, policy=policy, now=now)
    before = {r.id for r in _outbox(engine)}
    edit_asset(engine, asset, policy=policy, now=now, actor=ADMIN, groups=frozenset({"admins"}),
               description="Tidied")
    new = [r for r in _outbox(engine) if r.id not in before]
    assert [(r.method, r.user) for r in new] == [("ephemeral", ADMIN)]


# ---- retire --------------------------------------------------------------------------------------


def test_retire(engine, policy, now):
    asset = make_asset(engine, policy=policy, now=now)
    later = now + timedelta(days=2)
    retire(engine, asset, policy=policy, now=later)
    stored = reload(engine, asset)
    assert stored.status == AssetStatus.RETIRED
    assert stored.next_review_due is None
    assert stored.updated_at == later
    entry = _log(engine)[-1]
    assert (entry.action, entry.before, entry.after["status"]) == ("asset.retired", {"status": "active"}, "retired")
    with pytest.raises(Conflict):
        retire(engine, asset, policy=policy, now=later)
    assert len(_log(engine)) == 2


def test_only_the_owner_or_an_admin_may_retire(engine, policy, now):
    asset = make_asset(engine, policy=policy, now=now)
    with pytest.raises(NotAllowed):
        retire(engine, asset, policy=policy, now=now, actor=OTHER)
    assert reload(engine, asset).status == AssetStatus.ACTIVE


# ---- classification ------------------------------------------------------------------------------


def test_only_systems_are_classified(engine, policy, now):
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Scorer")
    with transaction(engine) as session, pytest.raises(InvalidInput) as excinfo:
        record_classification(session=session, asset_id=model.id, tier=RiskTier.HIGH, answers={}, flags=[],
                              rationale="", actor=Actor(OWNER), now=now, policy=policy)
    assert "only AI systems" in str(excinfo.value)
    assert reload(engine, model).risk_tier is None
    assert _counts(engine)["Classification"] == 0


def test_classifying_an_unknown_asset_is_not_found(engine, policy, now):
    with transaction(engine) as session, pytest.raises(NotFound):
        record_classification(session=session, asset_id=4242, tier=RiskTier.HIGH, answers={}, flags=[],
                              rationale="", actor=Actor(OWNER), now=now, policy=policy)


def test_a_retired_system_is_not_classified(engine, policy, now):
    system = make_asset(engine, policy=policy, now=now, kind="system", name="Old bot")
    retire(engine, system, policy=policy, now=now)
    with pytest.raises(Conflict):
        classify_system(engine, system, "high", policy=policy, now=now)


def test_classification_stores_the_tier_and_keeps_history(engine, policy, now):
    system = make_asset(engine, policy=policy, now=now, kind="system", name="Hiring assistant")
    first = classify_system(engine, system, "limited", policy=policy, now=now)
    second = classify_system(engine, system, "high", policy=policy, now=now + timedelta(days=1), actor=ADMIN)
    stored = reload(engine, system)
    assert stored.risk_tier == RiskTier.HIGH and stored.effective_tier == RiskTier.HIGH
    with transaction(engine) as session:
        history = session.exec(select(Classification).where(Classification.asset_id == system.id)
                               .order_by(Classification.id)).all()
        assert [(c.tier, c.classified_by) for c in history] == [(RiskTier.LIMITED, OWNER), (RiskTier.HIGH, ADMIN)]
        assert history[0].transparency_flags == ["interacts_with_people"]
        assert "Art. 50" in history[0].rationale
        latest = latest_classification(session=session, asset_id=system.id)
        assert latest.id == second.id != first.id
        assert latest.answers == {"annex_iii_areas": ["employment"]}
    entries = [e for e in _log(engine) if e.action == "asset.classified"]
    assert [(e.before, e.after["tier"]) for e in entries] == [({"tier": None}, "limited"),
                                                              ({"tier": "limited"}, "high")]


def test_the_latest_classification_wins_a_tie_on_time(engine, policy, now):
    system = make_asset(engine, policy=policy, now=now, kind="system", name="Hiring assistant")
    classify_system(engine, system, "high", policy=policy, now=now)
    newest = classify_system(engine, system, "minimal", policy=policy, now=now)
    with transaction(engine) as session:
        assert latest_classification(session=session, asset_id=system.id).id == newest.id
        assert latest_classification(session=session, asset_id=system.id + 1000) is None


# ---- finding -------------------------------------------------------------------------------------


def test_find_asset_by_slug(engine, policy, now):
    asset = make_asset(engine, policy=policy, now=now, name="Churn events")
    with transaction(engine) as session:
        assert find_asset(session=session, slug="churn-events").id == asset.id
        assert find_asset(session=session, slug="  Churn-Events ").id == asset.id


def test_find_asset_not_found_suggests_close_slugs(engine, policy, now):
    for name in ("Churn events", "Churn model", "Fraud scorer"):
        make_asset(engine, policy=policy, now=now, name=name)
    with transaction(engine) as session:
        with pytest.raises(NotFound) as excinfo:
            find_asset(session=session, slug="churn-event")
        assert excinfo.value.suggestions[0] == "churn-events"
        assert "fraud-scorer" not in excinfo.value.suggestions
        with pytest.raises(NotFound) as excinfo:
            find_asset(session=session, slug="quantum-ledger")
        assert excinfo.value.suggestions == []


def _slugs(assets) -> list[str]:
    return [a.slug for a in assets]


def _search(engine, text: str) -> list[str]:
    with transaction(engine) as session:
        return _slugs(search_assets(session=session, text=text))


def test_search_ranks_exact_then_prefix_then_substring_then_team_then_description(engine, policy, now):
    make_asset(engine, policy=policy, now=now, name="Payments", description="Used against fraud")
    make_asset(engine, policy=policy, now=now, name="Ledger", team="Fraud")
    make_asset(engine, policy=policy, now=now, name="Card fraud rules")
    make_asset(engine, policy=policy, now=now, name="Fraud scorer")
    make_asset(engine, policy=policy, now=now, name="Fraud")
    make_asset(engine, policy=policy, now=now, name="Unrelated")
    assert _search(engine, "fraud") == ["fraud", "fraud-scorer", "card-fraud-rules", "ledger", "payments"]
    assert _search(engine, "FRAUD") == _search(engine, "fraud")


def test_search_puts_retired_assets_last(engine, policy, now):
    old = make_asset(engine, policy=policy, now=now, name="Fraud")
    make_asset(engine, policy=policy, now=now, name="Notes", description="fraud")
    retire(engine, old, policy=policy, now=now)
    assert _search(engine, "fraud") == ["notes", "fraud"]


def test_search_returns_at_most_ten(engine, policy, now):
    for i in range(SEARCH_LIMIT + 2):
        make_asset(engine, policy=policy, now=now, name=f"Events {i}")
    assert SEARCH_LIMIT == 10
    assert len(_search(engine, "events")) == 10


def test_search_needs_every_word(engine, policy, now):
    make_asset(engine, policy=policy, now=now, name="Churn model", kind="model")
    make_asset(engine, policy=policy, now=now, name="Churn events")
    make_asset(engine, policy=policy, now=now, name="Fraud model", kind="model")
    make_asset(engine, policy=policy, now=now, name="Scorer", team="Churn", description="A model")
    assert sorted(_search(engine, "churn model")) == ["churn-model", "scorer"]
    assert _search(engine, "model churn")[0] == "churn-model"
    assert _search(engine, "churn quantum") == []


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_search_finds_nothing(engine, policy, now, text):
    make_asset(engine, policy=policy, now=now)
    assert _search(engine, text) == []


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("%", ["growth"]),
        ("100%", ["growth"]),
        ("_", ["raw-events"]),
        ("raw_e", ["raw-events"]),
        ("\\", ["windows-paths"]),
    ],
)
def test_like_wildcards_in_a_search_are_literal(engine, policy, now, query, found):
    make_asset(engine, policy=policy, now=now, name="Growth", description="100% of signups")
    make_asset(engine, policy=policy, now=now, name="Growth copy", description="1000 of signups")
    make_asset(engine, policy=policy, now=now, name="Raw events", description="table raw_events")
    make_asset(engine, policy=policy, now=now, name="Rawxevents", description="table rawxevents")
    make_asset(engine, policy=policy, now=now, name="Windows paths", description=r"C:\data")
    assert _search(engine, query) == found


def test_list_owned(engine, policy, now):
    b = make_asset(engine, policy=policy, now=now, name="B data")
    make_asset(engine, policy=policy, now=now, name="A data")
    make_asset(engine, policy=policy, now=now, name="C data", owner_id=OTHER)
    retire(engine, b, policy=policy, now=now)
    with transaction(engine) as session:
        assert _slugs(list_owned(session=session, owner_id=OWNER)) == ["a-data"]
        assert _slugs(list_owned(session=session, owner_id=OWNER, include_retired=True)) == ["a-data", "b-data"]
        assert _slugs(list_owned(session=session, owner_id=OTHER)) == ["c-data"]
        assert list_owned(session=session, owner_id="U0NOBODY") == []


def test_reviews_due_within_the_window(engine, policy, now):
    interval = policy.tier(None).review_interval

    def due_in(days: int, name: str, **kw) -> Asset:
        # Registered so that the first review falls `days` from now.
        return make_asset(engine, policy=policy, now=now + timedelta(days=days) - interval, name=name, **kw)

    due_in(14, "Due in fourteen")
    due_in(15, "Due in fifteen")
    due_in(-3, "Overdue")
    due_in(0, "Due today")
    gone = due_in(-10, "Retired overdue")
    retire(engine, gone, policy=policy, now=now)
    due_in(-5, "Someone else's", owner_id=OTHER)
    with transaction(engine) as session:
        due = reviews_due(session=session, owner_id=OWNER, now=now)
        assert _slugs(due) == ["overdue", "due-today", "due-in-fourteen"]
        assert due[0].next_review_due == now - timedelta(days=3)
        assert _slugs(reviews_due(session=session, owner_id=OWNER, now=now + timedelta(days=1))) == [
            "overdue", "due-today", "due-in-fourteen", "due-in-fifteen"]
        assert _slugs(reviews_due(session=session, owner_id=OTHER, now=now)) == ["someone-else-s"]


def test_pick_assets(engine, policy, now):
    data = make_asset(engine, policy=policy, now=now, name="Loan data")
    make_asset(engine, policy=policy, now=now, name="Loan model", kind="model")
    make_asset(engine, policy=policy, now=now, name="Loan code", kind="algorithm")
    old = make_asset(engine, policy=policy, now=now, name="Loan archive")
    make_asset(engine, policy=policy, now=now, name="Other", description="loan stuff")
    retire(engine, old, policy=policy, now=now)
    with transaction(engine) as session:
        assert _slugs(pick_assets(session=session, text="loan")) == ["loan-code", "loan-data", "loan-model"]
        assert _slugs(pick_assets(session=session, text="",
                                  kinds=frozenset({AssetKind.DATASET}))) == ["loan-data", "other"]
        assert _slugs(pick_assets(session=session, text="LOAN",
                                  kinds=frozenset({AssetKind.MODEL, AssetKind.ALGORITHM}))) == [
            "loan-code", "loan-model"]
        assert _slugs(pick_assets(session=session, text="loan", exclude_id=data.id)) == ["loan-code", "loan-model"]
        assert _slugs(pick_assets(session=session, text="loan", limit=1)) == ["loan-code"]
        assert pick_assets(session=session, text="%") == []


# ---- describing ----------------------------------------------------------------------------------


def _doc(engine, policy, now, name: str, doc_type: str, target: Asset, **kw) -> Asset:
    return make_asset(engine, policy=policy, now=now, kind="documentation", name=name,
                      details={"doc_type": doc_type, "url": "https://docs.example.com/" + doc_type},
                      lineage={"documents": [target.id]}, **kw)


def _card(engine, policy, asset):
    with transaction(engine) as session:
        return describe_asset(session=session, asset=session.get(Asset, asset.id), policy=policy)


def test_a_document_with_the_right_type_and_edge_satisfies_the_checklist(engine, policy, now):
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Scorer")
    card = _card(engine, policy, model)
    assert card.docs == [(DocType.MODEL_CARD, None)]
    assert card.completeness == 0
    doc = _doc(engine, policy, now, "Scorer card", "model_card", model)
    card = _card(engine, policy, model)
    assert [(t, d.id if d else None) for t, d in card.docs] == [(DocType.MODEL_CARD, doc.id)]
    assert card.completeness == 100
    assert card.downstream == [], "a document is not something that depends on the model"
    assert card.extra_docs == []


def test_a_document_without_an_edge_does_not_count(engine, policy, now):
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Scorer")
    other = make_asset(engine, policy=policy, now=now, kind="model", name="Another")
    _doc(engine, policy, now, "Another card", "model_card", other)
    assert _card(engine, policy, model).completeness == 0


def test_the_checklist_follows_the_inherited_tier(engine, policy, now):
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Scorer")
    hiring = make_asset(engine, policy=policy, now=now, kind="system", name="Hiring assistant",
                        lineage={"uses": [model.id]})
    chat = make_asset(engine, policy=policy, now=now, kind="system", name="Chat", lineage={"uses": [model.id]})
    _doc(engine, policy, now, "Scorer card", "model_card", model)
    sheet = _doc(engine, policy, now, "Scorer sheet", "datasheet", model)
    retired_doc = _doc(engine, policy, now, "Old tech doc", "technical_documentation", model)
    retire(engine, retired_doc, policy=policy, now=now)

    card = _card(engine, policy, model)
    assert card.tier_sources == []
    assert sorted(s.slug for s in card.unclassified_systems) == ["chat", "hiring-assistant"]

    classify_system(engine, hiring, "high", policy=policy, now=now)
    classify_system(engine, chat, "limited", policy=policy, now=now)
    card = _card(engine, policy, model)
    assert card.asset.effective_tier == RiskTier.HIGH
    assert [t for t, _ in card.docs] == [DocType.MODEL_CARD, DocType.TECHNICAL_DOCUMENTATION]
    assert [d is not None for _, d in card.docs] == [True, False], "a retired document does not count"
    assert card.completeness == 50
    assert [s.slug for s in card.tier_sources] == ["hiring-assistant"]
    assert card.unclassified_systems == []
    assert [d.id for d in card.extra_docs] == [sheet.id]
    assert sorted((t, a.slug) for t, a in card.downstream) == [(EdgeType.USES, "chat"),
                                                                (EdgeType.USES, "hiring-assistant")]


def test_a_system_card_shows_its_classification_and_lineage(engine, policy, now):
    data = make_asset(engine, policy=policy, now=now, name="Applicants")
    system = make_asset(engine, policy=policy, now=now, kind="system", name="Hiring assistant",
                        lineage={"uses": [data.id]})
    card = _card(engine, policy, system)
    assert card.classification is None
    assert card.docs == [] and card.completeness is None, "an unclassified system needs no documents yet"
    classify_system(engine, system, "high", policy=policy, now=now)
    card = _card(engine, policy, system)
    assert card.classification.tier == RiskTier.HIGH
    assert [s.slug for s in card.tier_sources] == ["hiring-assistant"]
    assert [t for t, _ in card.docs] == policy.required_docs(RiskTier.HIGH, AssetKind.SYSTEM)
    assert card.completeness == 0
    assert [(t, a.slug) for t, a in card.upstream] == [(EdgeType.USES, "applicants")]


def test_infrastructure_needs_no_documents(engine, policy, now):
    gpu = make_asset(engine, policy=policy, now=now, kind="infrastructure", name="GPU pool")
    card = _card(engine, policy, gpu)
    assert card.docs == [] and card.completeness is None
