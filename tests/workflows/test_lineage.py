"""Lineage: which edges make sense, closures over the graph, cycles, and risk inherited along it."""

from __future__ import annotations

import gc
from datetime import timedelta

import pytest
from sqlmodel import select

from tests.factories import classify_system, edit_asset, make_asset, reload
from workflows import lineage
from workflows.db import transaction
from workflows.enums import DEPENDENCY_EDGES, AssetKind, EdgeType, RiskTier
from workflows.errors import InvalidInput
from workflows.lineage import EDGE_RULES, FORM_EDGES, edge_problem
from workflows.models import Asset, Edge

K = AssetKind
E = EdgeType

# ---- which edges make sense (pure) ----------------------------------------------------------------

ALLOWED = [
    (K.MODEL, E.TRAINED_ON, K.DATASET),
    (K.MODEL, E.TESTED_ON, K.DATASET),
    (K.SYSTEM, E.TESTED_ON, K.DATASET),
    (K.DATASET, E.DERIVED_FROM, K.DATASET),
    (K.MODEL, E.DERIVED_FROM, K.MODEL),
    (K.ALGORITHM, E.DERIVED_FROM, K.ALGORITHM),
    (K.SYSTEM, E.USES, K.MODEL),
    (K.SYSTEM, E.USES, K.SYSTEM),
    (K.SYSTEM, E.USES, K.DATASET),
    (K.ALGORITHM, E.USES, K.MODEL),
    (K.MODEL, E.USES, K.ALGORITHM),
    (K.MODEL, E.RUNS_ON, K.INFRASTRUCTURE),
    (K.DATASET, E.RUNS_ON, K.INFRASTRUCTURE),
    (K.SYSTEM, E.RUNS_ON, K.INFRASTRUCTURE),
    (K.DOCUMENTATION, E.DOCUMENTS, K.MODEL),
    (K.DOCUMENTATION, E.DOCUMENTS, K.SYSTEM),
    (K.DOCUMENTATION, E.DOCUMENTS, K.INFRASTRUCTURE),
]

REFUSED = [
    # (source, edge, target, text the reason must contain)
    (K.DATASET, E.TRAINED_ON, K.DATASET, "anything"),
    (K.SYSTEM, E.TRAINED_ON, K.DATASET, "anything"),
    (K.MODEL, E.TRAINED_ON, K.MODEL, "a model"),
    (K.MODEL, E.TESTED_ON, K.MODEL, "a model"),
    (K.DATASET, E.USES, K.MODEL, "anything"),
    (K.INFRASTRUCTURE, E.USES, K.DATASET, "anything"),
    (K.SYSTEM, E.USES, K.DOCUMENTATION, "a documentation"),
    (K.MODEL, E.RUNS_ON, K.MODEL, "a model"),
    (K.INFRASTRUCTURE, E.RUNS_ON, K.INFRASTRUCTURE, "anything"),
    (K.DOCUMENTATION, E.RUNS_ON, K.INFRASTRUCTURE, "anything"),
    (K.DOCUMENTATION, E.DOCUMENTS, K.DOCUMENTATION, "a documentation"),
    (K.MODEL, E.DOCUMENTS, K.DATASET, "anything"),
    (K.SYSTEM, E.DERIVED_FROM, K.SYSTEM, "anything"),
    (K.DATASET, E.DERIVED_FROM, K.SYSTEM, "an ai system"),
]


@pytest.mark.parametrize(("source", "edge", "target"), ALLOWED)
def test_edges_that_make_sense(source, edge, target):
    assert edge_problem(source, edge, target) is None


@pytest.mark.parametrize(("source", "edge", "target", "reason"), REFUSED)
def test_edges_that_make_no_sense(source, edge, target, reason):
    problem = edge_problem(source, edge, target)
    assert problem is not None
    assert f"'{edge.label}'" in problem
    assert reason in problem.lower()


def test_every_form_picker_offers_only_edges_the_rules_allow():
    for source, pickers in FORM_EDGES.items():
        for edge, targets in pickers.items():
            for target in targets:
                assert edge_problem(source, edge, target) is None, (source, edge, target)


def test_documents_is_the_only_edge_that_carries_no_risk():
    assert set(EDGE_RULES) == set(EdgeType)
    assert set(EdgeType) - DEPENDENCY_EDGES == {E.DOCUMENTS}


# ---- a small graph on a real database -------------------------------------------------------------


def _graph(engine, policy, now):
    """raw <-derived_from- clean <-trained_on- model <-uses- system; model runs_on gpu; doc documents system."""
    a = {}
    a["raw"] = make_asset(engine, policy=policy, now=now, name="Raw events")
    a["gpu"] = make_asset(engine, policy=policy, now=now, kind="infrastructure", name="GPU pool")
    a["clean"] = make_asset(engine, policy=policy, now=now, name="Clean events",
                            lineage={"derived_from": [a["raw"].id]})
    a["model"] = make_asset(engine, policy=policy, now=now, kind="model", name="Churn model",
                            lineage={"trained_on": [a["clean"].id], "runs_on": [a["gpu"].id]})
    a["system"] = make_asset(engine, policy=policy, now=now, kind="system", name="Retention bot",
                             lineage={"uses": [a["model"].id]})
    a["doc"] = make_asset(engine, policy=policy, now=now, kind="documentation", name="Retention bot card",
                          details={"doc_type": "instructions_for_use"}, lineage={"documents": [a["system"].id]})
    a["lonely"] = make_asset(engine, policy=policy, now=now, name="Lonely data")
    return a


def _ids(assets, *names):
    return {assets[n].id for n in names}


def _tier(engine, asset):
    return reload(engine, asset).effective_tier


def test_upstream_closure_follows_dependencies_from_source_to_target(engine, policy, now):
    a = _graph(engine, policy, now)
    with transaction(engine) as session:
        assert lineage.upstream_ids(session=session, start=[a["system"].id]) == _ids(
            a, "system", "model", "clean", "raw", "gpu")
        assert lineage.upstream_ids(session=session, start=[a["model"].id], include_start=False) == _ids(
            a, "clean", "raw", "gpu")
        assert lineage.upstream_ids(session=session, start=[a["model"].id], types=[E.TRAINED_ON]) == _ids(
            a, "model", "clean")
        assert lineage.upstream_ids(session=session, start=[a["raw"].id], include_start=False) == set()
        # documents is not a dependency, so a document has nothing upstream unless asked for all edges
        assert lineage.upstream_ids(session=session, start=[a["doc"].id], include_start=False) == set()
        assert lineage.upstream_ids(session=session, start=[a["doc"].id], types=list(E),
                                    include_start=False) == _ids(a, "system", "model", "clean", "raw", "gpu")
        assert lineage.upstream_ids(session=session, start=[]) == set()


def test_downstream_closure_follows_dependencies_from_target_to_source(engine, policy, now):
    a = _graph(engine, policy, now)
    with transaction(engine) as session:
        assert lineage.downstream_ids(session=session, start=[a["raw"].id]) == _ids(
            a, "raw", "clean", "model", "system")
        assert lineage.downstream_ids(session=session, start=[a["gpu"].id], include_start=False) == _ids(
            a, "model", "system")
        assert lineage.downstream_ids(session=session, start=[a["system"].id], include_start=False) == set()
        assert lineage.downstream_ids(session=session, start=[a["system"].id], types=list(E),
                                      include_start=False) == _ids(a, "doc")
        assert lineage.downstream_ids(session=session, start=[a["lonely"].id]) == _ids(a, "lonely")
        assert lineage.downstream_ids(session=session, start=[a["raw"].id, a["lonely"].id],
                                      include_start=False) == _ids(a, "clean", "model", "system")


def test_a_closure_leaves_next_to_no_cyclic_garbage(engine, policy, now):
    """Built per call, the recursive walk left ~70 cyclic objects (its CTE, proxied columns and their foreign
    keys) for the collector on every asset card and form save; it is built once per direction now."""
    a = _graph(engine, policy, now)
    with transaction(engine) as session:
        lineage.upstream_ids(session=session, start=[a["system"].id])  # warm: the statement and its compiled form
        lineage.downstream_ids(session=session, start=[a["raw"].id])
        gc.collect()
        gc.disable()  # so the count below holds everything the walks left, none collected on the way
        try:
            for _ in range(20):
                assert lineage.upstream_ids(session=session, start=[a["system"].id]) == _ids(
                    a, "system", "model", "clean", "raw", "gpu")
                assert lineage.downstream_ids(session=session, start=[a["raw"].id, a["gpu"].id],
                                              include_start=False) == _ids(a, "clean", "model", "system")
        finally:
            gc.enable()
        assert gc.collect() < 40  # fewer than one object a walk (~70 a walk before)


def test_edges_of_lists_both_directions(engine, policy, now):
    a = _graph(engine, policy, now)
    with transaction(engine) as session:
        outgoing, incoming = lineage.edges_of(session=session, asset_id=a["model"].id)
        assert sorted((e.type, t.slug) for e, t in outgoing) == [
            (E.RUNS_ON, "gpu-pool"), (E.TRAINED_ON, "clean-events")]
        assert [(e.type, s.slug) for e, s in incoming] == [(E.USES, "retention-bot")]


@pytest.mark.parametrize(
    ("source", "target", "cycle"),
    [
        ("system", "system", True),   # self
        ("raw", "clean", True),       # direct: clean already derives from raw
        ("raw", "system", True),      # indirect: the system already depends on raw
        ("gpu", "doc", True),         # through a documents edge too: any loop is a loop
        ("system", "raw", False),     # a shortcut in the same direction is fine
        ("lonely", "raw", False),
        ("raw", "lonely", False),
    ],
)
def test_would_create_cycle(engine, policy, now, source, target, cycle):
    a = _graph(engine, policy, now)
    with transaction(engine) as session:
        assert lineage.would_create_cycle(session=session, source_id=a[source].id, target_id=a[target].id) is cycle


def _edges(engine, asset):
    with transaction(engine) as session:
        return sorted((e.type.value, e.target_id) for e in session.exec(
            select(Edge).where(Edge.source_id == asset.id)).all())


def test_a_direct_cycle_is_refused(engine, policy, now):
    a = _graph(engine, policy, now)
    with pytest.raises(InvalidInput) as excinfo:
        edit_asset(engine, a["raw"], policy=policy, now=now, lineage={"derived_from": [a["clean"].id]})
    assert "cycle" in excinfo.value.field_errors["edge:derived_from"]
    assert _edges(engine, a["raw"]) == []


def test_an_indirect_cycle_is_refused(engine, policy, now):
    helper = make_asset(engine, policy=policy, now=now, kind="algorithm", name="Feature code")
    system = make_asset(engine, policy=policy, now=now, kind="system", name="Outer system")
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Inner model",
                       lineage={"uses": [helper.id]})
    edit_asset(engine, system, policy=policy, now=now, lineage={"uses": [model.id]})
    # algorithm uses system is an allowed edge type, but system -> model -> algorithm -> system is a loop
    with pytest.raises(InvalidInput) as excinfo:
        edit_asset(engine, helper, policy=policy, now=now, lineage={"uses": [system.id]})
    message = excinfo.value.field_errors["edge:uses"]
    assert "cycle" in message and "outer-system" in message
    assert _edges(engine, helper) == []


def test_a_cycle_between_two_systems_is_refused(engine, policy, now):
    inner = make_asset(engine, policy=policy, now=now, kind="system", name="Inner")
    outer = make_asset(engine, policy=policy, now=now, kind="system", name="Outer", lineage={"uses": [inner.id]})
    with pytest.raises(InvalidInput) as excinfo:
        edit_asset(engine, inner, policy=policy, now=now, lineage={"uses": [outer.id]})
    assert "cycle" in excinfo.value.field_errors["edge:uses"]
    assert _edges(engine, outer) == [("uses", inner.id)]


def test_a_self_edge_is_refused(engine, policy, now):
    system = make_asset(engine, policy=policy, now=now, kind="system", name="Narcissus")
    with pytest.raises(InvalidInput) as excinfo:
        edit_asset(engine, system, policy=policy, now=now, lineage={"uses": [system.id]})
    assert "itself" in excinfo.value.field_errors["edge:uses"]
    assert _edges(engine, system) == []


# ---- inherited risk ------------------------------------------------------------------------------


def test_effective_tier_flows_from_a_system_to_everything_it_depends_on(engine, policy, now):
    a = _graph(engine, policy, now)
    classify_system(engine, a["system"], "high", policy=policy, now=now)
    for name in ("system", "model", "clean", "raw", "gpu"):
        assert _tier(engine, a[name]) == RiskTier.HIGH, name
    assert reload(engine, a["system"]).risk_tier == RiskTier.HIGH
    assert reload(engine, a["model"]).risk_tier is None, "only systems have their own tier"
    assert _tier(engine, a["lonely"]) is None


def test_documents_edges_do_not_carry_risk(engine, policy, now):
    a = _graph(engine, policy, now)
    classify_system(engine, a["system"], "prohibited", policy=policy, now=now)
    assert _tier(engine, a["system"]) == RiskTier.PROHIBITED
    assert _tier(engine, a["doc"]) is None
    # A document of a dataset does not pass the dataset's tier on either.
    card = make_asset(engine, policy=policy, now=now, kind="documentation", name="Raw datasheet",
                      details={"doc_type": "datasheet"}, lineage={"documents": [a["raw"].id]})
    assert _tier(engine, a["raw"]) == RiskTier.PROHIBITED
    assert _tier(engine, card) is None


def test_effective_tier_is_the_highest_of_every_system_reaching_the_asset(engine, policy, now):
    a = _graph(engine, policy, now)
    chat = make_asset(engine, policy=policy, now=now, kind="system", name="Support chat",
                      lineage={"uses": [a["clean"].id]})
    classify_system(engine, chat, "limited", policy=policy, now=now)
    classify_system(engine, a["system"], "minimal", policy=policy, now=now)
    assert _tier(engine, a["model"]) == RiskTier.MINIMAL
    assert _tier(engine, a["clean"]) == RiskTier.LIMITED
    assert _tier(engine, a["raw"]) == RiskTier.LIMITED
    assert _tier(engine, chat) == RiskTier.LIMITED
    classify_system(engine, a["system"], "high", policy=policy, now=now)
    assert _tier(engine, a["raw"]) == RiskTier.HIGH
    assert _tier(engine, chat) == RiskTier.LIMITED, "risk does not flow against the edges"


def test_a_system_used_by_a_stricter_system_inherits_its_tier(engine, policy, now):
    inner = make_asset(engine, policy=policy, now=now, kind="system", name="Scoring service")
    outer = make_asset(engine, policy=policy, now=now, kind="system", name="Hiring assistant",
                       lineage={"uses": [inner.id]})
    classify_system(engine, inner, "minimal", policy=policy, now=now)
    classify_system(engine, outer, "high", policy=policy, now=now)
    assert reload(engine, inner).risk_tier == RiskTier.MINIMAL
    assert _tier(engine, inner) == RiskTier.HIGH
    assert _tier(engine, outer) == RiskTier.HIGH


def test_an_unclassified_system_passes_no_tier(engine, policy, now):
    a = _graph(engine, policy, now)
    assert all(_tier(engine, a[name]) is None for name in a)
    with transaction(engine) as session:
        gaps = lineage.unclassified_systems_using(session=session, asset_id=a["raw"].id)
        assert [s.slug for s in gaps] == ["retention-bot"]
    classify_system(engine, a["system"], "limited", policy=policy, now=now)
    with transaction(engine) as session:
        assert lineage.unclassified_systems_using(session=session, asset_id=a["raw"].id) == []


def test_removing_an_edge_lowers_the_inherited_tier_upstream(engine, policy, now):
    a = _graph(engine, policy, now)
    classify_system(engine, a["system"], "high", policy=policy, now=now)
    later = now + timedelta(days=3)
    model = reload(engine, a["model"])
    edit_asset(engine, model, policy=policy, now=later, lineage={"trained_on": [], "runs_on": [a["gpu"].id]})
    assert _tier(engine, a["model"]) == RiskTier.HIGH
    assert _tier(engine, a["gpu"]) == RiskTier.HIGH
    for name in ("clean", "raw"):
        stored = reload(engine, a[name])
        assert stored.effective_tier is None, name
        assert stored.next_review_due == stored.created_at + policy.tier(None).review_interval, name

    edit_asset(engine, reload(engine, a["system"]), policy=policy, now=later, lineage={"uses": []})
    assert _tier(engine, a["system"]) == RiskTier.HIGH
    assert _tier(engine, a["model"]) is None
    assert _tier(engine, a["gpu"]) is None


def test_removing_one_of_two_paths_keeps_the_tier_of_the_other(engine, policy, now):
    a = _graph(engine, policy, now)
    edit_asset(engine, a["system"], policy=policy, now=now, lineage={"uses": [a["model"].id, a["raw"].id]})
    classify_system(engine, a["system"], "high", policy=policy, now=now)
    edit_asset(engine, reload(engine, a["clean"]), policy=policy, now=now, lineage={"derived_from": []})
    assert _tier(engine, a["raw"]) == RiskTier.HIGH, "still used directly by the system"


def test_adding_an_edge_raises_the_inherited_tier_of_the_new_upstream(engine, policy, now):
    a = _graph(engine, policy, now)
    classify_system(engine, a["system"], "high", policy=policy, now=now)
    extra = make_asset(engine, policy=policy, now=now, name="Extra features")
    fresh = make_asset(engine, policy=policy, now=now, name="Fresh labels")
    edit_asset(engine, reload(engine, a["system"]), policy=policy, now=now,
               lineage={"uses": [a["model"].id, extra.id]})
    edit_asset(engine, reload(engine, a["model"]), policy=policy, now=now,
               lineage={"trained_on": [a["clean"].id, fresh.id]})
    for asset in (extra, fresh):
        stored = reload(engine, asset)
        assert stored.effective_tier == RiskTier.HIGH, stored.slug
        assert stored.next_review_due == stored.created_at + timedelta(days=90), stored.slug


def test_reclassifying_a_system_updates_every_upstream_tier_and_review_date(engine, policy, now):
    a = _graph(engine, policy, now)
    upstream = ("system", "model", "clean", "raw", "gpu")
    for name in upstream:
        assert reload(engine, a[name]).next_review_due == now + timedelta(days=90), "unclassified cadence"
    expected = [("high", 90), ("minimal", 365), ("limited", 180), ("prohibited", 30)]
    for step, (tier, days) in enumerate(expected, start=1):
        classify_system(engine, a["system"], tier, policy=policy, now=now + timedelta(days=step))
        for name in upstream:
            stored = reload(engine, a[name])
            assert stored.effective_tier == RiskTier(tier), (tier, name)
            assert stored.next_review_due == now + timedelta(days=days), (tier, name)
    assert reload(engine, a["lonely"]).next_review_due == now + timedelta(days=90)
    assert reload(engine, a["doc"]).effective_tier is None


def test_refresh_effective_tiers_reports_only_what_changed(engine, policy, now):
    a = _graph(engine, policy, now)
    classify_system(engine, a["system"], "limited", policy=policy, now=now)
    with transaction(engine) as session:
        assert lineage.refresh_effective_tiers(session=session, asset_ids=_ids(a, "raw", "lonely")) == {}
        stored = lineage.upstream_ids(session=session, start=[a["system"].id])
        # Simulate a stale column, then check that a refresh repairs it and says so.
        raw = session.get(Asset, a["raw"].id)
        raw.effective_tier = RiskTier.MINIMAL
        session.add(raw)
        session.flush()
        assert lineage.refresh_effective_tiers(session=session, asset_ids=stored) == {
            a["raw"].id: RiskTier.LIMITED}
